"""A test builder for inference requests: the rows a submission writes, without the submission
service (``services.requests.request_submit_inference`` is built apart): a ``BuyerRequest`` of kind
``inference`` carrying the GPU-form fields of its first-choice alternative, and its
``RequestInference`` terms."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction

from marketplace.models import BuyerRequest, GpuModel, LlmModel, Organisation, Region, RequestInference
from marketplace.selectors.engine import inference_terms
from marketplace.selectors.market import gpu_spec
from marketplace.services.triggers import matching_round_enqueue_on_commit
from matching.inference_quote import alternatives_of


@transaction.atomic
def inference_request(
    *,
    buyer: Organisation,
    now: datetime,
    llm_model: str = "deepseek-r1-distill-qwen-32b",
    origin: str = "shanghai",
    output_tokens_per_second: str = "2000",
    prompt_tokens: int = 1000,
    output_tokens: int = 300,
    ttft_p95_ms: str = "1500",
    max_price_per_million_tokens: str = "40.00",
    duration_hours: int = 24,
    gpu_models: tuple[str, ...] = (),
    precision: str = "",
    first_choice: str = "h20",
    start_by: datetime | None = None,
    enqueue: bool = False,
) -> BuyerRequest:
    """Write an open inference request as a submission would; its row's GPU-form fields are those
    of the modelled alternative on ``first_choice`` with the fewest GPUs per replica (then the
    most tokens/s) that can serve it. ``enqueue``: ask for a round of its GPU model on commit, as
    the submission does."""
    request = BuyerRequest(
        buyer=buyer,
        kind=BuyerRequest.Kind.INFERENCE,
        origin=Region.objects.get(code=origin),
        latency_class="batch",
        duration_hours=duration_hours,
        start_by=start_by or now + timedelta(hours=6),
        submitted_at=now,
        gpu_model=GpuModel.objects.get(code=first_choice),
    )
    terms = RequestInference(
        llm_model=LlmModel.objects.get(code=llm_model),
        output_tokens_per_second=Decimal(output_tokens_per_second),
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        ttft_p95_ms=Decimal(ttft_p95_ms),
        max_price_per_million_tokens=Decimal(max_price_per_million_tokens),
        precision=precision,
    )
    request.inference = terms
    spec = gpu_spec(request.gpu_model)
    assert spec is not None, f"{first_choice} has no speed figures"
    usable = [
        a
        for a in alternatives_of(inference_terms(request, terms.output_tokens_per_second), [spec], [], {})
        if a.fits and not a.blocked
    ]
    assert usable, f"{llm_model} cannot be served on {first_choice}"
    first = min(usable, key=lambda a: (a.gpus_per_replica, -a.tokens_per_second_per_replica))
    request.gpus_per_replica = first.gpus_per_replica
    request.replicas = first.replicas_needed
    request.max_price_per_gpu_hour = first.max_price_per_gpu_hour
    request.save()
    terms.request = request
    terms.save()
    if gpu_models:
        terms.gpu_models.set(GpuModel.objects.filter(code__in=gpu_models))
    if enqueue:
        matching_round_enqueue_on_commit(gpu_model_code=first_choice)
    return request


#: A valid inference-form body (the quote's and the request's): DeepSeek-R1-Distill-Qwen-32B from
#: Shanghai at 2,000 tokens/s, TTFT 1.5 s, 20 CNY per million tokens, FP8.
INFERENCE_BODY = {
    "llm_model": "deepseek-r1-distill-qwen-32b",
    "output_tokens_per_second": "2000",
    "prompt_tokens": 2000,
    "output_tokens": 500,
    "ttft_p95_ms": "1500",
    "origin": "shanghai",
    "max_price_per_million_tokens": "20",
    "duration_hours": 24,
    "precision": "FP8",
}


def inference_body(**overrides) -> dict:
    """:data:`INFERENCE_BODY` with ``overrides``."""
    return {**INFERENCE_BODY, **overrides}
