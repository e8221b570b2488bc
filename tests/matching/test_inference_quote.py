"""Inference quotes on small hand-built markets (no database): which GPU model, size and region
serve an LLM's throughput under a TTFT target cheapest, and what blocks each other GPU model.

The figures below are hand-checked from the throughput model (tests/matching/test_inference.py
holds the model itself): DeepSeek-R1-Distill-Qwen-32B at FP8, 2,000-token prompts, 500-token
answers serves 3,523 tokens/s on one H100 (prefill 221 ms), 2,149 on two H20 (prefill 776 ms) and
1,128 on one H20 (prefill 1,477 ms). 2,000 tokens/s for an hour is 7.2 million tokens.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching.inference import GpuSpec, LlmSpec, MeasuredPoint
from matching.inference_quote import (
    QUEUEING_MARGIN_MS,
    InferenceTerms,
    alternatives_of,
    best_ttft_ms,
    inference_quote,
    price_cap_per_gpu_hour,
    quote_dict,
    replicas_for,
)
from matching.problem import VoucherTerms
from tests.matching.builders import NOW, lst, problem

QWEN_32B = LlmSpec("deepseek-r1-distill-qwen-32b", 32.8, 32.8, 64, 8, 128, 131072, ("BF16", "FP8", "INT4-AWQ"))
DEEPSEEK_V3 = LlmSpec("deepseek-v3", 671, 37, 61, 1, 288, 163840, ("FP8", "BF16"))
H100 = GpuSpec("h100", 80, 3350, 989, 1979, "nvlink")
H20 = GpuSpec("h20", 96, 4000, 148, 296, "nvlink")
RTX4090 = GpuSpec("rtx4090", 24, 1008, 165.2, 330.3, "pcie")
GPUS = (H100, H20, RTX4090)


def terms(**overrides) -> InferenceTerms:
    fields = {
        "llm": QWEN_32B,
        "origin": "shanghai",
        "tokens_per_second": Decimal(2000),
        "prompt_tokens": 2000,
        "output_tokens": 500,
        "ttft_ms": Decimal(1500),
        "max_price_per_million_tokens": Decimal(20),
        "duration_hours": 24,
        "start_by": NOW + timedelta(hours=1),
        "precision": "FP8",
    }
    return InferenceTerms(**{**fields, **overrides})


def quote_of(asked: InferenceTerms, listings, measured=None, voucher=None):
    alternatives = alternatives_of(asked, GPUS, listings, measured or {})
    return inference_quote(problem([], listings), asked, alternatives, lambda alternative: voucher)


def test_the_cap_per_gpu_hour_keeps_the_replicas_needed_within_the_cap_per_million_tokens():
    # 2,000 tokens/s = 7.2 Mtok an hour; at 5 CNY/Mtok that is 36 CNY an hour over 3 replicas of 2 GPUs.
    assert price_cap_per_gpu_hour(Decimal(5), Decimal(2000), 3, 2) == Decimal("6.0000")
    assert price_cap_per_gpu_hour(Decimal(1), Decimal(1), 1, 3) == Decimal("0.0012")  # rounded down
    assert (replicas_for(Decimal(2000), 1128.0), replicas_for(Decimal(2000), 2149.0)) == (2, 1)


def test_each_alternative_has_its_own_rtt_bound_cap_and_replicas():
    alternatives = {(a.gpu_model, a.gpus_per_replica): a for a in alternatives_of(terms(), GPUS, [], {})}
    one_h20, two_h20 = alternatives[("h20", 1)], alternatives[("h20", 2)]
    assert one_h20.blocked.startswith("h20: prefill of 2,000 tokens takes 1,477 ms on 1")
    assert two_h20.rtt_bound_ms == pytest.approx(1500 - two_h20.prefill_ms - QUEUEING_MARGIN_MS)
    assert (two_h20.replicas_needed, two_h20.max_price_per_gpu_hour) == (1, Decimal("72.0000"))  # 20 × 7.2 ÷ 2
    assert alternatives[("rtx4090", 1)].blocked == "rtx4090: 32.8B at FP8 does not fit 24 GB on one node of 1"
    assert alternatives[("rtx4090", 2)].fits


def test_a_far_cheap_h20_beats_a_near_h100_within_the_ttft():
    near_h100 = lst(1, region="yrd", model="h100", price="13")
    far_h20 = lst(2, region="ningxia-zhongwei", model="h20", price="6")
    quote = quote_of(terms(), [near_h100, far_h20])
    best = quote.best
    assert best is not None
    assert (best.alternative.gpu_model, best.alternative.gpus_per_replica) == ("h20", 2)
    assert [(a.listing_id, a.region, a.replicas) for a in best.assignments] == [(2, "ningxia-zhongwei", 1)]
    # 2 GPUs × 6 CNY an hour for 7.2 Mtok; the H100: 1 GPU × 13.
    assert best.price_per_million_tokens == Decimal("1.6667")
    assert quote.frontier["h100"].price_per_million_tokens == Decimal("1.8056")
    assert best.ttft_ms == pytest.approx(35.8 + QUEUEING_MARGIN_MS + best.alternative.prefill_ms)
    assert best.ttft_ms <= 1500


def test_a_tight_ttft_keeps_the_work_near():
    far, near = lst(1, region="ningxia-zhongwei", model="h20", price="6"), lst(2, region="yrd", model="h20", price="7")
    loose = quote_of(terms(), [far, near]).best
    assert loose is not None
    assert [a.region for a in loose.assignments] == ["ningxia-zhongwei"]
    two_h20 = next(a for a in alternatives_of(terms(), [H20], [], {}) if a.gpus_per_replica == 2)
    tight_ttft = Decimal(round(two_h20.prefill_ms + QUEUEING_MARGIN_MS + 10))  # leaves ~10 ms for the network
    tight = quote_of(terms(ttft_ms=tight_ttft), [far, near]).best
    assert tight is not None
    assert ([a.region for a in tight.assignments], tight.alternative.gpus_per_replica) == (["yrd"], 2)
    assert tight.price_per_million_tokens == Decimal("1.9444")  # 2 × 7 ÷ 7.2
    assert tight.ttft_ms <= float(tight_ttft)


def test_a_model_too_big_for_a_gpu_is_never_placed_there():
    cheap_4090s = lst(1, region="yrd", model="rtx4090", price="1", nodes=(8, 8, 8, 8))
    h20s = lst(2, region="ningxia-zhongwei", model="h20", price="6", nodes=(8, 8, 8, 8))
    asked = terms(llm=DEEPSEEK_V3, tokens_per_second=Decimal(500), max_price_per_million_tokens=Decimal(500))
    quote = quote_of(asked, [cheap_4090s, h20s])
    assert quote.best is not None
    assert quote.best.alternative.gpu_model == "h20"
    assert all(q.alternative.gpu_model != "rtx4090" for q in quote.alternatives if q.assignments)
    assert quote.frontier["rtx4090"].blocked == "rtx4090: 671B at FP8 does not fit 24 GB on one node of 8"


def test_a_price_cap_blocks_a_gpu_model_in_words():
    near_h100 = lst(1, region="yrd", model="h100", price="13")
    far_h20 = lst(2, region="ningxia-zhongwei", model="h20", price="6")
    quote = quote_of(terms(max_price_per_million_tokens=Decimal("1.7")), [near_h100, far_h20])
    assert quote.frontier["h100"].blocked == "h100 within 1,500 ms TTFT: none free under 1.70 CNY/Mtok"
    assert quote.best is not None
    assert quote.best.alternative.gpu_model == "h20"
    assert quote.frontier["rtx4090"].blocked == "rtx4090: none free"


def test_a_ttft_too_tight_for_the_far_region_says_so():
    far_h20 = lst(2, region="ningxia-zhongwei", model="h20", price="6")
    quote = quote_of(terms(ttft_ms=Decimal(320)), [far_h20])
    assert quote.best is None
    assert quote.frontier["h20"].blocked.startswith("h20 within 320 ms TTFT: none free within ")
    assert quote.frontier["h20"].blocked.endswith(" ms RTT of shanghai")
    assert "h20 within 320 ms TTFT" in quote_dict(quote)["unserved_reason"]


def test_the_best_ttft_is_the_fastest_fitting_setup_from_the_nearest_region():
    alternatives = alternatives_of(terms(), GPUS, [], {})
    fastest = min(a.prefill_ms for a in alternatives if a.fits)
    assert best_ttft_ms(alternatives, 1.0) == pytest.approx(1.0 + QUEUEING_MARGIN_MS + fastest)
    assert best_ttft_ms(alternatives_of(terms(llm=DEEPSEEK_V3), [RTX4090], [], {}), 1.0) is None


def test_a_measured_profile_beats_the_model_on_its_own_listing_and_says_so():
    measured_h20 = lst(1, region="ningxia-zhongwei", model="h20", price="6")
    other_h20 = lst(2, region="ningxia-zhongwei", model="h20", price="5.9")
    point = MeasuredPoint(
        "deepseek-r1-distill-qwen-32b", "h20", "FP8", 1, 2000, 64, 2500.0, 600.0, datetime(2026, 1, 1, tzinfo=UTC)
    )
    quote = quote_of(terms(), [measured_h20, other_h20], measured={1: [point]})
    best = quote.best
    assert best is not None
    # Measured: one H20 makes 2,500 tokens/s with a 600 ms TTFT, so one GPU at 6 beats two at 5.9.
    assert (best.alternative.source, best.alternative.gpus_per_replica) == ("measured", 1)
    assert [a.listing_id for a in best.assignments] == [1]
    assert best.alternative.prefill_ms == 600.0
    assert best.price_per_million_tokens == Decimal("0.8333")  # 6 ÷ 7.2
    assert quote_dict(quote)["chosen"]["source"] == "measured"


def test_a_subsidy_is_deducted_from_the_price_per_million_tokens():
    far_h20 = lst(2, region="ningxia-zhongwei", model="h20", price="6")
    voucher = VoucherTerms(code="V", percent=Decimal(50), remaining_value=Decimal(10_000))
    best = quote_of(terms(), [far_h20], voucher=voucher).best
    assert best is not None
    assert best.price_per_million_tokens == Decimal("0.8333")  # 2 × (6 − 3) ÷ 7.2


def test_a_placement_short_of_the_target_says_how_much_it_serves():
    one_node = lst(2, region="ningxia-zhongwei", model="h20", price="6", nodes=(2,))
    quote = quote_of(terms(tokens_per_second=Decimal(6000), precision=None), [one_node])
    best = quote.best
    assert best is not None
    assert best.tokens_per_second < 6000
    body = quote_dict(quote)
    assert body["unserved_reason"].startswith("only ")
    assert body["tokens_per_second_placed"] == pytest.approx(best.tokens_per_second, abs=0.1)


def test_quote_dict_lists_every_alternative_and_one_frontier_row_per_gpu_model():
    listings = [lst(1, region="yrd", model="h100", price="13")]
    body = quote_dict(quote_of(terms(), listings))
    assert [row["gpu_model"] for row in body["frontier"]] == ["h100", "h20", "rtx4090"]
    assert len(body["alternatives"]) == len(GPUS) * 4  # one precision, four replica sizes
    assert body["placement"][0]["listing_id"] == 1
    assert replace(terms(), precision=None).precision is None


# --- properties ----------------------------------------------------------------------------------

REGIONS = ["shanghai", "yrd", "ningxia-zhongwei", "guian"]
LLMS = [QWEN_32B, QWEN_32B, DEEPSEEK_V3]


@st.composite
def markets(draw):
    listings = [
        lst(
            i + 1,
            region=draw(st.sampled_from(REGIONS)),
            model=draw(st.sampled_from([gpu.code for gpu in GPUS])),
            nodes=tuple(draw(st.lists(st.sampled_from([0, 1, 2, 4, 8]), min_size=1, max_size=3))),
            price=str(draw(st.integers(1, 20))),
        )
        for i in range(draw(st.integers(0, 8)))
    ]
    asked = terms(
        llm=draw(st.sampled_from(LLMS)),
        tokens_per_second=Decimal(draw(st.integers(1, 30)) * 250),
        prompt_tokens=draw(st.sampled_from([200, 2000, 2000, 8000])),
        ttft_ms=Decimal(draw(st.integers(6, 40)) * 50),
        max_price_per_million_tokens=Decimal(draw(st.integers(1, 60))) / 2,
        precision=draw(st.sampled_from([None, "FP8", "BF16"])),
    )
    percent = draw(st.sampled_from([None, 30]))
    voucher = None if percent is None else VoucherTerms("V", Decimal(percent), Decimal(draw(st.integers(0, 2000))))
    return asked, listings, voucher


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets())
def test_no_quote_breaks_the_ttft_the_cap_the_fit_or_the_capacity(market):
    asked, listings, voucher = market
    quote = quote_of(asked, listings, voucher=voucher)
    cap, target = asked.max_price_per_million_tokens, float(asked.tokens_per_second)
    used: dict[tuple[int, int], int] = {}
    for q in quote.alternatives:
        a = q.alternative
        if not q.assignments:
            assert q.blocked, a  # nothing placed always says why
            continue
        assert a.fits, a  # a model too big for a GPU is never placed there
        assert q.ttft_ms is not None
        assert q.ttft_ms <= float(asked.ttft_ms) + 1e-6
        assert q.price_per_million_tokens is not None
        assert q.price_per_million_tokens <= cap
        assert q.replicas_placed <= a.replicas_needed
        assert q.tokens_per_second_served <= target
        for line in q.assignments:
            assert line.rtt_ms <= a.rtt_bound_ms
            assert line.price_per_gpu_hour <= a.max_price_per_gpu_hour
    for q in quote.alternatives:  # each alternative alone never takes more than a node has free
        used.clear()
        for line in q.assignments:
            for node in line.nodes:
                used[(line.listing_id, node)] = used.get((line.listing_id, node), 0) + line.gpus_per_replica
        free = {(listing.id, k): gpus for listing in listings for k, gpus in enumerate(listing.node_free)}
        assert all(gpus <= free[key] for key, gpus in used.items())
    placed = [q for q in quote.alternatives if q.assignments]
    assert (quote.best is None) == (not placed)
    if quote.best is not None:
        assert quote.best.rank() == min(q.rank() for q in placed)
    for model, point in quote.frontier.items():
        own = [q for q in placed if q.alternative.gpu_model == model]
        assert bool(point.assignments) == bool(own)
        assert point.blocked or point.assignments
