"""The inference scenario's demand: LLMs served for users in eastern cities, in the inference form.

Pure Python and seeded, like ``scenario``: every event is drawn up front from a generator of its
own (seeded from the run's seed), never from the state of the system, so every variant replays the
same requests. Each request names an LLM (:data:`LLM_MIX`, weighted toward the R1 distills and
Qwen), an output tokens/s target, prompt and output lengths, a p95 TTFT target between 0.5 s and
5 s, a cap in CNY per million output tokens anchored on the Chinese API list prices
(:data:`API_PRICES`), a duration and a start window; and the buyer's **first-choice GPU model**,
what it would name by hand (:func:`first_choice`): of the GPU models the providers list, the one
listed nearest its city on which the LLM fits and reaches the TTFT target.

Figures marked *estimated* below are this scenario's assumptions, not measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from marketplace.money import to_fen_down
from matching.inference import GpuSpec, LlmSpec, throughput
from matching.inference_quote import GPUS_PER_REPLICA, QUEUEING_MARGIN_MS

#: API list prices, CNY per million tokens (input, output), standard (non-discount, non-batch)
#: rates for mainland China, 2025. DeepSeek-V3 (deepseek-chat) and R1 (deepseek-reasoner):
#: DeepSeek's platform, https://api-docs.deepseek.com/zh-cn/quick_start/pricing (2 / 8 and 4 / 16 from
#: 2025-02-09). The Qwen models and the R1 distills: Alibaba Cloud Model Studio (百炼) model list,
#: https://help.aliyun.com/zh/model-studio/models (Qwen3 at their non-thinking output rate). These
#: were transcribed as known when this was written, without re-checking the pages online: re-check
#: before quoting them. GLM-4-9B has no such list price at hand: *estimated* as the 7B class.
API_PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "deepseek-r1": (Decimal(4), Decimal(16)),
    "deepseek-v3": (Decimal(2), Decimal(8)),
    "deepseek-r1-distill-qwen-32b": (Decimal(2), Decimal(6)),
    "deepseek-r1-distill-qwen-14b": (Decimal(1), Decimal(3)),
    "deepseek-r1-distill-qwen-7b": (Decimal("0.5"), Decimal(1)),
    "qwen2-5-72b-instruct": (Decimal(4), Decimal(12)),
    "qwen2-5-32b-instruct": (Decimal(2), Decimal(6)),
    "qwen2-5-7b-instruct": (Decimal("0.5"), Decimal(1)),
    "qwen3-32b": (Decimal(2), Decimal(8)),
    "qwen3-235b-a22b": (Decimal(2), Decimal(8)),
    "qwen3-30b-a3b": (Decimal("0.75"), Decimal(3)),
    "glm-4-9b-chat": (Decimal("0.5"), Decimal(1)),
}

#: Models that think before answering: their answers run longer (*estimated* output lengths).
REASONING = frozenset(
    {"deepseek-r1", "deepseek-r1-distill-qwen-32b", "deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-qwen-7b"}
)


@dataclass(frozen=True)
class InferenceWorkload:
    """A kind of inference demand (weights need not sum to 1; ranges are inclusive).

    ``ttft_ms`` the p95 TTFT targets it asks for; ``cap_share`` the buyer's cap per million output
    tokens as a share of what the same tokens cost through the model's pay-per-token API
    (:func:`api_cost_per_million_output`): a buyer renting dedicated GPUs does so to pay well below
    the API (*estimated*)."""

    name: str
    buyer: str  # which of a city's buyers sends it: "apps" or "labs" (``scenario.Buyer.kind``)
    per_day: float  # requests per day, all cities together, at scale 1
    hourly: tuple[float, ...]  # relative arrivals per CST hour
    llms: tuple[tuple[str, float], ...]
    tokens_per_second: tuple[tuple[int, float], ...]
    prompt_tokens: tuple[int, int]
    output_tokens: tuple[int, int]
    reasoning_output_tokens: tuple[int, int]
    ttft_ms: tuple[tuple[int, float], ...]
    cap_share: tuple[float, float]
    hours: tuple[int, ...]
    start_within: tuple[int, int]
    voucher_rate: float


#: The mix, sized so that the engine holds about half the default scenario's listed GPU-hours
#: (*estimated* rates and sizes: 16,000 tokens/s is some 800 users streaming at 20 tokens/s).
#: Chat peaks in the evening with short prompts and tight TTFTs; agents and coding
#: assistants work office hours with long prompts; RAG and document pipelines run by day with the
#: longest prompts and the loosest TTFTs. The LLM weights favour the R1 distills (32B, 7B) and Qwen,
#: what Chinese teams self-host most (*estimated*, from the models' download counts and the
#: serving platforms' catalogues, not from a survey).
INFERENCE_WORKLOADS = (
    InferenceWorkload(
        name="chat",
        buyer="apps",
        per_day=160,
        hourly=(5, 3, 2, 1.5, 1, 1, 1.5, 3, 6, 8, 9, 10, 11, 10, 9, 9, 9, 10, 13, 17, 20, 21, 18, 10),
        llms=(
            ("deepseek-r1-distill-qwen-32b", 0.22),
            ("deepseek-r1-distill-qwen-7b", 0.16),
            ("qwen2-5-7b-instruct", 0.14),
            ("qwen3-32b", 0.12),
            ("qwen2-5-32b-instruct", 0.08),
            ("deepseek-r1-distill-qwen-14b", 0.06),
            ("qwen3-30b-a3b", 0.06),
            ("glm-4-9b-chat", 0.05),
            ("qwen2-5-72b-instruct", 0.05),
            ("qwen3-235b-a22b", 0.03),
            ("deepseek-v3", 0.015),
            ("deepseek-r1", 0.015),
        ),
        tokens_per_second=((1000, 0.25), (2000, 0.3), (4000, 0.25), (8000, 0.15), (16000, 0.05)),
        prompt_tokens=(300, 2000),
        output_tokens=(150, 600),
        reasoning_output_tokens=(600, 2000),
        ttft_ms=((500, 0.15), (800, 0.25), (1000, 0.25), (1500, 0.25), (2000, 0.1)),
        cap_share=(0.15, 0.45),
        hours=(2, 3, 4, 6),
        start_within=(1, 2),
        voucher_rate=0.3,
    ),
    InferenceWorkload(
        name="agents",
        buyer="apps",
        per_day=120,
        hourly=(2, 1, 1, 1, 1, 1, 2, 5, 10, 16, 18, 18, 14, 16, 18, 18, 16, 13, 10, 9, 8, 7, 5, 3),
        llms=(
            ("deepseek-r1-distill-qwen-32b", 0.25),
            ("qwen2-5-32b-instruct", 0.15),
            ("qwen3-32b", 0.15),
            ("deepseek-r1-distill-qwen-7b", 0.1),
            ("qwen2-5-72b-instruct", 0.1),
            ("qwen2-5-7b-instruct", 0.08),
            ("qwen3-235b-a22b", 0.06),
            ("deepseek-r1-distill-qwen-14b", 0.05),
            ("deepseek-v3", 0.03),
            ("deepseek-r1", 0.03),
        ),
        tokens_per_second=((2000, 0.3), (4000, 0.35), (8000, 0.25), (16000, 0.1)),
        prompt_tokens=(2000, 8000),
        output_tokens=(300, 1200),
        reasoning_output_tokens=(1000, 3000),
        ttft_ms=((1000, 0.2), (1500, 0.3), (2000, 0.3), (3000, 0.2)),
        cap_share=(0.12, 0.4),
        hours=(4, 6, 8, 12),
        start_within=(1, 4),
        voucher_rate=0.4,
    ),
    InferenceWorkload(
        name="rag",
        buyer="labs",
        per_day=75,
        hourly=(4, 4, 4, 4, 4, 4, 4, 8, 12, 14, 14, 13, 12, 13, 14, 14, 13, 11, 9, 8, 7, 6, 5, 4),
        llms=(
            ("qwen2-5-7b-instruct", 0.25),
            ("deepseek-r1-distill-qwen-7b", 0.15),
            ("qwen2-5-32b-instruct", 0.15),
            ("deepseek-r1-distill-qwen-32b", 0.15),
            ("qwen3-30b-a3b", 0.1),
            ("glm-4-9b-chat", 0.1),
            ("qwen2-5-72b-instruct", 0.1),
        ),
        tokens_per_second=((2000, 0.25), (4000, 0.35), (8000, 0.3), (16000, 0.1)),
        prompt_tokens=(4000, 12000),
        output_tokens=(200, 600),
        reasoning_output_tokens=(600, 1500),
        ttft_ms=((2000, 0.3), (3000, 0.4), (5000, 0.3)),
        cap_share=(0.1, 0.35),
        hours=(6, 12, 24),
        start_within=(2, 6),
        voucher_rate=0.4,
    ),
)


@dataclass(frozen=True)
class SubmitInference:
    """One request in the inference form (``services.request_submit_inference``'s terms), and the
    buyer's first-choice GPU model, which the variants that restrict to it pass as the allow-list."""

    buyer: str
    origin: str
    workload: str
    llm_model: str
    output_tokens_per_second: Decimal
    prompt_tokens: int
    output_tokens: int
    ttft_p95_ms: Decimal
    max_price_per_million_tokens: Decimal
    duration_hours: int
    start_within_hours: int
    first_choice: str
    program: str | None


def api_cost_per_million_output(llm_model: str, prompt_tokens: int, output_tokens: int) -> Decimal:
    """What the model's pay-per-token API charges per million *output* tokens of requests of these
    lengths: (input price × prompt + output price × output) ÷ output (:data:`API_PRICES`)."""
    input_price, output_price = API_PRICES[llm_model]
    return (input_price * prompt_tokens + output_price * output_tokens) / output_tokens


def best_ttft_ms(llm: LlmSpec, gpu: GpuSpec, prompt_tokens: int, output_tokens: int, rtt_ms: float) -> float | None:
    """The least TTFT (RTT + queueing margin + prefill) any replica of ``gpu`` at 1/2/4/8 GPUs and
    the LLM's precisions reaches ``rtt_ms`` away, as the quote computes it; None: it fits nowhere."""
    best = None
    for precision in llm.precisions:
        for size in GPUS_PER_REPLICA:
            modelled = throughput(llm, gpu, size, precision, prompt_tokens=prompt_tokens, output_tokens=output_tokens)
            if modelled.fits:
                ttft = rtt_ms + QUEUEING_MARGIN_MS + modelled.prefill_ms
                best = ttft if best is None else min(best, ttft)
    return best


def gpu_ranking(origin: str, providers, rtt_ms: dict[tuple[str, str], float], order: list[str]) -> list[str]:
    """The GPU models the providers list, nearest first from ``origin`` (the RTT to the nearest
    region listing each), ties in ``order`` (the buyer's own taste, drawn once per buyer)."""
    nearest: dict[str, float] = {}
    for _, region, models, _ in providers:
        for model in models:
            nearest[model] = min(nearest.get(model, math.inf), rtt_ms[origin, region])
    return sorted(nearest, key=lambda model: (nearest[model], order.index(model)))


def first_choice(
    ranking: list[str],
    llm: LlmSpec,
    gpus: dict[str, GpuSpec],
    prompt_tokens: int,
    output_tokens: int,
    ttft_ms: float,
    nearest_rtt: dict[str, float],
) -> tuple[str, float] | None:
    """The buyer's first choice: the first GPU model of its ``ranking`` on which ``llm`` fits and
    reaches ``ttft_ms`` from the nearest region listing it, with that TTFT. None: no GPU model does
    (the caller loosens the target)."""
    for model in ranking:
        best = best_ttft_ms(llm, gpus[model], prompt_tokens, output_tokens, nearest_rtt[model])
        if best is not None and best <= ttft_ms:
            return model, best
    return None


def reachable_ttft_ms(
    ranking: list[str],
    llm: LlmSpec,
    gpus: dict[str, GpuSpec],
    prompt_tokens: int,
    output_tokens: int,
    nearest_rtt: dict[str, float],
) -> float:
    """The least TTFT any listed GPU model reaches for these lengths, rounded up to 100 ms.

    Contract: the LLM fits some GPU model of ``ranking`` (every LLM of the mix fits H20s at 8)."""
    bests = [
        best
        for model in ranking
        if (best := best_ttft_ms(llm, gpus[model], prompt_tokens, output_tokens, nearest_rtt[model])) is not None
    ]
    return math.ceil(min(bests) / 100) * 100


class InferenceDemand:
    """Draws the inference requests of each step from its own generator (``draw``: a
    ``scenario._Draw``), for ``buyers`` (``scenario.Buyer``) whose GPU-model ranking is fixed once.

    ``llms`` and ``gpus`` are the throughput model's specs by code; ``providers`` the
    ``marketplace.demo.PROVIDERS`` rows (which GPU models each region lists)."""

    def __init__(self, draw, buyers, providers, rtt_ms, llms: dict[str, LlmSpec], gpus: dict[str, GpuSpec]):
        self.draw, self.buyers, self.llms, self.gpus = draw, buyers, llms, gpus
        listed = sorted({model for _, _, models, _ in providers for model in models})
        self.rankings: dict[str, list[str]] = {}
        self.nearest_rtt: dict[str, dict[str, float]] = {}
        for buyer in buyers:
            taste = [listed[int(i)] for i in draw.rng.permutation(len(listed))]
            self.rankings[buyer.name] = gpu_ranking(buyer.origin, providers, rtt_ms, taste)
            self.nearest_rtt[buyer.name] = {
                model: min(rtt_ms[buyer.origin, region] for _, region, models, _ in providers if model in models)
                for model in listed
            }

    def step(self, at: datetime, step_hours: float, scale: float, cities, hour: int) -> list[SubmitInference]:
        """The requests of the step starting ``at`` (CST ``hour``): Poisson arrivals at each
        workload's rate for that hour, from a city drawn by its share of demand (``cities``)."""
        events = []
        for workload in INFERENCE_WORKLOADS:
            rate = workload.per_day * scale * workload.hourly[hour] / (sum(workload.hourly) / 24) / 24
            for _ in range(int(self.draw.rng.poisson(rate * step_hours))):
                city = self.draw.pick(cities)
                buyer = next(b for b in self.buyers if b.origin == city and b.kind == workload.buyer)
                events.append(self.request(workload, buyer))
        return events

    def request(self, workload: InferenceWorkload, buyer) -> SubmitInference:
        """One request of ``workload`` from ``buyer``. A TTFT target no listed GPU model can reach
        for its lengths is raised to the best reachable, rounded up to 100 ms (a buyer who tried the
        quote would); the first choice is then the nearest-listed GPU model that reaches it."""
        draw = self.draw
        llm_code = draw.pick(workload.llms)
        llm = self.llms[llm_code]
        prompt = draw.between(*workload.prompt_tokens)
        output = draw.between(*(workload.reasoning_output_tokens if llm_code in REASONING else workload.output_tokens))
        prompt = min(prompt, llm.max_context - output)
        ttft = float(draw.pick(workload.ttft_ms))
        ranking, nearest = self.rankings[buyer.name], self.nearest_rtt[buyer.name]
        chosen = first_choice(ranking, llm, self.gpus, prompt, output, ttft, nearest)
        if chosen is None:
            ttft = reachable_ttft_ms(ranking, llm, self.gpus, prompt, output, nearest)
            chosen = first_choice(ranking, llm, self.gpus, prompt, output, ttft, nearest)
        if chosen is None:  # cannot happen: reachable_ttft_ms is what some GPU model reaches
            raise RuntimeError(f"no GPU model serves {llm_code} at {ttft:.0f} ms")
        share = Decimal(str(round(draw.uniform(*workload.cap_share), 4)))
        wants_voucher = bool(buyer.programs) and draw.chance(workload.voucher_rate)
        return SubmitInference(
            buyer=buyer.name,
            origin=buyer.origin,
            workload=workload.name,
            llm_model=llm_code,
            output_tokens_per_second=Decimal(draw.pick(workload.tokens_per_second)),
            prompt_tokens=prompt,
            output_tokens=output,
            ttft_p95_ms=Decimal(int(ttft)),
            max_price_per_million_tokens=to_fen_down(api_cost_per_million_output(llm_code, prompt, output) * share),
            duration_hours=draw.one_of(workload.hours),
            start_within_hours=draw.between(*workload.start_within),
            first_choice=chosen[0],
            program=draw.one_of(buyer.programs) if wants_voucher else None,
        )
