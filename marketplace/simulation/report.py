"""The comparison as text: a headline table for the terminal and README, the issue's targets, and
the report page with its plots (matplotlib, Agg backend, imported only when a report is written)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from marketplace.simulation.scenario import SCENARIOS
from marketplace.simulation.variants import FIRST_CHOICE, MARKET, VARIANTS
from matching.policies import ENGINE, NEAREST

LABELS = {name: variant.label for name, variant in VARIANTS.items()}
CLASSES = ("realtime", "interactive", "standard", "batch")
PLOTS = {
    "utilisation": "utilisation-by-hour.png",
    "scatter": "price-latency.png",
    "served": "served-by-policy.png",
}


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def savings_vs_nearest(outcomes: dict, policy: str) -> tuple[float, float] | None:
    """(per GPU-hour, mix-adjusted) saving of ``policy``'s buyers against nearest-region-first.

    Per GPU-hour compares the average price paid; mix-adjusted compares price paid as a share of
    each GPU model's indicative price, so serving more of a dear model is not counted against it.
    """
    base, mine = outcomes.get(NEAREST), outcomes[policy]
    if base is None or not base["avg_price_paid"] or not base["price_index"]:
        return None
    return (
        1 - mine["avg_price_paid"] / base["avg_price_paid"],
        1 - mine["price_index"] / base["price_index"],
    )


def headline_rows(outcomes: dict) -> list[tuple[str, list[str]]]:
    """(figure, value per policy) rows of the headline table, policies in ``outcomes`` order."""
    rows = [
        ("utilisation of western hubs (GPU-hours held / listed)", lambda o: _pct(o["utilisation"]["west"])),
        ("utilisation of eastern hubs and cities", lambda o: _pct(o["utilisation"]["east"])),
        ("utilisation of all listed capacity", lambda o: _pct(o["utilisation"].get("all", 0.0))),
        ("replicas served / asked for", lambda o: _served(o, "served_replicas", "replicas", "served_replica_share")),
        (
            "GPU-hours served / asked for",
            lambda o: _served(o, "served_gpu_hours", "gpu_hours", "served_gpu_hour_share"),
        ),
        ("real-time GPU-hours served / asked for", lambda o: _served_class(o, "realtime")),
        ("latency-bound violations", lambda o: f"{o['latency_violations']} of {o['matches']} matches"),
        ("average price paid, CNY per GPU-hour", lambda o: f"{o['avg_price_paid']:.2f}"),
        ("price paid / indicative price of the model", lambda o: _pct(o["price_index"])),
        ("energy cost per GPU-hour served, CNY", lambda o: f"{o['energy_cost_per_gpu_hour']:.3f}"),
        ("voucher spend, CNY", lambda o: f"{o['voucher_spend']:,.0f}"),
        ("share of served GPU-hours in the west", lambda o: _pct(o["west_share_of_gpu_hours"])),
    ]
    out = [(name, [fn(o) for o in outcomes.values()]) for name, fn in rows]
    if all("inference" in o for o in outcomes.values()):
        out = inference_rows(outcomes) + out
    savings = [savings_vs_nearest(outcomes, policy) for policy in outcomes]
    out.append(("buyer savings vs nearest-region, per GPU-hour", [_pct(s[0]) if s else "–" for s in savings]))
    out.append(("… mix-adjusted (vs indicative prices)", [_pct(s[1]) if s else "–" for s in savings]))
    return out


def inference_rows(outcomes: dict) -> list[tuple[str, list[str]]]:
    """Issue 15's figures for inference demand, one value per variant (``measure.inference_measured``)."""
    rows = [
        (
            "output tokens/s placed / asked (Σ over requests, at most each target)",
            lambda i: (
                f"{i['tokens_per_second_placed']:,.0f} / {i['tokens_per_second_asked']:,.0f} "
                f"({_pct(_ratio(i['tokens_per_second_placed'], i['tokens_per_second_asked']))})"
            ),
        ),
        (
            "output token-hours served / asked (tokens/s × hours run)",
            lambda i: f"{i['token_hours_served']:,.0f} / {i['token_hours_asked']:,.0f} ({_pct(i['served_share'])})",
        ),
        ("million output tokens served", lambda i: f"{i['million_tokens_served']:,.1f}"),
        ("inference requests served / submitted", lambda i: f"{i['requests_served']} / {i['requests']}"),
        ("buyers pay, CNY per million output tokens", lambda i: f"{i['cny_per_million_tokens']:.4f}"),
        ("TTFT violations (checked outside the engine)", lambda i: f"{i['ttft_violations']} of {i['matches']} matches"),
        ("share of served tokens in the west", lambda i: _pct(i["west_share_of_tokens"])),
        ("served tokens by GPU model", lambda i: _model_shares(i["token_share_by_gpu_model"])),
    ]
    out = [(name, [fn(o["inference"]) for o in outcomes.values()]) for name, fn in rows]
    refused = [str(o["events"].get("requests_refused", 0)) for o in outcomes.values()]
    out.append(("requests refused at submission", refused))
    return out


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _saving(price: float, against: float) -> float:
    """The share ``price`` saves against ``against`` (0 when there is nothing to compare with)."""
    return 1 - price / against if against else 0.0


