"""Reference data: regions (hubs and demand cities), the RTTs between them, GPU models, LLMs."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from marketplace.money import MONEY


class Region(models.Model):
    """A data-centre hub or a demand city."""

    class Kind(models.TextChoices):
        HUB = "hub", "data-centre hub"
        CITY = "city", "demand city"
        BOTH = "both", "hub and demand city"

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    name_zh = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    province = models.CharField(max_length=100)
    lat = models.FloatField()
    lon = models.FloatField()
    power_price_cny_kwh = models.DecimalField(max_digits=6, decimal_places=4)
    pue = models.DecimalField(max_digits=4, decimal_places=2)
    #: Western resource-side hubs (cheap power, far from eastern users).
    is_west = models.BooleanField(default=False)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(power_price_cny_kwh__gt=0), name="region_power_price_gt_0"),
            models.CheckConstraint(condition=Q(pue__gte=1), name="region_pue_gte_1"),
            models.CheckConstraint(condition=Q(lat__gte=-90, lat__lte=90), name="region_lat_range"),
            models.CheckConstraint(condition=Q(lon__gte=-180, lon__lte=180), name="region_lon_range"),
        ]

    def __str__(self) -> str:
        return self.code


class Rtt(models.Model):
    """Round-trip latency from one region to another; a measured value overrides the estimate."""

    class Source(models.TextChoices):
        ESTIMATED = "estimated"
        MEASURED = "measured"

    source_region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="rtts_out")
    target_region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="rtts_in")
    rtt_ms = models.DecimalField(max_digits=7, decimal_places=1)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.ESTIMATED)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "RTT"
        ordering = ["source_region", "rtt_ms"]
        constraints = [
            models.UniqueConstraint(fields=["source_region", "target_region"], name="rtt_unique_pair"),
            models.CheckConstraint(condition=Q(rtt_ms__gt=0), name="rtt_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.source_region_id}→{self.target_region_id}: {self.rtt_ms} ms"


class Interconnect(models.TextChoices):
    NVLINK = "nvlink", "NVLink"
    PCIE = "pcie", "PCIe"
    HCCS = "hccs", "HCCS"


class GpuModel(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    #: The name Chinese pages show (``formatting.local_name``); our translation, from the reference JSON.
    name_zh = models.CharField(max_length=200, blank=True)
    vram_gb = models.PositiveIntegerField()
    tdp_w = models.PositiveIntegerField()
    indicative_price_per_gpu_hour = models.DecimalField(**MONEY)
    #: Speed, for the throughput model (``matching.inference``): memory bandwidth, dense tensor
    #: TFLOPS (no sparsity), FP8 null where the GPU has none, and how a node's GPUs talk. Null on a
    #: row written before the reference data had them and not loaded since.
    memory_bandwidth_gbps = models.PositiveIntegerField(null=True, blank=True)
    bf16_tflops = models.DecimalField(max_digits=7, decimal_places=1, null=True, blank=True)
    fp8_tflops = models.DecimalField(max_digits=7, decimal_places=1, null=True, blank=True)
    interconnect = models.CharField(max_length=8, choices=Interconnect.choices, blank=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "GPU model"
        constraints = [
            models.CheckConstraint(condition=Q(vram_gb__gt=0), name="gpumodel_vram_gt_0"),
            models.CheckConstraint(condition=Q(tdp_w__gt=0), name="gpumodel_tdp_gt_0"),
            models.CheckConstraint(condition=Q(bf16_tflops__gt=0), name="gpumodel_bf16_tflops_gt_0"),
            models.CheckConstraint(condition=Q(fp8_tflops__gt=0), name="gpumodel_fp8_tflops_gt_0"),
        ]

    def __str__(self) -> str:
        return self.code


class LlmModel(models.Model):
    """An open-weight LLM the marketplace can serve: its size and KV-cache shape (from its published
    config.json, the reference data says which figures are sourced), the precisions it is served at."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    params_b = models.DecimalField(max_digits=7, decimal_places=2)
    active_params_b = models.DecimalField(max_digits=7, decimal_places=2)
    layers = models.PositiveIntegerField()
    kv_heads = models.PositiveIntegerField()
    head_dim = models.PositiveIntegerField()
    max_context = models.PositiveIntegerField()
    #: Precision codes of ``matching.inference.BYTES_PER_PARAM`` ("BF16", "FP8", "INT4-AWQ").
    precisions = models.JSONField(default=list)
    #: Where the figures come from (the config.json URL).
    source = models.URLField(max_length=500)

    class Meta:
        ordering = ["code"]
        verbose_name = "LLM model"
        constraints = [
            models.CheckConstraint(condition=Q(params_b__gt=0), name="llmmodel_params_gt_0"),
            models.CheckConstraint(
                condition=Q(active_params_b__gt=0, active_params_b__lte=F("params_b")),
                name="llmmodel_active_params_in_range",
            ),
            models.CheckConstraint(
                condition=Q(layers__gt=0, kv_heads__gt=0, head_dim__gt=0, max_context__gt=0),
                name="llmmodel_shape_gt_0",
            ),
        ]

    def __str__(self) -> str:
        return self.code
