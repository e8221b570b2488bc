"""Inference: the LLM catalogue anyone may read, and the throughput a provider measured on its
listing (``/listings/{id}/profiles/``), which beats the modelled figure (docs/inference.md)."""

from __future__ import annotations

from datetime import UTC

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from marketplace import bounds, selectors, services
from marketplace.api.fields import AwareTime, DecimalText, IntegerNumber, NumberChoice, UtcTimeOut
from marketplace.api.inputs import NoFilters, validated_body, validated_query
from marketplace.api.permissions import IsProvider, KeyScopes, provider_of, scoped
from marketplace.api.schema import DOMAIN_RULE
from marketplace.models import NODE_SIZE_CHOICES, LlmModel, MeasuredProfile
from matching.inference import PRECISIONS


class LlmModelOut(serializers.ModelSerializer):
    params_b = serializers.DecimalField(max_digits=7, decimal_places=2, help_text="Parameters, in billions.")
    active_params_b = serializers.DecimalField(
        max_digits=7, decimal_places=2, help_text="Parameters active per token (a MoE's share), in billions."
    )
    kv_heads = serializers.IntegerField(
        help_text="KV heads per layer; with head_dim, what one token caches per layer (2 × kv_heads × head_dim). "
        "DeepSeek's MLA latent of 576 is stated as 1 head of 288."
    )
    precisions = serializers.ListField(child=serializers.CharField(), help_text="Precisions it is served at.")
    source = serializers.URLField(help_text="Where the figures come from (its published config.json).")

    class Meta:
        model = LlmModel
        fields = [
            "code",
            "name",
            "params_b",
            "active_params_b",
            "layers",
            "kv_heads",
            "head_dim",
            "max_context",
            "precisions",
            "source",
        ]


class LlmModelListView(generics.ListAPIView):
    permission_classes = scoped(AllowAny)
    serializer_class = LlmModelOut

    def get_queryset(self):
        validated_query(NoFilters, self.request)
        return selectors.llm_model_list()


class MeasuredProfileIn(serializers.Serializer):
    llm_model = serializers.SlugRelatedField(slug_field="code", queryset=LlmModel.objects.all())
    precision = serializers.ChoiceField(
        choices=list(PRECISIONS), help_text=f"{DOMAIN_RULE} one the model is not served at is a 400 naming it."
    )
    gpus_per_replica = NumberChoice(
        choices=NODE_SIZE_CHOICES,
        help_text=f"{DOMAIN_RULE} more than the listing's GPUs per node is a 400 naming it (a replica is on one node).",
    )
    prompt_tokens = IntegerNumber(**bounds.PROMPT_TOKENS.field_kwargs())
    concurrency = IntegerNumber(**bounds.CONCURRENCY.field_kwargs())
    output_tokens_per_second = DecimalText(
        **bounds.OUTPUT_TOKENS_PER_SECOND.field_kwargs(), help_text="One replica's output tokens/s at this concurrency."
    )
    ttft_ms = DecimalText(**bounds.TTFT_MS.field_kwargs(), help_text="Time to first token at this prompt length.")
    measured_at = AwareTime(window=bounds.PROFILE_TIMES)


class MeasuredProfileOut(serializers.ModelSerializer):
    llm_model = serializers.CharField(source="llm_model.code")
    measured_at = UtcTimeOut(default_timezone=UTC)
    created_at = UtcTimeOut(default_timezone=UTC)

    class Meta:
        model = MeasuredProfile
        fields = [
            "id",
            "listing",
            "llm_model",
            "precision",
            "gpus_per_replica",
            "prompt_tokens",
            "concurrency",
            "output_tokens_per_second",
            "ttft_ms",
            "measured_at",
            "created_at",
        ]


class ListingProfilesView(generics.GenericAPIView):
    """A listing's measured profiles: only its provider reads or adds them (another provider's
    listing does not exist for the caller). Measured beats modelled wherever it applies."""

    serializer_class = MeasuredProfileOut

    def get_permissions(self):
        return [KeyScopes(), IsProvider()]

    @extend_schema(responses=MeasuredProfileOut(many=True))
    def get(self, request, listing_id: int):
        validated_query(NoFilters, request)
        profiles = selectors.measured_profiles_of(listing_id=listing_id, provider=provider_of(request))
        if profiles is None:
            raise Http404
        page = self.paginate_queryset(profiles)
        return self.get_paginated_response(MeasuredProfileOut(page, many=True).data)

    @extend_schema(request=MeasuredProfileIn, responses={201: MeasuredProfileOut})
    def post(self, request, listing_id: int):
        profile = services.measured_profile_record(
            listing_id=listing_id, provider=provider_of(request), **validated_body(MeasuredProfileIn, request)
        )
        return Response(MeasuredProfileOut(profile).data, status=status.HTTP_201_CREATED)