def _model_shares(shares: dict) -> str:
    top = sorted(shares.items(), key=lambda item: -item[1])
    return ", ".join(f"{model} {share * 100:.0f} %" for model, share in top if share >= 0.005) or "–"


def _served(o: dict, served: str, asked: str, share: str) -> str:
    demand = o["demand"]
    return f"{demand[served]:,.0f} / {demand[asked]:,.0f} ({_pct(demand[share])})"


def _served_class(o: dict, cls: str) -> str:
    row = o["demand"]["by_class"].get(cls)
    if not row or not row["gpu_hours"]:
        return "–"
    served, asked = row["served_gpu_hours"], row["gpu_hours"]
    return f"{served:,.0f} / {asked:,.0f} ({_pct(served / asked)})"


def class_gpu_hours(o: dict, cls: str) -> float:
    """GPU-hours of latency class ``cls`` served (metered) in a run's figures; 0 when none asked."""
    row = o["demand"]["by_class"].get(cls)
    return row["served_gpu_hours"] if row else 0.0


#: Issue 16's bar for western utilisation: this many points above nearest-region-first.
WEST_POINTS_TARGET = 0.10


@dataclass(frozen=True)
class Target:
    """One of issue 16's targets for the engine with market features. ``met`` is ``None`` for a
    figure the issue asks to report without a bar (the price buyers pay)."""

    name: str
    met: bool | None
    figure: str
    against: str

    def line(self) -> str:
        verdict = "reported" if self.met is None else ("met" if self.met else "missed")
        return f"{self.name}: {verdict} — {self.figure} against {self.against}"


def inference_targets(outcomes: dict) -> list[Target]:
    """Issue 15's bars for the inference scenario: no TTFT violation in any variant (a bar), and
    what substitution buys against the first-choice engine and nearest-region-first (reported)."""
    out = [
        Target(
            f"TTFT violations = 0 ({LABELS[policy]})",
            o["inference"]["ttft_violations"] == 0,
            f"{o['inference']['ttft_violations']} of {o['inference']['matches']} matches",
            "0",
        )
        for policy, o in outcomes.items()
    ]
    if ENGINE not in outcomes:
        return out
    e = outcomes[ENGINE]["inference"]
    for policy in (FIRST_CHOICE, NEAREST):
        if policy not in outcomes:
            continue
        b = outcomes[policy]["inference"]
        out.append(
            Target(
                f"token-hours served: {LABELS[ENGINE]} against {LABELS[policy]}",
                None,
                f"{e['token_hours_served']:,.0f} ({_pct(e['served_share'])})",
                f"{b['token_hours_served']:,.0f} ({_pct(b['served_share'])})",
            )
        )
        saving = _saving(e["cny_per_million_tokens"], b["cny_per_million_tokens"])
        out.append(
            Target(
                f"CNY per million output tokens: {LABELS[ENGINE]} against {LABELS[policy]}",
                None,
                f"{e['cny_per_million_tokens']:.4f} ({saving * 100:+.1f} % saved)",
                f"{b['cny_per_million_tokens']:.4f}",
            )
        )
    return out


