"""``gpumkt quote``, ``request submit [--wait]``, ``requests`` and ``matches``: a buyer's demand
and where it was placed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from gpumkt.cli.base import (
    EXIT_NOT_MATCHED,
    LATENCY_CLASSES,
    NODE_SIZES,
    client_of,
    json_option,
    main,
    print_json,
    stderr,
    table,
    utc_minute,
)
from gpumkt.models import BuyerRequest, Match, Quote


def request_terms(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options demand is stated with (``quote`` and ``request submit``)."""
    for option in reversed(
        [
            click.option("--gpu-model", required=True, help="GPU model code (e.g. h20)."),
            click.option("--gpus-per-replica", type=NODE_SIZES, default="1", show_default=True),
            click.option("--replicas", type=int, default=1, show_default=True),
            click.option("--origin", required=True, help="Where your users are (a region code, e.g. shanghai)."),
            click.option("--latency-class", type=click.Choice(LATENCY_CLASSES), help="Default: standard (≤ 60 ms)."),
            click.option("--max-rtt-ms", help="An explicit RTT bound in ms instead of a latency class."),
            click.option("--latency-weight", help="CNY per ms of RTT per GPU-hour (default: the class's)."),
            click.option("--max-price", "max_price_per_gpu_hour", required=True, help="CNY per GPU-hour, e.g. 9.00."),
            click.option("--hours", "duration_hours", type=int, required=True, help="Duration in whole hours."),
            click.option("--start-by", help="Start at the latest at (ISO time with offset; default +24 h)."),
            click.option("--voucher", "voucher_code", help="A voucher code to apply."),
            click.option(
                "--interruptible",
                is_flag=True,
                default=None,
                help="Interruptible tier: placed after on-demand work at a listing's floor; --max-price is the bid.",
            ),
        ]
    ):
        command = option(command)
    return command


def _terms(options: dict[str, Any]) -> dict[str, Any]:
    terms = {key: value for key, value in options.items() if value is not None}
    terms["gpus_per_replica"] = int(terms["gpus_per_replica"])
    return terms


REQUEST_COLUMNS = ["id", "GPU", "replicas", "origin", "latency", "max CNY/GPU-h", "hours", "status", "matched"]


def request_rows(items: Iterable[BuyerRequest]) -> list[tuple[Any, ...]]:
    return [
        (
            r.id,
            r.gpu_model,
            f"{r.replicas}×{r.gpus_per_replica}",
            r.origin,
            r.latency_class,
            r.max_price_per_gpu_hour,
            r.duration_hours,
            status_of(r),
            f"{r.matched_replicas}/{r.replicas}",
        )
        for r in items
    ]


def status_of(request: BuyerRequest) -> str:
    """Its status, and while the look-ahead holds it for its call, until when (UTC)."""
    if request.held_until is None:
        return request.status
    return f"{request.status}, held until {utc_minute(request.held_until)}"


@main.command()
@request_terms
@json_option
@click.pass_context
def quote(ctx: click.Context, /, as_json: bool, **options: Any) -> None:
    """Where the engine would place this demand now, and at what cost; nothing is written."""
    data = client_of(ctx).call("quote", body=_terms(options))
    if as_json:
        return print_json(data)
    result = Quote.from_json(data)
    table(
        f"Quote: {result.replicas_placed}/{result.replicas_requested} replicas, total {result.total_cost} CNY",
        ["listing", "region", "replicas", "GPUs", "RTT ms", "CNY/GPU-h", "subsidy", "cost/GPU-h"],
        [
            (
                p.listing_id,
                p.region,
                p.replicas,
                p.gpus,
                p.rtt_ms,
                p.price_per_gpu_hour,
                p.subsidy_per_gpu_hour,
                p.cost_per_gpu_hour,
            )
            for p in result.placements
        ],
    )
    if result.unserved_reason:
        click.echo(f"Not placed: {result.unserved_reason}")
    return None


@main.group()
def request() -> None:
    """A buyer's demand: submit it (and wait for its match)."""


@request.command("submit")
@request_terms
@click.option("--wait", is_flag=True, help="Wait, with live progress, until it is matched or cannot be.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds --wait waits at most.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between polls.")
@json_option
@click.pass_context
def request_submit(
    ctx: click.Context, /, wait: bool, timeout: float, interval: float, as_json: bool, **options: Any
) -> None:
    """Submit demand (sent with an Idempotency-Key, so a retry never submits it twice).

    With --wait, exits 3 with the reason when it is not fully matched."""
    client, terms = client_of(ctx), _terms(options)
    data = client.call("request_submit", body=terms)
    submitted = BuyerRequest.from_json(data)
    if not wait:
        if as_json:
            return print_json(data)
        return table("Submitted", REQUEST_COLUMNS, request_rows([submitted]))
    progress = stderr()
    with progress.status(f"Request {submitted.id} submitted; waiting for a matching round…") as spinner:

        def on_poll(current: BuyerRequest) -> None:
            spinner.update(
                f"Request {current.id}: {status_of(current)}, {current.matched_replicas}/{current.replicas} replicas"
            )

        outcome = client.request_wait(submitted.id, terms=terms, timeout=timeout, interval=interval, on_poll=on_poll)
    found = client.call("match_list", query={"request": submitted.id})
    if as_json:
        final = client.call("request_get", path={"request_id": submitted.id})
        print_json({"request": final, "matched": outcome.matched, "reason": outcome.reason, "matches": found})
    else:
        table(f"Request {submitted.id}", REQUEST_COLUMNS, request_rows([outcome.request]))
        if found:
            show_matches([Match.from_json(item) for item in found], f"Matches of request {submitted.id}")
        if not outcome.matched:
            click.echo(f"Not matched: {outcome.reason}", err=True)
    if not outcome.matched:
        ctx.exit(EXIT_NOT_MATCHED)
    return None


@main.command()
@click.option("--status", type=click.Choice(["open", "partially_matched", "matched", "cancelled", "expired"]))
@json_option
@click.pass_context
def requests(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """Your requests (every page)."""
    items = client_of(ctx).call("request_list", query={"status": status})
    if as_json:
        return print_json(items)
    table("Requests", REQUEST_COLUMNS, request_rows(BuyerRequest.from_json(item) for item in items))
    return None


MATCH_COLUMNS = ["id", "request", "listing", "region", "GPUs", "RTT ms", "CNY/GPU-h", "subsidy", "cost/GPU-h", "status"]


def show_matches(items: Iterable[Match], title: str) -> None:
    table(
        title,
        MATCH_COLUMNS,
        [
            (
                m.id,
                m.request,
                m.listing,
                m.region,
                m.gpus,
                m.rtt_ms,
                m.price_per_gpu_hour,
                m.subsidy_per_gpu_hour,
                m.cost_per_gpu_hour,
                m.status + (f" ({m.status_reason})" if m.status_reason else ""),
            )
            for m in items
        ],
    )


@main.command()
@click.option("--request", "request_id", type=int, help="Only this request's matches.")
@click.option("--listing", "listing_id", type=int, help="Only matches on this listing.")
@click.option("--status", type=click.Choice(["reserved", "running", "completed", "cancelled", "failed", "preempted"]))
@json_option
@click.pass_context
def matches(
    ctx: click.Context, request_id: int | None, listing_id: int | None, status: str | None, as_json: bool
) -> None:
    """Your matches (a buyer's requests', a provider's listings'), with their cost breakdown."""
    query = {"request": request_id, "listing": listing_id, "status": status}
    items = client_of(ctx).call("match_list", query=query)
    if as_json:
        return print_json(items)
    show_matches([Match.from_json(item) for item in items], "Matches")
    return None
