"""An organisation manages itself: its API keys, its members and its monthly spend cap.

Owners only (``IsOwner``), and an API key needs the ``admin`` scope for all of it, reads included
(a key's list is no business of a trading script); any member reads the organisation itself.
"""

from __future__ import annotations

from django.http import Http404
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import bounds, selectors, services
from marketplace.api.fields import AwareTime, DecimalText, PatternField, TextField
from marketplace.api.inputs import NoFilters, validated_body, validated_query
from marketplace.api.permissions import IsOwner, scoped
from marketplace.api.schema import DOMAIN_RULE, EMAIL_RULE, LABEL_RULE, PASSWORD_RULE, USERNAME_RULE
from marketplace.market_time import market_now
from marketplace.models import ApiKey, Membership, Organisation
from marketplace.models.api_keys import Scope
from marketplace.money import SETTLED_AMOUNT
from marketplace.services.spend import spend_month_of

CAP_HELP = "CNY per calendar month (UTC) of reserved worst cases and charges; null: no cap."
SPENT_HELP = (
    "CNY committed this month (UTC): the worst case of every request that may still be matched, "
    "and the charges of closed ones."
)


def caller_organisation(request) -> Organisation:
    organisation = selectors.organisation_of(request.user)
    if organisation is None:  # the permissions let only members through; this keeps it so
        raise Http404
    return organisation


class HasOrganisation(BasePermission):
    message = gettext_lazy("Only members of a provider or buyer organisation may do this.")

    def has_permission(self, request, view) -> bool:
        return selectors.organisation_of(request.user) is not None


# --- the organisation ---------------------------------------------------------------------------


class OrganisationOut(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    province = serializers.CharField()
    monthly_spend_cap = serializers.DecimalField(**SETTLED_AMOUNT, allow_null=True, help_text=CAP_HELP)
    month = serializers.CharField(help_text="The month (UTC) the spend below counts in, YYYY-MM.")
    spent_this_month = serializers.DecimalField(**SETTLED_AMOUNT, help_text=SPENT_HELP)
    role = serializers.CharField(help_text="The caller's role in it: owner or member.")


class OrganisationIn(serializers.Serializer):
    """A PATCH: absent fields stay as they are (an empty body changes nothing)."""

    monthly_spend_cap = DecimalText(
        **bounds.SPEND_CAP.field_kwargs(), required=False, allow_null=True, help_text=CAP_HELP
    )


def organisation_out(request, organisation: Organisation) -> dict:
    month = spend_month_of(market_now())
    return OrganisationOut(
        {
            "name": organisation.name,
            "kind": organisation.kind,
            "province": organisation.province,
            "monthly_spend_cap": organisation.monthly_spend_cap,
            "month": f"{month:%Y-%m}",
            "spent_this_month": selectors.organisation_spent(organisation, month=month),
            "role": request.user.membership.role,
        }
    ).data


class OrganisationView(APIView):
    """The caller's organisation; its owners set its monthly spend cap (PATCH)."""

    write_scope = Scope.ADMIN

    def get_permissions(self):
        if self.request.method == "PATCH":
            return [permission() for permission in scoped(IsOwner)]
        return [permission() for permission in scoped(IsAuthenticated, HasOrganisation)]

    @extend_schema(responses=OrganisationOut)
    def get(self, request):
        return Response(organisation_out(request, caller_organisation(request)))

    @extend_schema(request=OrganisationIn, responses=OrganisationOut)
    def patch(self, request):
        changes = validated_body(OrganisationIn, request)
        organisation = caller_organisation(request)
        if "monthly_spend_cap" in changes:
            organisation = services.organisation_spend_cap_set(
                organisation=organisation, by=request.user, monthly_spend_cap=changes["monthly_spend_cap"]
            )
        return Response(organisation_out(request, organisation))


# --- API keys -----------------------------------------------------------------------------------


class ApiKeyIn(serializers.Serializer):
    name = TextField(**bounds.API_KEY_NAME.field_kwargs(), help_text=LABEL_RULE)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.values),
        min_length=1,
        max_length=len(Scope.values),
        help_text="read: GET only; trade: listings, requests, cancels, quotes, vouchers; agent: provider "
        "agents; admin: keys, members, the spend cap.",
    )
    expires_at = AwareTime(
        required=False,
        allow_null=True,
        help_text=f"When the key stops working; null: never. {DOMAIN_RULE} a time not in the future is a 400 "
        "naming this field.",
    )
    monthly_spend_cap = DecimalText(
        **bounds.SPEND_CAP.field_kwargs(), required=False, allow_null=True, help_text=CAP_HELP
    )


class ApiKeyOut(serializers.ModelSerializer):
    """A key as listed: never its secret, which only the creating call returns."""

    scopes = serializers.ListField(source="scope_list", child=serializers.CharField())
    user = serializers.CharField(source="user.username", help_text="Whom the key acts as: its creator.")
    spent_this_month = serializers.DecimalField(**SETTLED_AMOUNT, read_only=True, help_text=SPENT_HELP)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "user",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "monthly_spend_cap",
            "spent_this_month",
        ]