def targets(outcomes: dict) -> list[Target]:
    """Issue 16's targets, judged on ``outcomes``; empty unless the market variant, the engine and
    nearest-region-first all ran. On inference demand: issue 15's (:func:`inference_targets`)."""
    if outcomes and all("inference" in o for o in outcomes.values()):
        return inference_targets(outcomes)
    if not all(p in outcomes for p in (MARKET, ENGINE, NEAREST)):
        return []
    m, e, n = outcomes[MARKET], outcomes[ENGINE], outcomes[NEAREST]
    served, served_n = m["demand"]["served_gpu_hours"], n["demand"]["served_gpu_hours"]
    realtime, realtime_e = class_gpu_hours(m, "realtime"), class_gpu_hours(e, "realtime")
    west, west_n = m["utilisation"]["west"], n["utilisation"]["west"]
    points = (west - west_n) * 100
    return [
        Target(
            "GPU-hours served ≥ nearest region first",
            served >= served_n,
            f"{served:,.0f} ({_pct(m['demand']['served_gpu_hour_share'])} of asked)",
            f"{served_n:,.0f} ({_pct(n['demand']['served_gpu_hour_share'])})",
        ),
        Target(
            "real-time GPU-hours served ≥ our engine",
            realtime >= realtime_e,
            f"{realtime:,.0f}",
            f"{realtime_e:,.0f}",
        ),
        Target(
            "western utilisation ≥ nearest region first + 10 points",
            round(points, 6) >= WEST_POINTS_TARGET * 100,
            f"{_pct(west)} ({points:+.1f} points)",
            f"{_pct(west_n)} + 10 = {_pct(west_n + WEST_POINTS_TARGET)}",
        ),
        Target(
            "latency-bound violations = 0",
            m["latency_violations"] == 0,
            f"{m['latency_violations']} of {m['matches']} matches",
            "0",
        ),
        Target(
            "price buyers pay, CNY per GPU-hour",
            None,
            f"{m['avg_price_paid']:.2f} ({_pct(m['price_index'])} of indicative)",
            f"our engine {e['avg_price_paid']:.2f} ({_pct(e['price_index'])}), nearest region first "
            f"{n['avg_price_paid']:.2f} ({_pct(n['price_index'])})",
        ),
    ]


def target_lines(outcomes: dict) -> list[str]:
    """One line per target (:func:`targets`) saying met, missed or reported, with the figures."""
    return [t.line() for t in targets(outcomes)]


def targets_table(outcomes: dict) -> str:
    """The targets as a Markdown table (empty string when they cannot be judged)."""
    rows = [
        [t.name, t.figure, t.against, "–" if t.met is None else ("met" if t.met else "**missed**")]
        for t in targets(outcomes)
    ]
    if not rows:
        return ""
    if all("inference" in o for o in outcomes.values()):
        return markdown_table(["figure", "measured", "against", "verdict"], rows)
    return markdown_table(["target", LABELS[MARKET], "against", "verdict"], rows)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)]) + "\n"


def summary_table(outcomes: dict) -> str:
    """The headline figures, one column per policy, as a Markdown table."""
    header = ["", *(LABELS[p] for p in outcomes)]
    return markdown_table(header, [[name, *values] for name, values in headline_rows(outcomes)])


