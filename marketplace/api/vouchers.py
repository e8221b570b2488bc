"""Vouchers and voucher programmes: a buyer claims and lists its codes; staff and providers (for
their own promotions) run programmes, issue codes and read reports."""

from __future__ import annotations

from django.http import Http404
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import bounds, selectors, services
from marketplace.api.fields import AwareTime, DecimalText, IntegerNumber, TextField, gpu_model_field, region_field
from marketplace.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from marketplace.api.inputs import NoFilters, validated_body, validated_query
from marketplace.api.permissions import IsBuyer, buyer_of, provider_of, scoped
from marketplace.api.schema import DOMAIN_RULE, NAME_RULE
from marketplace.market_time import market_now
from marketplace.models import Organisation, Voucher, VoucherProgram
from marketplace.money import LEDGER_AMOUNT


class ClaimIn(serializers.Serializer):
    code = TextField(
        **bounds.VOUCHER_CODE.field_kwargs(),
        help_text=f"{DOMAIN_RULE} a code nobody issued, or one already claimed, is a 400 naming it.",
    )


class VoucherOut(serializers.ModelSerializer):
    """A buyer's own voucher: the code is shown to its holder only."""

    program = serializers.CharField(source="program.name")
    sponsor = serializers.CharField(source="program.sponsor")
    kind = serializers.CharField(source="program.kind")
    percent = serializers.DecimalField(source="program.percent", max_digits=5, decimal_places=2, allow_null=True)
    free_gpu_hours = serializers.DecimalField(
        source="program.free_gpu_hours", max_digits=10, decimal_places=2, allow_null=True
    )
    valid_until = serializers.DateTimeField(source="program.valid_until")
    eligible_regions = serializers.SlugRelatedField(
        source="program.eligible_regions", slug_field="code", many=True, read_only=True
    )
    eligible_gpu_models = serializers.SlugRelatedField(
        source="program.eligible_gpu_models", slug_field="code", many=True, read_only=True
    )
    remaining_value = serializers.DecimalField(**LEDGER_AMOUNT, read_only=True, allow_null=True)

    class Meta:
        model = Voucher
        fields = [
            "id",
            "code",
            "program",
            "sponsor",
            "kind",
            "percent",
            "free_gpu_hours",
            "cap",
            "spent",
            "remaining_value",
            "status",
            "valid_until",
            "eligible_regions",
            "eligible_gpu_models",
            "claimed_at",
        ]


class VoucherProgramIn(serializers.Serializer):
    name = TextField(**bounds.NAME.field_kwargs(), help_text=NAME_RULE)
    sponsor = TextField(
        **bounds.NAME.field_kwargs(),
        required=False,
        help_text="Who pays. Staff name any sponsor; a provider's promotion is sponsored by the provider "
        f"(leave it out, or give the provider's own name). {NAME_RULE} So is a staff programme without a "
        "sponsor, or a provider naming another.",
    )
    kind = serializers.ChoiceField(choices=VoucherProgram.Kind.choices, default=VoucherProgram.Kind.PERCENT)
    percent = DecimalText(
        **bounds.VOUCHER_PERCENT.field_kwargs(),
        required=False,
        allow_null=True,
        help_text=f"{DOMAIN_RULE} a percent programme needs a percent above 0; another kind, none.",
    )
    free_gpu_hours = DecimalText(
        **bounds.FREE_GPU_HOURS.field_kwargs(),
        required=False,
        allow_null=True,
        help_text=f"{DOMAIN_RULE} a free GPU-hours programme needs free_gpu_hours above 0; another kind, none.",
    )
    cap_per_buyer = DecimalText(**bounds.VOUCHER_AMOUNT.field_kwargs(), required=False, allow_null=True)
    budget = DecimalText(**bounds.VOUCHER_AMOUNT.field_kwargs())
    valid_from = AwareTime(window=bounds.PROGRAMME_TIMES, required=False)
    valid_until = AwareTime(window=bounds.PROGRAMME_TIMES)
    eligible_regions = region_field(many=True, required=False)
    eligible_gpu_models = gpu_model_field(many=True, required=False)
    eligible_buyer_provinces = serializers.ListField(
        child=TextField(**bounds.PROVINCE.field_kwargs()), required=False, help_text=f"Provinces, by name. {NAME_RULE}"
    )
    min_spend = DecimalText(**bounds.VOUCHER_SPEND.field_kwargs(), required=False, allow_null=True)
    max_spend = DecimalText(
        **bounds.VOUCHER_SPEND.field_kwargs(),
        required=False,
        allow_null=True,
        help_text=f"{DOMAIN_RULE} a max_spend below min_spend is a 400 naming this field.",
    )

    def validate(self, attrs):
        attrs.setdefault("valid_from", market_now())
        return attrs