class ApiKeyCreatedOut(ApiKeyOut):
    secret = serializers.CharField(
        help_text="Send it as `Authorization: Token <secret>`. Shown this once: only its hash is stored."
    )

    class Meta(ApiKeyOut.Meta):
        fields = [*ApiKeyOut.Meta.fields, "secret"]


class AdminScoped:
    """Owners only, and a key needs ``admin`` to read as well as to write."""

    permission_classes = scoped(IsOwner)
    read_scope = Scope.ADMIN
    write_scope = Scope.ADMIN


def listed_key(request, key_id: int) -> ApiKey:
    month = spend_month_of(market_now())
    key = selectors.api_keys_of(caller_organisation(request), month=month).select_related("user").filter(pk=key_id)
    if not key:
        raise Http404
    return key[0]


class ApiKeyListView(AdminScoped, generics.GenericAPIView):
    """The organisation's API keys (GET, newest first), or a new one (POST: its secret, once)."""

    serializer_class = ApiKeyOut

    @extend_schema(responses=ApiKeyOut(many=True))
    def get(self, request):
        validated_query(NoFilters, request)
        keys = selectors.api_keys_of(caller_organisation(request), month=spend_month_of(market_now()))
        page = self.paginate_queryset(keys.select_related("user"))
        return self.get_paginated_response(ApiKeyOut(page, many=True).data)

    @extend_schema(request=ApiKeyIn, responses={201: ApiKeyCreatedOut})
    def post(self, request):
        created = services.api_key_create(
            organisation=caller_organisation(request), user=request.user, **validated_body(ApiKeyIn, request)
        )
        data = ApiKeyOut(listed_key(request, created.key.pk)).data | {"secret": created.secret}
        return Response(data, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(AdminScoped, APIView):
    """One key (GET), or its revocation (DELETE: refused from the next call on; the row stays)."""

    @extend_schema(responses=ApiKeyOut)
    def get(self, request, key_id: int):
        return Response(ApiKeyOut(listed_key(request, key_id)).data)

    @extend_schema(responses={200: ApiKeyOut})
    def delete(self, request, key_id: int):
        """Revoke the key (it is refused from the next call on) and answer it as now listed, with
        its ``revoked_at``; revoking a revoked key changes nothing."""
        services.api_key_revoke(key_id=key_id, organisation=caller_organisation(request), user=request.user)
        return Response(ApiKeyOut(listed_key(request, key_id)).data)


# --- members ------------------------------------------------------------------------------------


class MemberOut(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email", help_text='The user\'s email ("" when none was given).')

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "role"]


class MemberIn(serializers.Serializer):
    username = PatternField(**bounds.USERNAME.field_kwargs(), help_text=USERNAME_RULE)
    email = serializers.EmailField(help_text=EMAIL_RULE)
    password = TextField(
        **bounds.PASSWORD.field_kwargs(), write_only=True, style={"input_type": "password"}, help_text=PASSWORD_RULE
    )
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberRoleIn(serializers.Serializer):
    """A PATCH: absent fields stay as they are (an empty body changes nothing)."""

    role = serializers.ChoiceField(
        choices=Membership.Role.choices,
        required=False,
        help_text=f"{DOMAIN_RULE} demoting the organisation's last owner is a 400 naming this field.",
    )


def listed_member(request, member_id: int) -> Membership:
    member = selectors.members_of(caller_organisation(request)).filter(pk=member_id).first()
    if member is None:
        raise Http404
    return member


class MemberListView(AdminScoped, generics.GenericAPIView):
    """The organisation's members (GET), or a new user acting for it (POST)."""

    serializer_class = MemberOut

    @extend_schema(responses=MemberOut(many=True))
    def get(self, request):
        validated_query(NoFilters, request)
        page = self.paginate_queryset(selectors.members_of(caller_organisation(request)))
        return self.get_paginated_response(MemberOut(page, many=True).data)

    @extend_schema(request=MemberIn, responses={201: MemberOut})
    def post(self, request):
        membership = services.member_add(
            organisation=caller_organisation(request), by=request.user, **validated_body(MemberIn, request)
        )
        return Response(MemberOut(listed_member(request, membership.pk)).data, status=status.HTTP_201_CREATED)


class MemberDetailView(AdminScoped, APIView):
    """One member (GET), a change of role (PATCH), or removal (DELETE); never of the last owner."""

    @extend_schema(responses=MemberOut)
    def get(self, request, member_id: int):
        return Response(MemberOut(listed_member(request, member_id)).data)

    @extend_schema(request=MemberRoleIn, responses=MemberOut)
    def patch(self, request, member_id: int):
        role = validated_body(MemberRoleIn, request).get("role")
        if role is not None:
            services.member_role_change(
                organisation=caller_organisation(request), by=request.user, membership_id=member_id, role=role
            )
        return Response(MemberOut(listed_member(request, member_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, member_id: int):
        services.member_remove(organisation=caller_organisation(request), by=request.user, membership_id=member_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
