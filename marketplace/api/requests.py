"""Buyer requests: submit demand, read it, cancel it."""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import Http404
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import bounds, selectors, services
from marketplace.api.fields import (
    LATENCY_CLASSES,
    AwareTime,
    DecimalText,
    IntegerNumber,
    NumberChoice,
    TextField,
    UtcTimeOut,
    gpu_model_field,
    region_field,
)
from marketplace.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from marketplace.api.inference_form import InferenceQuoteIn, inference_form_body, is_inference_form
from marketplace.api.inputs import validated_body, validated_query
from marketplace.api.permissions import IsBuyer, KeyScopes, api_key_of, buyer_of, scoped
from marketplace.api.schema import DOMAIN_RULE
from marketplace.demand import start_by_default
from marketplace.market_time import market_now
from marketplace.models import NODE_SIZE_CHOICES, BuyerRequest, RequestInference
from marketplace.money import MONEY, SETTLED_AMOUNT

#: A request's latency bound comes from one of two fields: a rule between them, which a schema cannot state.
ONE_LATENCY_BOUND = f"The RTT bound to origin, by class or in ms. {DOMAIN_RULE} giving both is a 400 naming max_rtt_ms."


#: The interruptible tier, in words (the rule: ``matching.interruptible``).
INTERRUPTIBLE_HELP = (
    "true: placed only after all on-demand demand, on listings offering the interruptible tier at a floor "
    "within max_price_per_gpu_hour (the bid); pays that floor; may be pre-empted by on-demand demand "
    "after PREEMPT_NOTICE_SECONDS of notice, billed for the time it ran, and placed again later. "
    "Default false (on-demand)."
)


def workload_field() -> TextField:
    return TextField(
        **bounds.WORKLOAD.field_kwargs(),
        required=False,
        allow_blank=True,
        help_text="What you will run (model, image, serving stack), for the provider's agent.",
    )


class RequestIn(serializers.Serializer):
    gpu_model = gpu_model_field()
    gpus_per_replica = NumberChoice(choices=NODE_SIZE_CHOICES)
    replicas = IntegerNumber(
        **bounds.REPLICAS.field_kwargs(),
        help_text=f"{DOMAIN_RULE} more than {bounds.GPUS_PER_REQUEST.maximum} GPUs in all (replicas × "
        "gpus_per_replica) is a 400 naming this field.",
    )
    origin = region_field()
    latency_class = serializers.ChoiceField(choices=LATENCY_CLASSES, required=False, help_text=ONE_LATENCY_BOUND)
    max_rtt_ms = DecimalText(**bounds.MAX_RTT_MS.field_kwargs(), required=False, help_text=ONE_LATENCY_BOUND)
    latency_weight = DecimalText(**bounds.LATENCY_WEIGHT.field_kwargs(), required=False)
    max_price_per_gpu_hour = DecimalText(**bounds.PRICE.field_kwargs())
    min_reliability = DecimalText(
        **bounds.MIN_RELIABILITY.field_kwargs(),
        required=False,
        allow_null=True,
        help_text="The least 30-day reliability (0–1) of a listing this request may use; absent or null: no "
        "bound. Any bound, even 0, rules out listings with too little history to have a score.",
    )
    duration_hours = IntegerNumber(**bounds.DURATION_HOURS.field_kwargs())
    start_by = AwareTime(window=bounds.REQUEST_START, required=False)
    interruptible = serializers.BooleanField(required=False, default=False, help_text=INTERRUPTIBLE_HELP)
    voucher_code = TextField(
        **bounds.VOUCHER_CODE.field_kwargs(),
        required=False,
        allow_blank=True,
        help_text=f"A voucher the buyer claimed. {DOMAIN_RULE} a code that is not one of the buyer's usable "
        "vouchers is a 400 naming it.",
    )
    workload = workload_field()

    def validate(self, attrs):
        """Default ``start_by``: ``start_by_default``."""
        attrs["start_by"] = start_by_default(attrs.get("start_by"), now=market_now())
        return attrs


