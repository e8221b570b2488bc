"""``gpumkt capacity`` and ``gpumkt listings``: idle GPUs as a buyer sees them, and a provider's
own capacity."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from gpumkt.cli.base import (
    LATENCY_CLASSES,
    NODE_SIZES,
    client_of,
    json_option,
    main,
    node_size,
    print_json,
    table,
    utc_minute,
)
from gpumkt.models import CapacityRow, Guidance, Listing


@main.command()
@click.option("--origin", required=True, help="The city your users are in (a region code, e.g. shanghai).")
@click.option("--gpu-model", help="Only this GPU model (e.g. h20).")
@json_option
@click.pass_context
def capacity(ctx: click.Context, origin: str, gpu_model: str | None, as_json: bool) -> None:
    """Idle GPUs by region and latency class as seen from ORIGIN, nearest first."""
    rows = client_of(ctx).call("capacity", query={"origin": origin, "gpu_model": gpu_model})
    if as_json:
        return print_json(rows)
    shown = [CapacityRow.from_json(row) for row in rows]
    table(
        f"Idle capacity seen from {origin}",
        ["region", "latency class", "RTT ms", "GPU", "free GPUs", "from CNY/GPU-h", "listings"],
        [
            (r.region, r.latency_class, r.rtt_ms, r.gpu_model, r.free_gpus, r.min_price_per_gpu_hour, r.listings)
            for r in shown
        ],
    )
    return None


@main.group()
def listings() -> None:
    """A provider's capacity: create, list, edit, withdraw."""


LISTING_COLUMNS = ["id", "region", "GPU", "GPUs", "per node", "free", "CNY/GPU-h", "status", "until"]


def listing_rows(items: Iterable[Listing]) -> list[tuple[Any, ...]]:
    return [
        (
            x.id,
            x.region,
            x.gpu_model,
            x.gpu_count,
            x.gpus_per_node,
            x.free_gpus,
            x.price_per_gpu_hour,
            x.status,
            utc_minute(x.available_until),
        )
        for x in items
    ]


def listing_terms(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options a listing's size, price and window are given with (``create`` and ``edit``)."""
    for option in reversed(
        [
            click.option("--gpus", "gpu_count", type=int, help="GPUs listed."),
            click.option("--gpus-per-node", type=NODE_SIZES, help="GPUs per node (a replica lives on one node)."),
            click.option("--price", "price_per_gpu_hour", help="CNY per GPU-hour, a decimal such as 5.80."),
            click.option("--from", "available_from", help="Available from (ISO time with offset; default now)."),
            click.option(
                "--until", "available_until", help="Available until (ISO time with offset; default +30 days)."
            ),
            click.option(
                "--interruptible-floor",
                "interruptible_floor_price_per_gpu_hour",
                help="Offer idle GPUs as interruptible at this CNY per GPU-hour (at most --price).",
            ),
        ]
    ):
        command = option(command)
    return command


def show_listing(data: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        return print_json(data)
    table(title, LISTING_COLUMNS, listing_rows([Listing.from_json(data)]))
    return None


@listings.command("create")
@click.option("--region", required=True, help="Where the GPUs are (a region code, e.g. ningxia-zhongwei).")
@click.option("--gpu-model", required=True, help="GPU model code (e.g. h20).")
@listing_terms
@json_option
@click.pass_context
def listings_create(ctx: click.Context, /, as_json: bool, **terms: Any) -> None:
    """List idle capacity (sent with an Idempotency-Key, so a retry never lists it twice)."""
    terms["gpus_per_node"] = node_size(terms["gpus_per_node"])
    data = client_of(ctx).call("listing_create", body=terms)
    show_listing(data, as_json, "Listed")


@listings.command("list")
@click.option("--all", "everyone", is_flag=True, help="Search every provider's active listings, not only yours.")
@click.option("--region")
@click.option("--gpu-model")
@click.option("--origin", help="Show RTT from this city; needed for --latency-class.")
@click.option("--latency-class", type=click.Choice(LATENCY_CLASSES))
@click.option("--max-price", help="At most this CNY per GPU-hour.")
@click.option("--status", type=click.Choice(["active", "withdrawn", "closed"]))
@click.option("--ordering", help="price, free_gpus, rtt or id; prefix - to reverse.")
@json_option
@click.pass_context
def listings_list(ctx: click.Context, /, everyone: bool, as_json: bool, **filters: Any) -> None:
    """Your listings (a provider's), or with --all the public search."""
    items = client_of(ctx).call("listing_list", query={**filters, "mine": None if everyone else "true"})
    if as_json:
        return print_json(items)
    table("Listings", LISTING_COLUMNS, listing_rows(Listing.from_json(item) for item in items))
    return None


@listings.command("edit")
@click.argument("listing_id", type=int)
@listing_terms
@json_option
@click.pass_context
def listings_edit(ctx: click.Context, /, listing_id: int, as_json: bool, **changes: Any) -> None:
    """Change a listing's size, price or window (never below what is allocated)."""
    changes["gpus_per_node"] = node_size(changes["gpus_per_node"])
    if all(value is None for value in changes.values()):
        raise click.UsageError("Give at least one of --gpus, --gpus-per-node, --price, --from, --until.")
    data = client_of(ctx).call("listing_update", path={"listing_id": listing_id}, body=changes)
    show_listing(data, as_json, f"Listing {listing_id}")


@listings.command("withdraw")
@click.argument("listing_id", type=int)
@json_option
@click.pass_context
def listings_withdraw(ctx: click.Context, listing_id: int, as_json: bool) -> None:
    """Withdraw a listing: its live matches fail over to other capacity."""
    data = client_of(ctx).call("listing_withdraw", path={"listing_id": listing_id})
    show_listing(data, as_json, "Withdrawn")


@listings.command("guidance")
@click.argument("listing_id", type=int)
@json_option
@click.pass_context
def listings_guidance(ctx: click.Context, listing_id: int, as_json: bool) -> None:
    """Why your listing's GPUs are idle, and the highest price at which the engine would fill them."""
    data = client_of(ctx).call("listing_guidance", path={"listing_id": listing_id})
    if as_json:
        return print_json(data)
    guidance = Guidance.from_json(data)
    table(
        f"Guidance for listing {listing_id}",
        ["free GPUs", "price", "energy cost", "sells next round", "suggested price", "would sell GPU-h"],
        [
            (
                guidance.free_gpus,
                guidance.price_per_gpu_hour,
                guidance.energy_cost_per_gpu_hour,
                guidance.next_round_gpu_hours,
                guidance.suggested_price_per_gpu_hour if guidance.suggested_price_per_gpu_hour is not None else "none",
                guidance.suggested_gpu_hours,
            )
        ],
    )
    for reason in guidance.idle_reasons:
        click.echo(f"- {reason}")
    return None
