"""``gpumkt prices``, ``gpumkt price-history`` and ``gpumkt llm-models``: what the market's rounds
cleared at, and the LLMs the inference form may name. Anyone may read them (no login)."""

from __future__ import annotations

import click

from gpumkt.cli.base import client_of, json_option, main, or_dash, print_json, table, utc_minute
from gpumkt.models import LlmModel, PricePoint, RegionPrice


@main.command()
@click.option("--gpu-model", required=True, help="GPU model code (e.g. h20).")
@click.option("--origin", required=True, help="The city your users are in (a region code, e.g. shanghai).")
@json_option
@click.pass_context
def prices(ctx: click.Context, gpu_model: str, origin: str, as_json: bool) -> None:
    """Clearing prices of GPU_MODEL per region after its latest round, nearest to ORIGIN first."""
    rows = client_of(ctx).call("prices", query={"gpu_model": gpu_model, "origin": origin})
    if as_json:
        return print_json(rows)
    table(
        f"Clearing prices of {gpu_model} seen from {origin} (CNY per GPU-hour)",
        ["region", "latency class", "RTT ms", "price", "rent", "latency rent", "free GPUs", "listings", "round"],
        [
            (
                p.region,
                or_dash(p.latency_class),
                or_dash(p.rtt_ms),
                or_dash(p.price_per_gpu_hour),
                or_dash(p.rent_per_gpu_hour),
                or_dash(p.latency_rent_per_gpu_hour),
                p.free_gpus,
                p.listings,
                p.run_id,
            )
            for p in (RegionPrice.from_json(row) for row in rows)
        ],
    )
    return None


@main.command("price-history")
@click.option("--gpu-model", required=True, help="GPU model code (e.g. h20).")
@click.option("--region", required=True, help="Region code (e.g. ningxia-zhongwei).")
@click.option("--hours", type=int, help="The window ending now, in hours (the server's default: 24).")
@json_option
@click.pass_context
def price_history(ctx: click.Context, gpu_model: str, region: str, hours: int | None, as_json: bool) -> None:
    """One region's clearing price of GPU_MODEL round by round, oldest first."""
    items = client_of(ctx).call("price_history", query={"gpu_model": gpu_model, "region": region, "hours": hours})
    if as_json:
        return print_json(items)
    table(
        f"Clearing price of {gpu_model} in {region} (CNY per GPU-hour)",
        ["recorded (UTC)", "round", "price", "rent", "free GPUs", "listings"],
        [
            (
                utc_minute(p.recorded_at),
                p.run_id,
                or_dash(p.price_per_gpu_hour),
                or_dash(p.rent_per_gpu_hour),
                p.free_gpus,
                p.listings,
            )
            for p in (PricePoint.from_json(item) for item in items)
        ],
    )
    return None


@main.command("llm-models")
@json_option
@click.pass_context
def llm_models(ctx: click.Context, as_json: bool) -> None:
    """The open-weight LLMs the inference form may name, with their size and precisions."""
    items = client_of(ctx).call("llm_models")
    if as_json:
        return print_json(items)
    table(
        "LLM models",
        ["code", "name", "params B", "active B", "layers", "max context", "precisions"],
        [
            (m.code, m.name, m.params_b, m.active_params_b, m.layers, m.max_context, ", ".join(m.precisions))
            for m in (LlmModel.from_json(item) for item in items)
        ],
    )
    return None