#: What a submission in the inference form refuses beyond the quote: its row takes the GPU-form
#: terms of its first choice (``services.request_submit_inference``), within the GPU form's bounds.
SUBMIT_RULES = {
    "output_tokens_per_second": f"{DOMAIN_RULE} a target whose first-choice placement needs more than "
    f"{bounds.GPUS_PER_REQUEST.maximum} GPUs is a 400 naming this field.",
    "max_price_per_million_tokens": f"{DOMAIN_RULE} a cap that makes less than {bounds.PRICE.minimum} CNY per "
    "GPU-hour of the first-choice placement is a 400 naming this field.",
}


class InferenceRequestIn(InferenceQuoteIn):
    """The inference form of a request: the inference quote's fields, and what the buyer will run."""

    workload = workload_field()

    def get_fields(self):
        fields = super().get_fields()
        for name, rule in SUBMIT_RULES.items():
            fields[name].help_text = f"{fields[name].help_text} {rule}"
        return fields


class RequestInferenceOut(serializers.ModelSerializer):
    """An inference request's terms, and the output tokens/s its matches make."""

    llm_model = serializers.CharField(source="llm_model.code", help_text="A code of GET /llm-models/.")
    output_tokens_per_second = serializers.DecimalField(
        max_digits=10, decimal_places=1, help_text="Output tokens/s asked, over all replicas."
    )
    ttft_p95_ms = serializers.DecimalField(
        max_digits=8, decimal_places=1, help_text="The TTFT target at the 95th percentile, ms."
    )
    max_price_per_million_tokens = serializers.DecimalField(
        **MONEY, help_text="The most the buyer pays, CNY (subsidy deducted), per million output tokens."
    )
    precision = serializers.CharField(help_text='The precision asked ("": any the model is served at).')
    gpu_models = serializers.SlugRelatedField(
        slug_field="code", many=True, read_only=True, help_text="The allow-list of GPU models (empty: every one)."
    )
    tokens_per_second_placed = serializers.DecimalField(
        max_digits=12,
        decimal_places=1,
        help_text="Output tokens/s its matches make (Σ their tokens_per_second); at most one replica over the "
        "tokens/s asked.",
    )

    class Meta:
        model = RequestInference
        fields = [
            "llm_model",
            "output_tokens_per_second",
            "prompt_tokens",
            "output_tokens",
            "ttft_p95_ms",
            "max_price_per_million_tokens",
            "precision",
            "gpu_models",
            "tokens_per_second_placed",
        ]


#: How a held request's moment is written: as every other time, in UTC.
_TIME_OUT = UtcTimeOut(default_timezone=UTC)


