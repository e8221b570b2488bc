"""Accounts: sign-up and API tokens."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from marketplace import bounds, services
from marketplace.account_limits import SignUpRateThrottle, cool_off_seconds, lockout_message
from marketplace.api.fields import PatternField, TextField
from marketplace.api.inputs import refuse_unknown_fields, validated_body
from marketplace.api.parsers import FormParser, JSONParser, MultiPartParser
from marketplace.api.permissions import scoped
from marketplace.api.schema import EMAIL_RULE, NAME_RULE, PASSWORD_RULE, USERNAME_RULE
from marketplace.errors import DomainError
from marketplace.models import Organisation


class RegisterIn(serializers.Serializer):
    username = PatternField(**bounds.USERNAME.field_kwargs(), help_text=USERNAME_RULE)
    password = TextField(
        **bounds.PASSWORD.field_kwargs(), write_only=True, style={"input_type": "password"}, help_text=PASSWORD_RULE
    )
    email = serializers.EmailField(help_text=EMAIL_RULE)
    role = serializers.ChoiceField(choices=Organisation.Kind.values)
    organisation = TextField(**bounds.NAME.field_kwargs(), help_text=f"{NAME_RULE} So is a name taken.")


class RegisterOut(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.EmailField(help_text=EMAIL_RULE)
    role = serializers.CharField(source="membership.organisation.kind")
    organisation = serializers.CharField(source="membership.organisation.name")


class RegisterView(APIView):
    """Sign up. Sign-ups from one client address are limited (`THROTTLE_SIGNUP`, counted together
    with the sign-up page's); over the limit, a 429 with `Retry-After`."""

    permission_classes = scoped(AllowAny)
    authentication_classes: list = []
    throttle_classes = [*api_settings.DEFAULT_THROTTLE_CLASSES, SignUpRateThrottle]

    @extend_schema(request=RegisterIn, responses={201: RegisterOut})
    def post(self, request):
        body = validated_body(RegisterIn, request)
        refusals = sign_up_refusals(body)
        if refusals:
            raise ValidationError(refusals)
        user = services.account_register(**body)
        return Response(RegisterOut(user).data, status=status.HTTP_201_CREATED)


def sign_up_refusals(body: dict) -> dict[str, list[str]]:
    """Every domain refusal of a sign-up at once, field by field (the organisation name taken or a
    look-alike, the username's, the password validators'), as the sign-up page shows them; the
    services' read-only checks, which ``account_register`` runs again in its transaction."""
    refusals: dict[str, list[str]] = {}
    checks = [
        lambda: services.organisation_name_check(body["organisation"]),
        lambda: services.username_check(body["username"]),
        lambda: services.password_check(body["password"], username=body["username"], email=body["email"]),
    ]
    for check in checks:
        try:
            check()
        except DomainError as refusal:
            for field, messages in refusal.as_dict().items():
                refusals.setdefault(field, []).extend(messages)
    return refusals


@extend_schema_serializer(component_name="AuthToken")  # DRF's serializer's name, as before
class TokenIn(AuthTokenSerializer):
    """A username and a password, at most as long as an account's (longer is a 400)."""

    username = serializers.CharField(label="Username", write_only=True, max_length=bounds.USERNAME.max_length)
    password = serializers.CharField(
        label="Password",
        style={"input_type": "password"},
        trim_whitespace=False,
        write_only=True,
        max_length=bounds.PASSWORD.max_length,
    )


class TokenView(ObtainAuthToken):
    """``{username, password}`` → ``{token}``, rate-limited per client address (``THROTTLE_LOGIN``)
    so that passwords cannot be guessed at speed. The credentials are the body: no authentication
    (the schema says so), and it reads a form as well as JSON (``curl -d``).

    Failed sign-ins here count toward the same lock-out as the web sign-in and the admin login
    (`SIGNIN_FAILURE_LIMIT` per username and per client address): a locked username or address is
    refused with a 429 and `Retry-After`, whatever the password (``marketplace.account_limits``).

    Domain rule: a username and password that do not sign in are a 400 on ``non_field_errors``."""

    authentication_classes: list = []
    permission_classes = scoped()
    parser_classes = [JSONParser, FormParser, MultiPartParser]  # ObtainAuthToken's are DRF's own
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    serializer_class = TokenIn

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError:
            # django-axes marks the request it refused (or locked with this failure).
            if getattr(request, "axes_locked_out", False):
                refusal = Throttled(detail=lockout_message())
                refusal.wait = cool_off_seconds()  # Retry-After, without DRF's "expected in" text
                raise refusal from None
            raise

    def get_serializer(self, *args, **kwargs):
        """``ObtainAuthToken``'s serializer, behind the API's rule for bodies: unknown fields are a 400."""
        refuse_unknown_fields(self.serializer_class, kwargs.get("data"))
        return super().get_serializer(*args, **kwargs)