class VoucherProgramUpdateIn(serializers.Serializer):
    name = TextField(**bounds.NAME.field_kwargs(), required=False, help_text=NAME_RULE)
    budget = DecimalText(
        **bounds.VOUCHER_AMOUNT.field_kwargs(),
        required=False,
        help_text=f"{DOMAIN_RULE} a budget below what the programme has already reserved is a 400 naming this field.",
    )
    valid_from = AwareTime(window=bounds.PROGRAMME_TIMES, required=False)
    valid_until = AwareTime(window=bounds.PROGRAMME_TIMES, required=False)
    cap_per_buyer = DecimalText(**bounds.VOUCHER_AMOUNT.field_kwargs(), required=False, allow_null=True)
    paused = serializers.BooleanField(
        required=False,
        help_text="true pauses the programme: no new subsidy is reserved until false resumes it; "
        "subsidy already reserved for matches stays.",
    )


class VoucherProgramOut(serializers.ModelSerializer):
    sponsor_provider = serializers.CharField(source="sponsor_provider.name", allow_null=True, default=None)
    eligible_regions = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    eligible_gpu_models = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    eligible_providers = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    spent = serializers.SerializerMethodField()

    class Meta:
        model = VoucherProgram
        fields = [
            "id",
            "name",
            "sponsor",
            "sponsor_provider",
            "kind",
            "percent",
            "free_gpu_hours",
            "cap_per_buyer",
            "budget",
            "remaining_budget",
            "spent",
            "valid_from",
            "valid_until",
            "paused",
            "eligible_regions",
            "eligible_gpu_models",
            "eligible_providers",
            "eligible_buyer_provinces",
            "min_spend",
            "max_spend",
        ]

    def get_spent(self, program) -> str:
        return str(program.budget - program.remaining_budget)


class IssueIn(serializers.Serializer):
    count = IntegerNumber(**bounds.VOUCHERS_PER_ISSUE.field_kwargs(), default=1)
    buyer = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Organisation.objects.filter(kind=Organisation.Kind.BUYER),
        required=False,
        help_text=f"The buyer organisation the vouchers are issued to, by name. {DOMAIN_RULE} a name no buyer "
        "has is a 400 naming it.",
    )
    cap = DecimalText(**bounds.VOUCHER_AMOUNT.field_kwargs(), required=False, allow_null=True)


class IssuedVoucherOut(serializers.ModelSerializer):
    buyer = serializers.CharField(source="buyer.name", allow_null=True, default=None)

    class Meta:
        model = Voucher
        fields = ["id", "code", "buyer", "cap", "spent", "status", "claimed_at"]


class ProgramReportOut(serializers.Serializer):
    program = serializers.CharField()
    budget = serializers.DecimalField(**LEDGER_AMOUNT)
    spent = serializers.DecimalField(**LEDGER_AMOUNT)
    remaining_budget = serializers.DecimalField(**LEDGER_AMOUNT)
    buyers_served = serializers.IntegerField()
    matches_subsidised = serializers.IntegerField()
    gpu_hours_by_region = serializers.DictField(child=serializers.DecimalField(max_digits=16, decimal_places=4))
    west_gpu_hours = serializers.DecimalField(max_digits=16, decimal_places=4)
    west_share = serializers.FloatField()


