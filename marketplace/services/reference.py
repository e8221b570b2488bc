"""Loading the reference data (regions, RTT matrix, GPU models, LLM models) that ships with the project."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.db import transaction

from marketplace import selectors
from marketplace.models import GpuModel, LlmModel, Region, Rtt

REFERENCE_FILE = Path(__file__).resolve().parent.parent / "reference" / "china_compute_regions.json"
LLM_REFERENCE_FILE = REFERENCE_FILE.parent / "llm_models.json"
#: Resource-side hubs where power is cheap and far from the eastern demand (DESIGN.md).
WESTERN_PROVINCES = frozenset({"Inner Mongolia", "Guizhou", "Gansu", "Ningxia"})


@dataclass(frozen=True)
class ReferenceCounts:
    regions: int
    rtts: int
    gpu_models: int
    llm_models: int = 0


def reference_read(path: Path = REFERENCE_FILE, llm_path: Path | None = LLM_REFERENCE_FILE) -> dict:
    """The reference JSON at ``path``, with the LLM catalogue of ``llm_path`` as ``llm_models``
    (unless ``path`` has its own, or ``llm_path`` is None)."""
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if llm_path is not None and "llm_models" not in data:
        with llm_path.open(encoding="utf-8") as handle:
            data["llm_models"] = json.load(handle)["llm_models"]
    return data


@transaction.atomic
def reference_load(*, data: dict) -> ReferenceCounts:
    """Create or update regions, GPU models, LLM models (``llm_models``, optional) and estimated
    RTTs from ``data``; idempotent.

    Measured RTTs already in the database are kept: a measurement overrides the estimate.
    """
    regions = {row["code"]: _region_upsert(row) for row in data["regions"]}
    gpu_models = [_gpu_model_upsert(row) for row in data["gpu_models"]]
    llm_models = [_llm_model_upsert(row) for row in data.get("llm_models", [])]
    rtts = _estimated_rtts_upsert(regions, data["rtt_ms"])
    transaction.on_commit(selectors.reference_forget)  # this process's copy of the codes is stale
    return ReferenceCounts(regions=len(regions), rtts=rtts, gpu_models=len(gpu_models), llm_models=len(llm_models))


def _region_upsert(row: dict) -> Region:
    region, _ = Region.objects.update_or_create(
        code=row["code"],
        defaults={
            "name": row["name"],
            "name_zh": row.get("name_zh", ""),
            "kind": row["kind"],
            "province": row["province"],
            "lat": row["lat"],
            "lon": row["lon"],
            "power_price_cny_kwh": Decimal(str(row["power_price_cny_kwh"])),
            "pue": Decimal(str(row["pue"])),
            "is_west": row["province"] in WESTERN_PROVINCES,
        },
    )
    return region


def _gpu_model_upsert(row: dict) -> GpuModel:
    gpu_model, _ = GpuModel.objects.update_or_create(
        code=row["code"],
        defaults={
            "name": row["name"],
            "name_zh": row.get("name_zh", ""),
            "vram_gb": row["vram_gb"],
            "tdp_w": row["tdp_w"],
            "indicative_price_per_gpu_hour": Decimal(str(row["indicative_price_cny_per_gpu_hour"])),
            "memory_bandwidth_gbps": row.get("memory_bandwidth_gbps"),
            "bf16_tflops": _decimal_or_none(row.get("bf16_tflops")),
            "fp8_tflops": _decimal_or_none(row.get("fp8_tflops")),
            "interconnect": row.get("interconnect") or "",
        },
    )
    return gpu_model


def _decimal_or_none(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _llm_model_upsert(row: dict) -> LlmModel:
    llm_model, _ = LlmModel.objects.update_or_create(
        code=row["code"],
        defaults={
            "name": row["name"],
            "params_b": Decimal(str(row["params_b"])),
            "active_params_b": Decimal(str(row["active_params_b"])),
            "layers": row["layers"],
            "kv_heads": row["kv_heads"],
            "head_dim": row["head_dim"],
            "max_context": row["max_context"],
            "precisions": list(row["precisions"]),
            "source": row["source"],
        },
    )
    return llm_model


def _estimated_rtts_upsert(regions: dict[str, Region], matrix: dict[str, dict[str, float]]) -> int:
    """Write the model estimates in bulk, leaving measured rows alone; returns rows written."""
    existing = {(row.source_region_id, row.target_region_id): row for row in Rtt.objects.all()}
    to_create, to_update = [], []
    for source_code, row in matrix.items():
        for target_code, rtt_ms in row.items():
            source, target = regions[source_code], regions[target_code]
            value = Decimal(str(rtt_ms))
            current = existing.get((source.pk, target.pk))
            if current is None:
                to_create.append(Rtt(source_region=source, target_region=target, rtt_ms=value))
            elif current.source == Rtt.Source.ESTIMATED and current.rtt_ms != value:
                current.rtt_ms = value
                to_update.append(current)
    Rtt.objects.bulk_create(to_create, batch_size=500)
    Rtt.objects.bulk_update(to_update, ["rtt_ms"], batch_size=500)
    return len(to_create) + len(to_update)
