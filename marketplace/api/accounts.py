"""Accounts: sign-up and API tokens."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from marketplace import bounds, services
from marketplace.api.fields import PatternField, TextField
from marketplace.api.inputs import refuse_unknown_fields, validated_body
from marketplace.api.parsers import FormParser, JSONParser, MultiPartParser
from marketplace.api.schema import DOMAIN_RULE, NAME_RULE
from marketplace.models import Organisation


class RegisterIn(serializers.Serializer):
    username = PatternField(
        **bounds.USERNAME.field_kwargs(), help_text=f"{NAME_RULE} So is a username taken (after NFKC normalising)."
    )
    password = TextField(
        **bounds.PASSWORD.field_kwargs(),
        write_only=True,
        style={"input_type": "password"},
        help_text=f"{DOMAIN_RULE} a password Django's validators refuse (too short, too common, all digits, "
        "too like the username) is a 400 naming this field.",
    )
    email = serializers.EmailField(
        help_text=f"{DOMAIN_RULE} an address Django's EmailValidator refuses (e.g. a top-level domain of one "
        "letter) is a 400 naming this field."
    )
    role = serializers.ChoiceField(choices=Organisation.Kind.values)
    organisation = TextField(**bounds.NAME.field_kwargs(), help_text=f"{NAME_RULE} So is a name taken.")


class RegisterOut(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.EmailField(
        help_text=f"{DOMAIN_RULE} an address Django's EmailValidator refuses (e.g. a top-level domain of one "
        "letter) is a 400 naming this field."
    )
    role = serializers.CharField(source="membership.organisation.kind")
    organisation = serializers.CharField(source="membership.organisation.name")


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(request=RegisterIn, responses={201: RegisterOut})
    def post(self, request):
        user = services.account_register(**validated_body(RegisterIn, request))
        return Response(RegisterOut(user).data, status=status.HTTP_201_CREATED)


class TokenView(ObtainAuthToken):
    """``{username, password}`` → ``{token}``, rate-limited per client address (``THROTTLE_LOGIN``)
    so that passwords cannot be guessed at speed. The credentials are the body: no authentication
    (the schema says so), and it reads a form as well as JSON (``curl -d``).

    Domain rule: a username and password that do not sign in are a 400 on ``non_field_errors``."""

    authentication_classes: list = []
    parser_classes = [JSONParser, FormParser, MultiPartParser]  # ObtainAuthToken's are DRF's own
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    def get_serializer(self, *args, **kwargs):
        """``ObtainAuthToken``'s serializer, behind the API's rule for bodies: unknown fields are a 400."""
        refuse_unknown_fields(self.serializer_class, kwargs.get("data"))
        return super().get_serializer(*args, **kwargs)
