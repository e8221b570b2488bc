"""``gpumkt serve``: demand in the inference form — an LLM at output tokens/s from a city, the first
token within a TTFT target, at most a price per million output tokens (docs/inference.md). Without
``--submit`` it quotes (the placement and the frontier by GPU model; nothing is written); with it,
it submits the request, which any GPU model that serves the LLM in time may then serve."""

from __future__ import annotations

from typing import Any

import click

from gpumkt.cli.base import client_of, json_option, main, or_dash, print_json, table
from gpumkt.cli.demand import REQUEST_COLUMNS, request_rows
from gpumkt.models import BuyerRequest


@main.command()
@click.option("--llm-model", required=True, help="The LLM's code (gpumkt llm-models lists them).")
@click.option("--tokens-per-second", "output_tokens_per_second", required=True, help="Output tokens/s to serve.")
@click.option("--ttft-ms", "ttft_p95_ms", required=True, help="Time to first token at p95, ms (network included).")
@click.option("--origin", required=True, help="Where your users are (a region code, e.g. shanghai).")
@click.option("--max-price", "max_price_per_million_tokens", required=True, help="CNY per million output tokens.")
@click.option("--hours", "duration_hours", type=int, required=True, help="Duration in whole hours.")
@click.option("--prompt-tokens", type=int, required=True, help="A typical prompt's length, tokens.")
@click.option("--output-tokens", type=int, required=True, help="A typical answer's length, tokens.")
@click.option("--gpu-model", "gpu_models", multiple=True, help="Only these GPU models (repeat; default: any).")
@click.option("--precision", help="Only this precision (BF16, FP8, INT4-AWQ…; default: any it is served at).")
@click.option("--start-by", help="Start at the latest at (ISO time with offset; default +24 h).")
@click.option("--voucher", "voucher_code", help="A voucher code to apply.")
@click.option("--submit", is_flag=True, help="Submit the request instead of quoting it.")
@json_option
@click.pass_context
def serve(ctx: click.Context, /, submit: bool, as_json: bool, **options: Any) -> None:
    """Quote (or with --submit, request) serving an LLM at a throughput under a TTFT target."""
    terms = {key: value for key, value in options.items() if value not in (None, ())}
    if "gpu_models" in terms:
        terms["gpu_models"] = list(terms["gpu_models"])
    client = client_of(ctx)
    if submit:
        data = client.call("inference_submit", body=terms)
        if as_json:
            return print_json(data)
        table("Submitted", REQUEST_COLUMNS, request_rows([BuyerRequest.from_json(data)]))
        return None
    data = client.call("inference_quote", body=terms)
    if as_json:
        return print_json(data)
    chosen = data["chosen"]
    title = (
        f"Quote: {chosen['gpu_model']} × {chosen['gpus_per_replica']} {chosen['precision']}, "
        f"{chosen['price_per_million_tokens']} CNY per million tokens, TTFT {chosen['ttft_ms']} ms"
        if chosen
        else "Quote: nothing places these terms now"
    )
    table(
        title,
        ["GPU model", "replica", "tokens/s each", "replicas", "regions", "TTFT ms", "CNY/Mtok", "blocked"],
        [
            (
                row["gpu_model"],
                f"{row['gpus_per_replica']} × {row['precision']}",
                row["tokens_per_second_per_replica"],
                row["replicas_placed"],
                ", ".join(row["regions"]),
                or_dash(row["ttft_ms"]),
                or_dash(row["price_per_million_tokens"]),
                row["blocked"],
            )
            for row in data["frontier"]
        ],
    )
    if data["unserved_reason"]:
        click.echo(f"Not placed: {data['unserved_reason']}")
    return None