class VoucherClaimView(APIView):
    """Claim a code: it becomes the buyer's. Claiming one's own voucher again is a no-op (200)."""

    permission_classes = scoped(IsBuyer)

    @extend_schema(request=ClaimIn, responses=VoucherOut, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request):
        buyer = buyer_of(request)
        voucher = services.voucher_claim(code=validated_body(ClaimIn, request)["code"], buyer=buyer)
        (mine,) = selectors.vouchers_of(buyer, voucher_id=voucher.pk)
        return Response(VoucherOut(mine).data)


class VoucherListView(generics.GenericAPIView):
    """The buyer's vouchers with what each can still pay."""

    permission_classes = scoped(IsBuyer)
    serializer_class = VoucherOut

    @extend_schema(responses=VoucherOut(many=True))
    def get(self, request):
        validated_query(NoFilters, request)
        page = self.paginate_queryset(selectors.vouchers_of(buyer_of(request)))
        return self.get_paginated_response(VoucherOut(page, many=True).data)


class ProgramManager(BasePermission):
    """Staff manage every programme; a provider manages its own promotions."""

    message = gettext_lazy("Only staff and providers manage voucher programmes.")

    def has_permission(self, request, view) -> bool:
        return request.user.is_staff or provider_of(request) is not None


def sponsor_scope(request) -> Organisation | None:
    """None for staff (every programme); the provider for a provider (its promotions only)."""
    return None if request.user.is_staff else provider_of(request)


def managed_program(request, program_id: int):
    """A programme the caller manages (``voucher_programs_for``); any other is a 404."""
    program = selectors.voucher_programs_for(request.user, provider_of(request)).filter(pk=program_id).first()
    if program is None:
        raise Http404
    return program


class VoucherProgramListView(generics.GenericAPIView):
    permission_classes = scoped(ProgramManager)
    serializer_class = VoucherProgramOut

    @extend_schema(responses=VoucherProgramOut(many=True))
    def get(self, request):
        validated_query(NoFilters, request)
        programs = selectors.voucher_programs_for(request.user, provider_of(request))
        return self.get_paginated_response(VoucherProgramOut(self.paginate_queryset(programs), many=True).data)

    @extend_schema(request=VoucherProgramIn, responses={201: VoucherProgramOut})
    def post(self, request):
        terms = validated_body(VoucherProgramIn, request)
        program = services.voucher_program_create(sponsor_provider=sponsor_scope(request), **terms)
        return Response(VoucherProgramOut(program).data, status=status.HTTP_201_CREATED)


class VoucherProgramDetailView(APIView):
    permission_classes = scoped(ProgramManager)

    @extend_schema(responses=VoucherProgramOut)
    def get(self, request, program_id: int):
        return Response(VoucherProgramOut(managed_program(request, program_id)).data)

    @extend_schema(request=VoucherProgramUpdateIn, responses=VoucherProgramOut)
    def patch(self, request, program_id: int):
        changes = validated_body(VoucherProgramUpdateIn, request)
        services.voucher_program_update(program_id=program_id, sponsor_provider=sponsor_scope(request), changes=changes)
        return Response(VoucherProgramOut(managed_program(request, program_id)).data)


class VoucherIssueView(generics.GenericAPIView):
    """Issue codes in a programme (POST), or list them (GET): staff, or the promotion's provider."""

    permission_classes = scoped(ProgramManager)
    serializer_class = IssuedVoucherOut

    @extend_schema(request=IssueIn, responses={201: IssuedVoucherOut(many=True)})
    def post(self, request, program_id: int):
        terms = validated_body(IssueIn, request)
        vouchers = services.vouchers_issue(program_id=program_id, sponsor_provider=sponsor_scope(request), **terms)
        return Response(IssuedVoucherOut(vouchers, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=IssuedVoucherOut(many=True))
    def get(self, request, program_id: int):
        validated_query(NoFilters, request)
        vouchers = managed_program(request, program_id).vouchers.select_related("buyer").order_by("id")
        return self.get_paginated_response(IssuedVoucherOut(self.paginate_queryset(vouchers), many=True).data)


class VoucherProgramReportView(APIView):
    permission_classes = scoped(ProgramManager)

    @extend_schema(responses=ProgramReportOut)
    def get(self, request, program_id: int):
        report = selectors.voucher_program_report(managed_program(request, program_id))
        return Response(ProgramReportOut(report).data)
