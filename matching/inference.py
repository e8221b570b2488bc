"""The throughput model: what one replica of (LLM, GPU model, GPUs per replica, precision) serves.

Pure Python, no Django (import-linter checks it), deterministic. docs/inference.md states the
model in plain words, its efficiency factors and their calibration against published benchmarks
(:data:`CALIBRATION`, recomputed by tests/matching/test_inference.py).

The model is a roofline:

* **Memory fit.** Weights take ``params × bytes per parameter``; the KV cache takes
  ``2 × layers × kv_heads × head_dim × bytes per element`` per token. A replica's usable memory is
  ``GPUs × VRAM × (1 − MEMORY_RESERVE_FRACTION)``; the weights and the KV cache of at least one
  sequence of ``prompt + output`` tokens must fit in it.
* **Decode step.** One step produces one token for each sequence in the batch and takes
  ``max(memory time, compute time) × (1 + communication overhead)``: memory time reads the
  weights a step touches (a MoE step touches ``min(all weights, active weights × batch)``) and
  each sequence's KV cache at its mean context, at ``bandwidth × MEMORY_EFFICIENCY``; compute time
  is ``2 × active params × batch`` FLOPs at ``TFLOPS × DECODE_COMPUTE_EFFICIENCY``.
* **Batch.** The largest batch whose KV cache fits and whose step stays within the
  inter-token-latency (ITL) target. Output tokens/s per replica = batch ÷ step time.
* **Prefill.** ``2 × active params × prompt tokens`` FLOPs at ``TFLOPS × PREFILL_EFFICIENCY``, never
  faster than reading the weights once; times the same communication overhead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

GB = 1e9

#: Bytes per weight by precision. INT4-AWQ: 4 bits plus one FP16 scale and zero per 128-weight
#: group (≈ 4.25 bits).
BYTES_PER_PARAM: dict[str, float] = {"BF16": 2.0, "FP16": 2.0, "FP8": 1.0, "INT8": 1.0, "INT4-AWQ": 0.53125}
#: Bytes per KV-cache element by precision: FP8 serving keeps an FP8 KV cache (vLLM/SGLang
#: ``kv_cache_dtype=fp8``, TensorRT-LLM FP8 KV); the others keep it in 16 bits.
KV_BYTES: dict[str, float] = {"BF16": 2.0, "FP16": 2.0, "FP8": 1.0, "INT8": 2.0, "INT4-AWQ": 2.0}
PRECISIONS = tuple(BYTES_PER_PARAM)

#: Share of each GPU's memory kept for activations, CUDA graphs, the runtime and fragmentation
#: (vLLM's default ``gpu_memory_utilization`` is 0.9).
MEMORY_RESERVE_FRACTION = 0.10
#: Share of the memory bandwidth a decode step achieves (calibrated, docs/inference.md).
MEMORY_EFFICIENCY = 0.60
#: Share of the dense tensor TFLOPS a decode step achieves (calibrated).
DECODE_COMPUTE_EFFICIENCY = 0.25
#: Share of the dense tensor TFLOPS prefill achieves (calibrated).
PREFILL_EFFICIENCY = 0.30
#: Added to a step's time for the tensor-parallel all-reduces inside one node, by interconnect;
#: nothing on one GPU.
TP_OVERHEAD: dict[str, float] = {"nvlink": 0.05, "hccs": 0.10, "pcie": 0.25}
#: Added again when a replica spans nodes (more than 8 GPUs: only the calibration's expert-parallel
#: deployments do; the marketplace's replicas live on one node).
CROSS_NODE_OVERHEAD = 1.50
#: The default inter-token latency target: 20 tokens/s per user, what chat services aim at.
DEFAULT_ITL_TARGET_MS = 50.0
GPUS_PER_NODE = 8

Source = Literal["measured", "modelled"]


@dataclass(frozen=True)
class LlmSpec:
    """An open-weight model's shape (from its config.json). ``kv_heads × head_dim`` is the K (and
    the V) width one token caches per layer; an MLA model (DeepSeek-V3/R1) caches one latent of 576
    per layer, stated as 1 head of 288 so that ``2 × kv_heads × head_dim`` is its width."""

    code: str
    params_b: float
    active_params_b: float
    layers: int
    kv_heads: int
    head_dim: int
    max_context: int
    precisions: tuple[str, ...] = PRECISIONS


@dataclass(frozen=True)
class GpuSpec:
    """A GPU model's memory and speed: dense (no sparsity) tensor TFLOPS; ``fp8_tflops`` None where
    the GPU has no FP8 tensor cores (FP8 weights then run at the BF16 rate, dequantised)."""

    code: str
    vram_gb: float
    memory_bandwidth_gbps: float
    bf16_tflops: float
    fp8_tflops: float | None
    interconnect: str


@dataclass(frozen=True)
class Throughput:
    """What one replica serves. When ``fits`` is False, ``reason`` says why and the figures are 0."""

    fits: bool
    reason: str
    batch: int
    step_ms: float
    tokens_per_second: float
    prefill_ms: float
    weights_gb: float
    kv_bytes_per_token: float


@dataclass(frozen=True)
class MeasuredPoint:
    """A provider's measurement on one listing: output tokens/s of one replica at ``concurrency``
    sequences of ``prompt_tokens``, and its time to first token."""

    llm_model: str
    gpu_model: str
    precision: str
    gpus_per_replica: int
    prompt_tokens: int
    concurrency: int
    output_tokens_per_second: float
    ttft_ms: float
    measured_at: datetime


@dataclass(frozen=True)
class Profile:
    """Tokens/s and TTFT of one replica, and whether they were ``measured`` or ``modelled``."""

    source: Source
    tokens_per_second: float
    ttft_ms: float
    fits: bool
    reason: str


def weights_bytes(llm: LlmSpec, precision: str) -> float:
    return llm.params_b * 1e9 * BYTES_PER_PARAM[precision]


def kv_bytes_per_token(llm: LlmSpec, precision: str) -> float:
    """``2 (K and V) × layers × kv_heads × head_dim × bytes per element``."""
    return 2 * llm.layers * llm.kv_heads * llm.head_dim * KV_BYTES[precision]


def usable_bytes(gpu: GpuSpec, gpus: int) -> float:
    return gpus * gpu.vram_gb * GB * (1 - MEMORY_RESERVE_FRACTION)


def comm_overhead(gpu: GpuSpec, gpus: int) -> float:
    """The fraction added to a step for tensor-parallel communication (0 on one GPU)."""
    if gpus <= 1:
        return 0.0
    overhead = TP_OVERHEAD.get(gpu.interconnect, TP_OVERHEAD["pcie"])
    return overhead + (CROSS_NODE_OVERHEAD if gpus > GPUS_PER_NODE else 0.0)


def _tflops(gpu: GpuSpec, precision: str) -> float:
    if precision in ("FP8", "INT8") and gpu.fp8_tflops is not None:
        return gpu.fp8_tflops
    return gpu.bf16_tflops


def step_seconds(llm: LlmSpec, gpu: GpuSpec, gpus: int, precision: str, batch: int, mean_context: float) -> float:
    """One decode step of ``batch`` sequences at ``mean_context`` tokens each (the roofline)."""
    active = llm.active_params_b * 1e9
    read = min(weights_bytes(llm, precision), active * BYTES_PER_PARAM[precision] * batch)
    read += batch * kv_bytes_per_token(llm, precision) * mean_context
    memory = read / (gpus * gpu.memory_bandwidth_gbps * GB * MEMORY_EFFICIENCY)
    compute = 2 * active * batch / (gpus * _tflops(gpu, precision) * 1e12 * DECODE_COMPUTE_EFFICIENCY)
    return max(memory, compute) * (1 + comm_overhead(gpu, gpus))


def prefill_seconds(llm: LlmSpec, gpu: GpuSpec, gpus: int, precision: str, prompt_tokens: int) -> float:
    """Prefill of one prompt: its FLOPs at the prefill efficiency, at least one read of the
    weights it touches."""
    active = llm.active_params_b * 1e9
    compute = 2 * active * prompt_tokens / (gpus * _tflops(gpu, precision) * 1e12 * PREFILL_EFFICIENCY)
    read = min(weights_bytes(llm, precision), active * BYTES_PER_PARAM[precision] * prompt_tokens)
    memory = read / (gpus * gpu.memory_bandwidth_gbps * GB * MEMORY_EFFICIENCY)
    return max(compute, memory) * (1 + comm_overhead(gpu, gpus))


def _number(value: float) -> str:
    return f"{value:g}"


def fit_reason(llm: LlmSpec, gpu: GpuSpec, gpus: int, precision: str, context: int) -> str:
    """Why the weights and one ``context``-token sequence do not fit ("" when they do)."""
    if precision not in BYTES_PER_PARAM:
        return f"unknown precision {precision}"
    if precision not in llm.precisions:
        return f"{llm.code} is not served at {precision} (served at {', '.join(llm.precisions)})"
    if context > llm.max_context:
        return f"{context} tokens exceed {llm.code}'s context of {llm.max_context}"
    needed = weights_bytes(llm, precision) + kv_bytes_per_token(llm, precision) * context
    if needed > usable_bytes(gpu, gpus):
        return f"{_number(llm.params_b)}B at {precision} does not fit {_number(gpu.vram_gb)} GB on one node of {gpus}"
    return ""


def throughput(
    llm: LlmSpec,
    gpu: GpuSpec,
    gpus: int,
    precision: str,
    *,
    prompt_tokens: int,
    output_tokens: int,
    itl_target_ms: float = DEFAULT_ITL_TARGET_MS,
    batch: int | None = None,
) -> Throughput:
    """The modelled throughput of one replica of ``gpus`` GPUs serving ``llm`` at ``precision``.

    Contract: ``gpus``, ``prompt_tokens``, ``output_tokens`` ≥ 1 and ``itl_target_ms`` > 0. The
    batch is the largest whose KV cache (at ``prompt + output`` tokens each) fits beside the weights
    and whose decode step is within ``itl_target_ms`` (``batch`` fixes it instead, for benchmark
    points run at a stated batch). Not fitting, or not reaching the ITL target even at batch 1,
    answers ``fits=False`` with the reason.
    """
    if gpus < 1 or prompt_tokens < 1 or output_tokens < 1 or itl_target_ms <= 0:
        raise ValueError("gpus, prompt_tokens and output_tokens must be ≥ 1, itl_target_ms > 0")
    context = prompt_tokens + output_tokens
    mean_context = prompt_tokens + output_tokens / 2
    kv = kv_bytes_per_token(llm, precision) if precision in KV_BYTES else 0.0
    weights = weights_bytes(llm, precision) / GB if precision in BYTES_PER_PARAM else 0.0
    reason = fit_reason(llm, gpu, gpus, precision, context)
    if reason:
        return Throughput(False, reason, 0, 0.0, 0.0, 0.0, weights, kv)
    memory_batch = int((usable_bytes(gpu, gpus) - weights * GB) // (kv * context))
    if batch is None:
        if step_seconds(llm, gpu, gpus, precision, 1, mean_context) * 1000 > itl_target_ms:
            step = step_seconds(llm, gpu, gpus, precision, 1, mean_context) * 1000
            reason = f"a decode step takes {step:.0f} ms at batch 1, over the {itl_target_ms:g} ms ITL target"
            return Throughput(False, reason, 0, 0.0, 0.0, 0.0, weights, kv)
        low, high = 1, memory_batch  # step time grows with the batch: bisect for the last within target
        while low < high:
            middle = (low + high + 1) // 2
            if step_seconds(llm, gpu, gpus, precision, middle, mean_context) * 1000 <= itl_target_ms:
                low = middle
            else:
                high = middle - 1
        batch = low
    step = step_seconds(llm, gpu, gpus, precision, batch, mean_context)
    prefill = prefill_seconds(llm, gpu, gpus, precision, prompt_tokens)
    return Throughput(True, "", batch, step * 1000, batch / step, prefill * 1000, weights, kv)


def profile_for(
    llm: LlmSpec,
    gpu: GpuSpec,
    gpus: int,
    precision: str,
    *,
    prompt_tokens: int,
    output_tokens: int,
    measured: Iterable[MeasuredPoint] = (),
    itl_target_ms: float = DEFAULT_ITL_TARGET_MS,
) -> Profile:
    """Measured figures where a provider measured this setup, else modelled ones; ``source`` says which.

    A measurement applies when its LLM, GPU model, precision and GPUs per replica are these and its
    prompt is at least ``prompt_tokens`` long (a longer prompt is the harder case); among those the
    nearest prompt length wins, then the latest. Contract: as :func:`throughput`.
    """
    candidates = [
        point
        for point in measured
        if (point.llm_model, point.gpu_model, point.precision, point.gpus_per_replica)
        == (llm.code, gpu.code, precision, gpus)
        and point.prompt_tokens >= prompt_tokens
    ]
    if candidates:
        best = min(candidates, key=lambda p: (p.prompt_tokens, -p.measured_at.timestamp()))
        return Profile("measured", best.output_tokens_per_second, best.ttft_ms, True, "")
    modelled = throughput(
        llm, gpu, gpus, precision, prompt_tokens=prompt_tokens, output_tokens=output_tokens, itl_target_ms=itl_target_ms
    )
    return Profile("modelled", modelled.tokens_per_second, modelled.prefill_ms, modelled.fits, modelled.reason)


# --- Calibration -------------------------------------------------------------------------------
# The specs the published points ran on. GPUs and models in the reference data repeat its figures
# (a test checks they agree); H200 and Llama 2 appear only here.

H100 = GpuSpec("h100", 80, 3350, 989, 1979, "nvlink")
H800 = GpuSpec("h800", 80, 3350, 989, 1979, "nvlink")
H20 = GpuSpec("h20", 96, 4000, 148, 296, "nvlink")
H200 = GpuSpec("h200", 141, 4800, 989, 1979, "nvlink")
DEEPSEEK_V3 = LlmSpec("deepseek-v3", 671, 37, 61, 1, 288, 163840, ("FP8", "BF16"))
LLAMA2_70B = LlmSpec("llama-2-70b", 69, 69, 80, 8, 128, 4096)
LLAMA2_13B = LlmSpec("llama-2-13b", 13, 13, 40, 40, 128, 4096)


@dataclass(frozen=True)
class CalibrationPoint:
    """A published benchmark figure and the setup the model reproduces it with.

    ``figure`` is output tokens/s per node of 8 GPUs (per GPU × 8 where fewer were used).
    ``batch`` set: an offline run at that batch, all prompts prefilled then decoded, so
    tokens/s = batch × output ÷ (batch × prefill + output × step). ``batch`` None: a serving
    run at the largest batch within ``itl_target_ms``.
    """

    name: str
    source: str
    setup: str
    figure: float
    llm: LlmSpec
    gpu: GpuSpec
    gpus: int
    precision: str
    prompt_tokens: int
    output_tokens: int
    itl_target_ms: float = DEFAULT_ITL_TARGET_MS
    batch: int | None = None


CALIBRATION: tuple[CalibrationPoint, ...] = (
    CalibrationPoint(
        "DeepSeek-V3/R1 on H800 (DeepSeek's own service)",
        "https://github.com/deepseek-ai/open-infra-index/blob/main/202502OpenSourceWeek/"
        "day_6_one_more_thing_deepseekV3R1_inference_system_overview.md",
        "FP8, expert-parallel decode across nodes (modelled as 32-GPU replicas); 20–22 tokens/s per "
        "user (ITL ≈ 48 ms); prompt ≈ 2,000 tokens, output ≈ 600 (estimated from its 608B input / "
        "168B output tokens a day)",
        14_800,
        DEEPSEEK_V3,
        H800,
        32,
        "FP8",
        2000,
        600,
        itl_target_ms=48,
    ),
    CalibrationPoint(
        "DeepSeek-V3 on 96 H100 (SGLang, PD disaggregation + large EP)",
        "https://lmsys.org/blog/2025-05-05-large-scale-ep/",
        "FP8, 2,000-token prompts, decode nodes at ITL ≈ 100 ms (the post's stated limitation), "
        "modelled as 32-GPU replicas; output length 100 tokens (estimated)",
        22_300,
        DEEPSEEK_V3,
        H100,
        32,
        "FP8",
        2000,
        100,
        itl_target_ms=100,
    ),
    CalibrationPoint(
        "DeepSeek-R1 on H20-96G (SGLang with Ant Group)",
        "https://lmsys.org/blog/2025-09-26-sglang-ant-group",
        "FP8, 4,096-token prompts, EP-16 decode (modelled as 16-GPU replicas), ITL 50 ms "
        "(estimated SLA); output 1,000 tokens (estimated)",
        5_700,
        DEEPSEEK_V3,
        H20,
        16,
        "FP8",
        4096,
        1000,
        itl_target_ms=50,
    ),
    CalibrationPoint(
        "Llama 2 13B on one H200 (TensorRT-LLM, max throughput)",
        "https://github.com/NVIDIA/TensorRT-LLM/blob/release/0.5.0/docs/source/blogs/H200launch.md",
        "FP8, TP1, batch 1,024, 128 in / 128 out: 11,819 out tokens/s per GPU (× 8 per node)",
        11_819 * 8,
        LLAMA2_13B,
        H200,
        1,
        "FP8",
        128,
        128,
        batch=1024,
    ),
    CalibrationPoint(
        "Llama 2 70B on one H200 (TensorRT-LLM, max throughput)",
        "https://github.com/NVIDIA/TensorRT-LLM/blob/release/0.5.0/docs/source/blogs/H200launch.md",
        "FP8, TP1, batch 512, 128 in / 128 out: 3,014 out tokens/s per GPU (× 8 per node)",
        3_014 * 8,
        LLAMA2_70B,
        H200,
        1,
        "FP8",
        128,
        128,
        batch=512,
    ),
)
#: The largest calibration error the docs promise (absolute, % of the published figure).
CALIBRATION_ERROR_BOUND_PERCENT = 50.0


def calibration_modelled(point: CalibrationPoint) -> float:
    """The model's figure for ``point``, in its unit (output tokens/s per node of 8 GPUs)."""
    result = throughput(
        point.llm,
        point.gpu,
        point.gpus,
        point.precision,
        prompt_tokens=point.prompt_tokens,
        output_tokens=point.output_tokens,
        itl_target_ms=point.itl_target_ms,
        batch=point.batch,
    )
    if not result.fits:
        raise ValueError(f"{point.name}: {result.reason}")
    per_replica = result.tokens_per_second
    if point.batch is not None:  # offline: the batch's prefill comes before its decode
        prefill = point.batch * result.prefill_ms / 1000
        per_replica = point.batch * point.output_tokens / (prefill + point.output_tokens * result.step_ms / 1000)
    return per_replica * GPUS_PER_NODE / point.gpus


def calibration_error_percent(point: CalibrationPoint) -> float:
    """(modelled − published) ÷ published, in %."""
    return (calibration_modelled(point) - point.figure) / point.figure * 100
