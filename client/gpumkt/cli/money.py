"""``gpumkt statements`` and ``gpumkt vouchers``: what was settled, and a buyer's subsidies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from gpumkt.cli.base import client_of, json_option, main, print_json, table
from gpumkt.models import Statement, Voucher


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