def served_by_class_table(outcomes: dict) -> str:
    """Share of GPU-hours served per latency class and policy."""
    rows = []
    for cls in CLASSES:
        cells = []
        for o in outcomes.values():
            row = o["demand"]["by_class"].get(cls)
            cells.append(_pct(row["served_gpu_hours"] / row["gpu_hours"]) if row and row["gpu_hours"] else "–")
        rows.append([cls, *cells])
    return markdown_table(["latency class", *(LABELS[p] for p in outcomes)], rows)


def utilisation_table(outcomes: dict) -> str:
    """Utilisation per region (western hubs first) and policy."""
    regions = sorted(
        {r for o in outcomes.values() for r in o["utilisation"]["by_region"]},
        key=lambda r: (not _is_west(outcomes, r), r),
    )
    rows = []
    for region in regions:
        cells = [_pct(o["utilisation"]["by_region"].get(region, {}).get("utilisation", 0)) for o in outcomes.values()]
        rows.append([f"{region}{' (west)' if _is_west(outcomes, region) else ''}", *cells])
    return markdown_table(["region", *(LABELS[p] for p in outcomes)], rows)


def _is_west(outcomes: dict, region: str) -> bool:
    return any(o["utilisation"]["by_region"].get(region, {}).get("is_west") for o in outcomes.values())


def report_write(outcomes: dict, out_dir: Path, *, command: str) -> list[Path]:
    """Write ``README.md`` and the three plots into ``out_dir``; returns the paths written."""
    from marketplace.simulation import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        plots.utilisation_by_hour(outcomes, out_dir / PLOTS["utilisation"], LABELS),
        plots.price_latency(outcomes, out_dir / PLOTS["scatter"], LABELS),
        plots.served_by_policy(outcomes, out_dir / PLOTS["served"], LABELS, CLASSES),
    ]
    page = out_dir / "README.md"
    page.write_text(report_markdown(outcomes, command=command), encoding="utf-8")
    return [page, *written]


def report_markdown(outcomes: dict, *, command: str) -> str:
    """The report page: set-up, headline table, details, plots and what drives the differences."""
    first = next(iter(outcomes.values()))
    if "inference" in first:
        return inference_report_markdown(outcomes, command=command)
    events = first["events"]
    scenario = SCENARIOS[first.get("scenario", "default")]
    return "\n".join(
        [
            "# Market simulation: placement policies and market features on the same demand",
            "",
            f"Reproduce with `make report` (runs `{command}`). Scenario `{scenario.name}`: {scenario.summary}. "
            f"Seed {first['seed']}, "
            f"{first['days']:g} simulated day(s) from {first['start']} (00:00 China Standard Time), steps of "
            f"{first['step_minutes']} minutes, scale {first['scale']:g}: {events.get('listings', 0)} listings "
            f"listed, {events.get('withdrawals', 0)} withdrawn, {events.get('requests', 0)} requests "
            f"({events.get('requests_with_voucher', 0)} with a voucher), "
            f"{events.get('vouchers_claimed', 0)} voucher codes claimed. Every policy ran the identical "
            "script on its own fresh database, through the real services and the real matching round; "
            "after the last step each run drained (time moved on with no new demand) until every match had "
            "ended and settled, so prices and voucher spend are read from settlements.",
            "",
            "## Headline figures",
            "",
            summary_table(outcomes),
            *_targets_section(outcomes),
            "## Served GPU-hours by latency class",
            "",
            served_by_class_table(outcomes),
            "## Utilisation by region",
            "",
            utilisation_table(outcomes),
            "## Plots",
            "",
            f"![Utilisation by region over the day]({PLOTS['utilisation']})",
            "",
            f"![Price and latency of every match]({PLOTS['scatter']})",
            "",
            f"![Served demand by policy]({PLOTS['served']})",
            "",
            "## How it is measured",
            "",
            MEASURES,
            "## What drives the differences",
            "",
            drivers_note(outcomes),
        ]
    )


