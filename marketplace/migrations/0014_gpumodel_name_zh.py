"""GPU models get a Chinese name (issue 18). Existing rows take theirs from the reference JSON
shipped with this migration's code, so a deployed database has them without a ``load_reference``."""

import json
from pathlib import Path

from django.db import migrations, models

REFERENCE_FILE = Path(__file__).resolve().parent.parent / "reference" / "china_compute_regions.json"


def names_fill(apps, schema_editor):
    GpuModel = apps.get_model("marketplace", "GpuModel")
    with REFERENCE_FILE.open(encoding="utf-8") as handle:
        names = {row["code"]: row.get("name_zh", "") for row in json.load(handle)["gpu_models"]}
    for gpu_model in GpuModel.objects.filter(code__in=names):
        gpu_model.name_zh = names[gpu_model.code]
        gpu_model.save(update_fields=["name_zh"])


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0013_reliability_bound"),
    ]

    operations = [
        migrations.AddField(
            model_name="gpumodel",
            name="name_zh",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.RunPython(names_fill, migrations.RunPython.noop),
    ]
