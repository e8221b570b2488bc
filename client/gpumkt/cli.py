"""``gpumkt``: the marketplace from a terminal. Each command calls the SDK (``gpumkt.Client``)
and prints a Rich table, or with ``--json`` the API's JSON for scripts.

Exit codes: 0 done; 1 the API refused (its message, field errors included, on stderr) or could
not be reached; 2 bad usage (Click's); 3 ``request submit --wait`` ended without a full match.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from gpumkt import __version__
from gpumkt.client import Client
from gpumkt.config import config_write, settings_read
from gpumkt.errors import GpumktError
from gpumkt.models import BuyerRequest, CapacityRow, Listing, Match, Quote, Statement, Voucher

EXIT_NOT_MATCHED = 3
LATENCY_CLASSES = ("realtime", "interactive", "standard", "batch")
NODE_SIZES = click.Choice(["1", "2", "4", "8"])


class ApiFailure(click.ClickException):
    """An SDK error as Click shows errors: ``Error: …`` on stderr, exit code 1."""

    exit_code = 1


class Group(click.Group):
    """Turns the SDK's errors, raised by any command, into ``ApiFailure``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GpumktError as exc:
            raise ApiFailure(str(exc)) from exc


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def client_of(ctx: click.Context) -> Client:
    """The client for the settings in force (environment, then config file), made once."""
    if "client" not in ctx.meta:
        settings = settings_read()
        ctx.meta["client"] = ctx.with_resource(Client(settings.url, settings.key))
    client: Client = ctx.meta["client"]
    return client


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: print the API's JSON instead of a table (lists: every page's results)."""
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON, for scripts.")(command)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    grid = Table(title=title)
    for column in columns:
        grid.add_column(column, overflow="fold")  # never cut a value (a voucher code) short
    for row in rows:
        grid.add_row(*("" if value is None else str(value) for value in row))
    stdout().print(grid)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="gpumkt")
def main() -> None:
    """The GPU compute marketplace from the command line.

    The server and key come from GPUMKT_URL and GPUMKT_KEY if set, else from the config file
    that `gpumkt login` writes."""


@main.command()
@click.option("--url", help="The marketplace's address (default: GPUMKT_URL, the config file, or the local demo).")
@click.option("--key", help="Store this API key instead of asking for a username and password.")
@json_option
@click.pass_context
def login(ctx: click.Context, url: str | None, key: str | None, as_json: bool) -> None:
    """Store the server's URL and an API key in the config file (mode 0600).

    Without --key, asks for a username and password and obtains a token (POST /api/v1/auth/token/)."""
    url = url or settings_read().url
    if key is None:
        username = click.prompt("Username")
        password = click.prompt("Password", hide_input=True)
        with Client(url) as client:
            key = client.token(username, password)
    path = config_write({"url": url, "key": key})
    if as_json:
        print_json({"url": url, "config": str(path)})
    else:
        click.echo(f"Logged in to {url}; key stored in {path}")


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


# Listings


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
            f"{x.available_until.astimezone(UTC):%Y-%m-%d %H:%M}Z",
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
    terms["gpus_per_node"] = _int_or_none(terms["gpus_per_node"])
    data = client_of(ctx).call("listing_create", body=terms)
    show_listing(data, as_json, "Listed")


@listings.command("list")
@click.option("--all", "everyone", is_flag=True, help="Search every provider's active listings, not only yours.")
@click.option("--region")
@click.option("--gpu-model")
@click.option("--origin", help="Show RTT from this city; needed for --latency-class.")
@click.option("--latency-class", type=click.Choice(LATENCY_CLASSES))
@click.option("--max-price", help="At most this CNY per GPU-hour.")
@click.option("--status", type=click.Choice(["active", "withdrawn", "expired"]))
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
    changes["gpus_per_node"] = _int_or_none(changes["gpus_per_node"])
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


# Requests and quotes


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
        ]
    ):
        command = option(command)
    return command


def _terms(options: dict[str, Any]) -> dict[str, Any]:
    terms = {key: value for key, value in options.items() if value is not None}
    terms["gpus_per_replica"] = int(terms["gpus_per_replica"])
    return terms


def _int_or_none(value: str | None) -> int | None:
    return None if value is None else int(value)


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
            r.status,
            f"{r.matched_replicas}/{r.replicas}",
        )
        for r in items
    ]


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
                f"Request {current.id}: {current.status}, {current.matched_replicas}/{current.replicas} replicas"
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


# Matches, statements, vouchers

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
@click.option("--status", type=click.Choice(["reserved", "running", "completed", "cancelled", "failed"]))
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


@main.command()
@click.option("--month", help="YYYY-MM (default: the market's current month).")
@click.option("--csv", "as_csv", is_flag=True, help="Print the statement as CSV (a row per match, then totals).")
@json_option
@click.pass_context
def statements(ctx: click.Context, month: str | None, as_csv: bool, as_json: bool) -> None:
    """A month's settled matches and totals: what a buyer pays, what a provider earns."""
    client = client_of(ctx)
    if as_csv:
        click.echo(client.send("statement_csv", query={"month": month}).text, nl=False)
        return None
    data = client.call("statement", query={"month": month})
    if as_json:
        return print_json(data)
    statement = Statement.from_json(data)
    table(
        f"{statement.organisation} ({statement.role}), {statement.month}",
        ["match", "request", "region", "GPU-h", "CNY/GPU-h", "gross", "subsidy", "buyer pays", "fee", "provider earns"],
        [
            (
                x.match,
                x.request,
                x.region,
                x.gpu_hours,
                x.price_per_gpu_hour,
                x.gross,
                x.subsidy,
                x.buyer_pays,
                x.platform_fee,
                x.provider_earns,
            )
            for x in statement.line_items
        ],
    )
    table("Totals", list(statement.totals), [list(statement.totals.values())])
    return None


@main.group()
def vouchers() -> None:
    """A buyer's vouchers: claim a code, list them."""


VOUCHER_COLUMNS = ["id", "code", "programme", "sponsor", "kind", "percent", "free GPU-h", "remaining", "status"]


def voucher_rows(items: Iterable[Voucher]) -> list[tuple[Any, ...]]:
    return [
        (v.id, v.code, v.program, v.sponsor, v.kind, v.percent, v.free_gpu_hours, v.remaining_value, v.status)
        for v in items
    ]


@vouchers.command("claim")
@click.argument("code")
@json_option
@click.pass_context
def vouchers_claim(ctx: click.Context, code: str, as_json: bool) -> None:
    """Claim a voucher code (claiming twice changes nothing)."""
    data = client_of(ctx).call("voucher_claim", body={"code": code})
    if as_json:
        return print_json(data)
    table("Claimed", VOUCHER_COLUMNS, voucher_rows([Voucher.from_json(data)]))
    return None


@vouchers.command("list")
@json_option
@click.pass_context
def vouchers_list(ctx: click.Context, as_json: bool) -> None:
    """Your vouchers with what each can still pay."""
    items = client_of(ctx).call("voucher_list")
    if as_json:
        return print_json(items)
    table("Vouchers", VOUCHER_COLUMNS, voucher_rows(Voucher.from_json(item) for item in items))
    return None
