"""The throughput model (matching/inference.py): hand-checked fits, the ITL-bounded batch, measured
beats modelled, and the calibration errors docs/inference.md reports, recomputed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from marketplace.services.reference import reference_read
from matching import inference
from matching.inference import GpuSpec, LlmSpec, MeasuredPoint, profile_for, throughput

DOCS = Path(__file__).resolve().parents[2] / "docs" / "inference.md"


def _catalogue() -> tuple[dict[str, LlmSpec], dict[str, GpuSpec]]:
    data = reference_read()
    llms = {
        row["code"]: LlmSpec(
            row["code"],
            row["params_b"],
            row["active_params_b"],
            row["layers"],
            row["kv_heads"],
            row["head_dim"],
            row["max_context"],
            tuple(row["precisions"]),
        )
        for row in data["llm_models"]
    }
    gpus = {
        row["code"]: GpuSpec(
            row["code"],
            row["vram_gb"],
            row["memory_bandwidth_gbps"],
            row["bf16_tflops"],
            row["fp8_tflops"],
            row["interconnect"],
        )
        for row in data["gpu_models"]
    }
    return llms, gpus


LLMS, GPUS = _catalogue()


def test_kv_cache_and_weights_are_the_config_arithmetic():
    qwen7 = LLMS["qwen2-5-7b-instruct"]
    # 2 × 28 layers × 4 KV heads × 128 × 2 bytes = 57,344 bytes a token
    assert inference.kv_bytes_per_token(qwen7, "BF16") == 57_344
    assert inference.weights_bytes(qwen7, "BF16") == pytest.approx(15.22e9)
    # MLA: one 576-wide latent per layer, FP8: 61 × 576 bytes
    assert inference.kv_bytes_per_token(LLMS["deepseek-r1"], "FP8") == 61 * 576


def test_a_7b_at_bf16_fits_one_rtx4090_but_a_32b_does_not():
    small = throughput(
        LLMS["deepseek-r1-distill-qwen-7b"], GPUS["rtx4090"], 1, "BF16", prompt_tokens=1000, output_tokens=500
    )
    assert small.fits
    assert small.batch >= 1
    assert small.tokens_per_second > 0
    # 15.2 GB of weights + 57 KB × 1,500 tokens a sequence in 21.6 GB usable: (21.6 − 15.24) GB ÷ 86 MB = 73
    assert small.batch == 73
    big = throughput(
        LLMS["deepseek-r1-distill-qwen-32b"], GPUS["rtx4090"], 1, "BF16", prompt_tokens=1000, output_tokens=500
    )
    assert not big.fits
    assert big.reason == "32.8B at BF16 does not fit 24 GB on one node of 1"


def test_671b_at_fp8_fits_8_h20_but_not_8_l40s():
    r1 = LLMS["deepseek-r1"]
    on_h20 = throughput(r1, GPUS["h20"], 8, "FP8", prompt_tokens=2000, output_tokens=1000)
    assert on_h20.fits, on_h20.reason  # 671 GB in 8 × 96 × 0.9 = 691 GB
    on_l40s = throughput(r1, GPUS["l40s"], 8, "FP8", prompt_tokens=2000, output_tokens=1000)
    assert not on_l40s.fits
    assert on_l40s.reason == "671B at FP8 does not fit 48 GB on one node of 8"


def test_a_precision_the_model_is_not_served_at_is_refused_with_its_reason():
    result = throughput(LLMS["glm-4-9b-chat"], GPUS["h100"], 1, "INT4-AWQ", prompt_tokens=100, output_tokens=100)
    assert not result.fits
    assert "not served at INT4-AWQ" in result.reason


def test_tokens_per_second_grows_with_the_batch_until_the_itl_target():
    llm, gpu = LLMS["qwen2-5-32b-instruct"], GPUS["h100"]
    rates = [
        throughput(llm, gpu, 2, "BF16", prompt_tokens=1000, output_tokens=500, batch=batch).tokens_per_second
        for batch in (1, 2, 4, 8, 16, 32)
    ]
    assert rates == sorted(rates)
    assert rates[-1] > 10 * rates[0]
    chosen = throughput(llm, gpu, 2, "BF16", prompt_tokens=1000, output_tokens=500, itl_target_ms=50)
    assert chosen.step_ms <= 50
    more = throughput(llm, gpu, 2, "BF16", prompt_tokens=1000, output_tokens=500, batch=chosen.batch + 1)
    memory_batch = int(
        (inference.usable_bytes(gpu, 2) - inference.weights_bytes(llm, "BF16"))
        // (inference.kv_bytes_per_token(llm, "BF16") * 1500)
    )
    assert more.step_ms > 50 or chosen.batch == memory_batch  # the ITL or the memory stopped it
    tighter = throughput(llm, gpu, 2, "BF16", prompt_tokens=1000, output_tokens=500, itl_target_ms=30)
    assert tighter.batch < chosen.batch
    assert tighter.tokens_per_second < chosen.tokens_per_second


def test_an_itl_target_no_batch_meets_is_a_reason():
    result = throughput(
        LLMS["qwen2-5-72b-instruct"], GPUS["l40s"], 4, "BF16", prompt_tokens=100, output_tokens=100, itl_target_ms=5
    )
    assert not result.fits
    assert "over the 5 ms ITL target" in result.reason


def test_prefill_grows_with_the_prompt_and_is_compute_bound_when_long():
    llm, gpu = LLMS["deepseek-r1-distill-qwen-32b"], GPUS["h20"]
    short = inference.prefill_seconds(llm, gpu, 1, "BF16", 100)
    long = inference.prefill_seconds(llm, gpu, 1, "BF16", 4000)
    # 2 × 32.8e9 × 4,000 FLOPs at 148 TFLOPS × 0.30 = 5.91 s
    assert long == pytest.approx(2 * 32.8e9 * 4000 / (148e12 * inference.PREFILL_EFFICIENCY))
    assert short < long


def test_measured_beats_modelled_and_says_so():
    llm, gpu = LLMS["deepseek-r1-distill-qwen-32b"], GPUS["h20"]
    at = datetime(2026, 11, 1, tzinfo=UTC)
    point = MeasuredPoint(llm.code, gpu.code, "FP8", 1, 2000, 32, 900.0, 800.0, at)
    measured = profile_for(llm, gpu, 1, "FP8", prompt_tokens=1500, output_tokens=500, measured=[point])
    assert (measured.source, measured.tokens_per_second, measured.ttft_ms) == ("measured", 900.0, 800.0)
    # a shorter prompt than asked, or another GPU count, does not apply: modelled
    for asked_prompt, gpus in ((3000, 1), (1500, 2)):
        modelled = profile_for(llm, gpu, gpus, "FP8", prompt_tokens=asked_prompt, output_tokens=500, measured=[point])
        assert modelled.source == "modelled"
        assert modelled.fits
    newer = MeasuredPoint(llm.code, gpu.code, "FP8", 1, 2000, 32, 950.0, 700.0, datetime(2026, 11, 20, tzinfo=UTC))
    assert (
        profile_for(llm, gpu, 1, "FP8", prompt_tokens=1500, output_tokens=500, measured=[point, newer]).ttft_ms == 700
    )


def test_the_calibration_specs_are_the_reference_datas():
    for spec in (inference.H100, inference.H20):
        assert spec == GPUS[spec.code]
    assert inference.H800.memory_bandwidth_gbps == GPUS["h800"].memory_bandwidth_gbps
    ds = LLMS["deepseek-v3"]
    assert (ds.params_b, ds.active_params_b, ds.layers, ds.kv_heads, ds.head_dim) == (671, 37, 61, 1, 288)


def test_calibration_errors_are_within_the_documented_bound_and_the_docs_show_them():
    assert len(inference.CALIBRATION) >= 5
    docs = DOCS.read_text()
    assert f"{inference.CALIBRATION_ERROR_BOUND_PERCENT:g} %" in docs
    for point in inference.CALIBRATION:
        error = inference.calibration_error_percent(point)
        assert abs(error) <= inference.CALIBRATION_ERROR_BOUND_PERCENT, (point.name, error)
        row = next(line for line in docs.splitlines() if line.startswith(f"| {point.name} |"))
        modelled = f"{inference.calibration_modelled(point):,.0f}"
        assert row.endswith(f"| {modelled} | {error:+.1f} % |"), (row, modelled, error)