class RequestOut(serializers.ModelSerializer):
    gpu_model = serializers.CharField(
        source="gpu_model.code",
        help_text="The GPU model asked; for an inference request its first choice at submission (its matches "
        "may be of any GPU model that serves it).",
    )
    kind = serializers.ChoiceField(
        choices=BuyerRequest.Kind.values,
        help_text="gpus: the GPU form (a GPU count of one model); inference: an LLM at a throughput under a "
        "TTFT target (see inference).",
    )
    inference = serializers.SerializerMethodField(
        help_text="The inference form's terms and tokens/s placed; null for a GPU-form request."
    )

    @extend_schema_field(RequestInferenceOut(allow_null=True))
    def get_inference(self, request: BuyerRequest) -> dict | None:
        # getattr: a row without its terms (none should exist) reads as null, never a 500.
        terms = getattr(request, "inference", None) if request.kind == BuyerRequest.Kind.INFERENCE else None
        return None if terms is None else RequestInferenceOut(terms).data

    origin = serializers.CharField(source="origin.code")
    voucher_program = serializers.CharField(source="voucher.program.name", allow_null=True, default=None)
    left_out_reason = serializers.CharField(
        help_text='Why the latest matching round left this request out ("" when it did not): a rule it breaks.'
    )
    held_until = serializers.SerializerMethodField(
        help_text="With the look-ahead on, a request whose start_by is far off may wait for its call "
        "(requests that can wait are placed together): while it waits, when it is offered to the "
        "rounds again (market time); null otherwise."
    )

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_held_until(self, request: BuyerRequest) -> str | None:
        until = selectors.held_until_of(request, now=self._market_now)
        return None if until is None else _TIME_OUT.to_representation(until)

    def _market_now(self) -> datetime:
        """The market's time, read once per response (one query; the context is the whole list's)."""
        if "market_now" not in self.context:
            self.context["market_now"] = market_now()
        return self.context["market_now"]

    spend_committed = serializers.DecimalField(
        **SETTLED_AMOUNT,
        read_only=True,
        help_text="CNY it counts against this month's spend caps: its worst case while it may still be "
        "matched, then its charges and its running matches' worst case.",
    )

    class Meta:
        model = BuyerRequest
        fields = [
            "id",
            "gpu_model",
            "gpus_per_replica",
            "replicas",
            "origin",
            "latency_class",
            "max_rtt_ms",
            "latency_weight",
            "max_price_per_gpu_hour",
            "min_reliability",
            "duration_hours",
            "start_by",
            "interruptible",
            "status",
            "matched_replicas",
            "priority",
            "voucher_program",
            "created_at",
            "left_out_reason",
            "spend_committed",
            "workload",
            "kind",
            "inference",
            "held_until",
        ]


def inference_submit_terms(terms: dict) -> dict:
    """Validated inference-form fields as ``services.request_submit_inference`` takes them (codes)."""
    codes = {"llm_model": terms["llm_model"].code, "origin": terms["origin"].code}
    if "gpu_models" in terms:
        codes["gpu_models"] = [row.code for row in terms["gpu_models"]]
    return {**terms, **codes}


class RequestQuery(serializers.Serializer):
    """Filters of the request list."""

    status = serializers.ChoiceField(
        choices=BuyerRequest.Status.values, required=False, help_text="Only requests in this status."
    )


class RequestListView(generics.GenericAPIView):
    """A buyer's requests (staff: all); a buyer submits one (POST)."""

    serializer_class = RequestOut

    def get_permissions(self):
        return [KeyScopes(), IsBuyer() if self.request.method == "POST" else IsAuthenticated()]

    @extend_schema(parameters=[RequestQuery], responses=RequestOut(many=True))
    def get(self, request):
        status_wanted = validated_query(RequestQuery, request).get("status")
        page = self.paginate_queryset(selectors.request_list_for(request.user, status=status_wanted))
        return self.get_paginated_response(RequestOut(page, many=True).data)

    @extend_schema(
        request=PolymorphicProxySerializer(
            "RequestSubmitIn", [RequestIn, InferenceRequestIn], resource_type_field_name=None
        ),
        responses={201: RequestOut},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    @idempotent
    def post(self, request):
        if is_inference_form(request.data):
            buyer_request = services.request_submit_inference(
                buyer=buyer_of(request),
                api_key=api_key_of(request),
                **inference_submit_terms(inference_form_body(InferenceRequestIn, RequestIn, request)),
            )
        else:
            buyer_request = services.request_submit(
                buyer=buyer_of(request), api_key=api_key_of(request), **validated_body(RequestIn, request)
            )
        return Response(RequestOut(buyer_request).data, status=status.HTTP_201_CREATED)


class RequestDetailView(APIView):
    permission_classes = scoped(IsAuthenticated)

    @extend_schema(responses=RequestOut)
    def get(self, request, request_id: int):
        buyer_request = selectors.request_list_for(request.user).filter(pk=request_id).first()
        if buyer_request is None:
            raise Http404
        return Response(RequestOut(buyer_request).data)


class RequestCancelView(APIView):
    permission_classes = scoped(IsBuyer)

    @extend_schema(request=None, responses=RequestOut)
    def post(self, request, request_id: int):
        buyer_request = services.request_cancel(request_id=request_id, buyer=buyer_of(request))
        return Response(RequestOut(buyer_request).data)
