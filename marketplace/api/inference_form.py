"""The inference form of demand (docs/inference.md): an LLM at a throughput under a TTFT target,
instead of a GPU count. One serializer for its fields, which ``POST /quotes/`` and ``POST
/requests/`` both take, and one rule for telling the two forms apart."""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from marketplace import bounds
from marketplace.api.fields import AwareTime, DecimalText, IntegerNumber, TextField, gpu_model_field, region_field
from marketplace.api.inputs import DOMAIN_RULE, validated_body
from marketplace.models import LlmModel
from matching.inference import PRECISIONS

#: The field that makes a body the inference form.
INFERENCE_FORM_FIELD = "llm_model"


class InferenceQuoteIn(serializers.Serializer):
    """The inference form: an LLM at a throughput under a TTFT target, instead of a GPU count."""

    llm_model = serializers.SlugRelatedField(
        slug_field="code",
        queryset=LlmModel.objects.all(),
        help_text=f"A code of GET /llm-models/. {DOMAIN_RULE} a model that fits no GPU model on one node is a "
        "400 naming this field.",
    )
    output_tokens_per_second = DecimalText(
        **bounds.TOKENS_PER_SECOND_ASKED.field_kwargs(), help_text="Output tokens/s to serve, over all replicas."
    )
    prompt_tokens = IntegerNumber(
        **bounds.PROMPT_TOKENS.field_kwargs(),
        help_text=f"A typical prompt's length. {DOMAIN_RULE} prompt + output tokens over the model's context is a "
        "400 naming this field.",
    )
    output_tokens = IntegerNumber(**bounds.OUTPUT_TOKENS.field_kwargs(), help_text="A typical answer's length.")
    ttft_p95_ms = DecimalText(
        **bounds.TTFT_MS.field_kwargs(),
        help_text=f"Time to first token at the 95th percentile, ms, as the buyer's users see it. {DOMAIN_RULE} one "
        "below the best any placement reaches from the origin is a 400 naming this field, with that best.",
    )
    origin = region_field()
    max_price_per_million_tokens = DecimalText(
        **bounds.PRICE_PER_MILLION_TOKENS.field_kwargs(),
        help_text="The most the buyer pays, CNY (subsidy deducted), per million output tokens of the capacity placed.",
    )
    duration_hours = IntegerNumber(**bounds.DURATION_HOURS.field_kwargs())
    gpu_models = gpu_model_field(
        many=True, required=False, allow_empty=False, help_text="Only these GPU models (absent: every one)."
    )
    precision = serializers.ChoiceField(
        choices=list(PRECISIONS),
        required=False,
        help_text=f"Only this precision (absent: every one the model is served at). {DOMAIN_RULE} one the model "
        "is not served at is a 400 naming this field.",
    )
    start_by = AwareTime(window=bounds.REQUEST_START, required=False)
    voucher_code = TextField(
        **bounds.VOUCHER_CODE.field_kwargs(),
        required=False,
        allow_blank=True,
        help_text=f"A voucher the buyer claimed. {DOMAIN_RULE} a code that is not one of the buyer's usable "
        "vouchers is a 400 naming it.",
    )


def is_inference_form(data) -> bool:
    """Whether a body is in the inference form: an object naming ``llm_model``."""
    return isinstance(data, dict) and INFERENCE_FORM_FIELD in data


def inference_form_body(serializer_class, gpu_form, request) -> dict:
    """The body of ``request`` in the inference form, through ``serializer_class``. A field only
    the GPU form (``gpu_form``) takes is a 400 naming it: a body gives one form, never both."""
    given = request.data if isinstance(request.data, dict) else {}
    both = sorted((set(gpu_form().fields) - set(serializer_class().fields)) & set(given))
    if both:
        raise ValidationError({name: [_("The inference form (llm_model) does not take this field.")] for name in both})
    return validated_body(serializer_class, request)