def inference_report_markdown(outcomes: dict, *, command: str) -> str:
    """The inference scenario's page (issue 15): set-up, the headline table with the inference
    figures first, the checks, utilisation by region, plots and how it is measured."""
    first = next(iter(outcomes.values()))
    events = first["events"]
    scenario = SCENARIOS[first["scenario"]]
    return "\n".join(
        [
            "# Market simulation: inference demand served across GPU models",
            "",
            f"Reproduce with `make report` (runs `{command}`). Scenario `{scenario.name}`: {scenario.summary}. "
            f"Seed {first['seed']}, {first['days']:g} simulated day(s) from {first['start']} (00:00 China "
            f"Standard Time), steps of {first['step_minutes']} minutes, scale {first['scale']:g}: "
            f"{events.get('listings', 0)} listings listed, {events.get('withdrawals', 0)} withdrawn, "
            f"{first['inference']['requests']} inference requests filed ({events.get('requests_with_voucher', 0)} "
            "with a voucher). The same seeded supply and demand ran under each variant on its own fresh "
            "database, through `services.request_submit_inference`, the real matching rounds and the "
            "lifecycle, and drained until every match had ended and settled.",
            "",
            "Variants: **our engine** allows every GPU model (substitution across GPU models); "
            f"**{LABELS[FIRST_CHOICE]}** submits each request with the buyer's first-choice GPU model as its "
            "allow-list of one; **nearest region first** does the same (a buyer choosing by hand names its "
            "GPU model) and places each request on the nearest feasible listings in arrival order.",
            "",
            "## Headline figures",
            "",
            summary_table(outcomes),
            "## Checks",
            "",
            targets_table(outcomes),
            "## Utilisation by region",
            "",
            utilisation_table(outcomes),
            "## Plots",
            "",
            f"![Utilisation by region over the day]({PLOTS['utilisation']})",
            "",
            f"![Price and latency of every match]({PLOTS['scatter']})",
            "",
            "## What the figures say",
            "",
            inference_note(outcomes),
            "## How it is measured",
            "",
            INFERENCE_MEASURES,
        ]
    )


def inference_note(outcomes: dict) -> str:
    """One paragraph per baseline comparing our engine with it, quoting the figures (empty without
    the engine's run)."""
    if ENGINE not in outcomes:
        return "Run the engine (`--policy all`) for this note.\n"
    e = outcomes[ENGINE]
    paragraphs = []
    for policy in (FIRST_CHOICE, NEAREST):
        if policy not in outcomes:
            continue
        b = outcomes[policy]
        ei, bi = e["inference"], b["inference"]
        saving = _saving(ei["cny_per_million_tokens"], bi["cny_per_million_tokens"])
        west = (e["utilisation"]["west"] - b["utilisation"]["west"]) * 100
        paragraphs.append(
            f"**Against {LABELS[policy]}.** Our engine placed "
            f"{_pct(_ratio(ei['tokens_per_second_placed'], ei['tokens_per_second_asked']))} of the output tokens/s "
            f"asked against {_pct(_ratio(bi['tokens_per_second_placed'], bi['tokens_per_second_asked']))}, "
            f"served {_pct(ei['served_share'])} of the token-hours against {_pct(bi['served_share'])}, at "
            f"{ei['cny_per_million_tokens']:.4f} CNY per million output tokens against "
            f"{bi['cny_per_million_tokens']:.4f} ({saving * 100:+.1f} % saved), with "
            f"{_pct(ei['west_share_of_tokens'])} of its tokens served in the west against "
            f"{_pct(bi['west_share_of_tokens'])} and western utilisation {west:+.1f} points "
            f"({_pct(e['utilisation']['west'])} against {_pct(b['utilisation']['west'])}). Its tokens came from "
            f"{_model_shares(ei['token_share_by_gpu_model'])}; the baseline's from "
            f"{_model_shares(bi['token_share_by_gpu_model'])}."
        )
    return "\n\n".join(paragraphs) + "\n"


