"""LLM models, GPU models' speed (bandwidth, BF16/FP8 TFLOPS, interconnect) and providers' measured
profiles (issue 15). Existing GPU model rows take their speed from the reference JSON shipped with
this migration's code, so a deployed database has it without a ``load_reference``; the LLM catalogue
itself arrives with ``load_reference``."""

import json
from decimal import Decimal
from pathlib import Path

import django.db.models.deletion
from django.db import migrations, models

REFERENCE_FILE = Path(__file__).resolve().parent.parent / "reference" / "china_compute_regions.json"


def _decimal(value):
    return None if value is None else Decimal(str(value))


def speeds_fill(apps, schema_editor):
    GpuModel = apps.get_model("marketplace", "GpuModel")
    with REFERENCE_FILE.open(encoding="utf-8") as handle:
        rows = {row["code"]: row for row in json.load(handle)["gpu_models"]}
    for gpu_model in GpuModel.objects.filter(code__in=rows):
        row = rows[gpu_model.code]
        gpu_model.memory_bandwidth_gbps = row["memory_bandwidth_gbps"]
        gpu_model.bf16_tflops = _decimal(row["bf16_tflops"])
        gpu_model.fp8_tflops = _decimal(row["fp8_tflops"])
        gpu_model.interconnect = row["interconnect"]
        gpu_model.save(update_fields=["memory_bandwidth_gbps", "bf16_tflops", "fp8_tflops", "interconnect"])


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0015_voucher_program_paused"),
    ]

    operations = [
        migrations.CreateModel(
            name="LlmModel",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("code", models.SlugField(max_length=64, unique=True)),
                ("name", models.CharField(max_length=200)),
                ("params_b", models.DecimalField(decimal_places=2, max_digits=7)),
                ("active_params_b", models.DecimalField(decimal_places=2, max_digits=7)),
                ("layers", models.PositiveIntegerField()),
                ("kv_heads", models.PositiveIntegerField()),
                ("head_dim", models.PositiveIntegerField()),
                ("max_context", models.PositiveIntegerField()),
                ("precisions", models.JSONField(default=list)),
                ("source", models.URLField(max_length=500)),
            ],
            options={
                "verbose_name": "LLM model",
                "ordering": ["code"],
            },
        ),
        migrations.CreateModel(
            name="MeasuredProfile",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("precision", models.CharField(max_length=16)),
                ("gpus_per_replica", models.PositiveSmallIntegerField()),
                ("prompt_tokens", models.PositiveIntegerField()),
                ("concurrency", models.PositiveIntegerField()),
                ("output_tokens_per_second", models.DecimalField(decimal_places=1, max_digits=10)),
                ("ttft_ms", models.DecimalField(decimal_places=1, max_digits=9)),
                ("measured_at", models.DateTimeField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ["id"],
            },
        ),
        migrations.AddField(
            model_name="gpumodel",
            name="bf16_tflops",
            field=models.DecimalField(blank=True, decimal_places=1, max_digits=7, null=True),
        ),
        migrations.AddField(
            model_name="gpumodel",
            name="fp8_tflops",
            field=models.DecimalField(blank=True, decimal_places=1, max_digits=7, null=True),
        ),
        migrations.AddField(
            model_name="gpumodel",
            name="interconnect",
            field=models.CharField(
                blank=True, choices=[("nvlink", "NVLink"), ("pcie", "PCIe"), ("hccs", "HCCS")], max_length=8
            ),
        ),
        migrations.AddField(
            model_name="gpumodel",
            name="memory_bandwidth_gbps",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="gpumodel",
            constraint=models.CheckConstraint(
                condition=models.Q(("bf16_tflops__gt", 0)), name="gpumodel_bf16_tflops_gt_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="gpumodel",
            constraint=models.CheckConstraint(
                condition=models.Q(("fp8_tflops__gt", 0)), name="gpumodel_fp8_tflops_gt_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="llmmodel",
            constraint=models.CheckConstraint(condition=models.Q(("params_b__gt", 0)), name="llmmodel_params_gt_0"),
        ),
        migrations.AddConstraint(
            model_name="llmmodel",
            constraint=models.CheckConstraint(
                condition=models.Q(("active_params_b__gt", 0), ("active_params_b__lte", models.F("params_b"))),
                name="llmmodel_active_params_in_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="llmmodel",
            constraint=models.CheckConstraint(
                condition=models.Q(("head_dim__gt", 0), ("kv_heads__gt", 0), ("layers__gt", 0), ("max_context__gt", 0)),
                name="llmmodel_shape_gt_0",
            ),
        ),
        migrations.AddField(
            model_name="measuredprofile",
            name="listing",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="measured_profiles", to="marketplace.listing"
            ),
        ),
        migrations.AddField(
            model_name="measuredprofile",
            name="llm_model",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="measured_profiles", to="marketplace.llmmodel"
            ),
        ),
        migrations.AddConstraint(
            model_name="measuredprofile",
            constraint=models.CheckConstraint(
                condition=models.Q(("gpus_per_replica__in", (1, 2, 4, 8))), name="profile_replica_size_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="measuredprofile",
            constraint=models.CheckConstraint(
                condition=models.Q(("prompt_tokens__gt", 0)), name="profile_prompt_tokens_gt_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="measuredprofile",
            constraint=models.CheckConstraint(
                condition=models.Q(("concurrency__gt", 0)), name="profile_concurrency_gt_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="measuredprofile",
            constraint=models.CheckConstraint(
                condition=models.Q(("output_tokens_per_second__gt", 0)), name="profile_tokens_per_second_gt_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="measuredprofile",
            constraint=models.CheckConstraint(condition=models.Q(("ttft_ms__gt", 0)), name="profile_ttft_gt_0"),
        ),
        migrations.RunPython(speeds_fill, migrations.RunPython.noop),
    ]