INFERENCE_MEASURES = """\
- **Demand** (`marketplace/simulation/inference_demand.py`): buyers in eight eastern cities ask for
  an LLM (mostly the R1 distills and Qwen) at 1,000–16,000 output tokens/s, with a p95 TTFT target of
  0.5–5 s, prompt and output lengths by workload (chat, agents, RAG) and a cap per million output
  tokens drawn as a share of what the model's pay-per-token API (DeepSeek, Alibaba Model Studio list
  prices) charges for the same tokens. Each buyer's **first-choice GPU model** is the GPU model
  listed nearest its city on which the LLM fits and reaches the TTFT target.
- **Tokens/s placed**: Σ over requests of `tokens_per_second_placed`, at most each target.
- **Token-hours served**: each inference match's `tokens_per_second` × the hours it ran (settled
  GPU-hours ÷ GPUs), per request at most target × duration (over-provisioned replicas are paid for,
  not counted as served). **CNY per million output tokens** = Σ settlement `buyer_pays` ÷ (served
  token-hours × 0.0036).
- **TTFT violations**: every inference match, independently of the engine: no recorded `ttft_ms`,
  a recorded `ttft_ms` over its request's `ttft_p95_ms`, or a TTFT recomputed here (RTT table's
  origin → listing region + the 100 ms queueing margin + the throughput model's prefill of the
  prompt on the match's replica size and precision) over the target.
- **Utilisation**: as in the GPU-form report: GPU-hours held / listed, western hubs = `Region.is_west`.
- The GPU-form rows below the inference rows are the same figures as the GPU-form report's, for the
  rows the inference requests carry (their first-choice alternative's GPU model, replica size and
  replicas at submission); an inference match's RTT is checked as part of its TTFT, not against a
  latency class.
"""


def _targets_section(outcomes: dict) -> list[str]:
    table = targets_table(outcomes)
    if not table:
        return []
    intro = (
        f"Issue 16's targets for **{LABELS[MARKET]}** ({_features_text()}), judged on this run's figures "
        "(GPU-hours are metered by settlements; western utilisation as in the headline table):"
    )
    return ["## Targets (issue 16)", "", intro, "", table]


def _features_text() -> str:
    return "; ".join(f.summary for f in VARIANTS[MARKET].switched_on)


MEASURES = """\
- **Utilisation**: at every step, the GPUs of active listings and the GPUs of started, live matches,
  per region; GPU-hours held / GPU-hours listed over the simulated days (the drain is not counted,
  nor, in runs of two days or more, the first day, while the empty market fills up).
  Western hubs are the regions with `Region.is_west` (Inner Mongolia, Guizhou, Gansu, Ningxia).
- **Served**: replicas placed on matches that did not fail (`matched_replicas`), and GPU-hours
  metered by settlements, against what the requests asked for.
- **Latency-bound violations**: every match's `rtt_ms` against its request's bound (explicit
  `max_rtt_ms`, else its latency class's).
- **Average price paid**: Σ `buyer_pays` / Σ `gpu_hours` of the settlements; "mix-adjusted" divides
  by each GPU model's indicative price first, since the policies serve different model mixes.
- **Energy cost**: each match's `energy_cost_per_gpu_hour` (TDP × PUE × tariff of its region),
  weighted by its metered GPU-hours.
- **Voucher spend**: Σ settlement `subsidy`.
- **Repricing** (engine with market features): once a simulated day at 22:00 CST, after the step's
  rounds, each provider asks the guidance (`selectors.listing_guidance`) about each listing with idle
  GPUs and moves its price halfway toward the suggested price, never below its energy cost, through
  `services.listing_update` (`marketplace/simulation/providers.py`). Matches already made keep their
  price.
"""


def drivers_note(outcomes: dict) -> str:
    """The closing note: what the figures show and why, quoting them."""
    from marketplace.simulation.notes import drivers

    return drivers(outcomes, LABELS)
