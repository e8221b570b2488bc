"""REST API v1: one thin view per endpoint — validate, call one service or selector, serialise."""

from __future__ import annotations

import csv
from datetime import date

from django.http import Http404, HttpResponse, JsonResponse
from django.views.defaults import bad_request as bad_request_page
from django.views.defaults import page_not_found
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny, BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from marketplace import selectors, services
from marketplace.api import serializers as s
from marketplace.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from marketplace.api.pagination import SearchPagination
from marketplace.api.permissions import IsBuyer, IsProvider
from marketplace.clock import market_now
from marketplace.models import Organisation

#: Query parameters every list accepts besides its own filters.
COMMON_PARAMS = frozenset({"page", "page_size", "format"})


def validated_query(serializer_class, request) -> dict:
    """The request's query parameters through ``serializer_class``; unknown ones are a 400, and so
    are blank ones (``?month=``), which DRF would otherwise take as absent."""
    unknown = set(request.query_params) - set(serializer_class().fields) - COMMON_PARAMS
    if unknown:
        raise ValidationError({name: ["Unknown parameter."] for name in sorted(unknown)})
    blank = sorted(name for name, values in request.query_params.lists() if "" in values)
    if blank:
        raise ValidationError({name: ["Give a value, or leave the parameter out."] for name in blank})
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def validated_body(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def provider_of(request) -> Organisation | None:
    return selectors.organisation_of(request.user, kind=Organisation.Kind.PROVIDER)


def buyer_of(request) -> Organisation | None:
    return selectors.organisation_of(request.user, kind=Organisation.Kind.BUYER)


# Django's own error pages answer what no view sees; under /api/ they answer JSON like every other
# API error, so that clients (and the documented content type) see one error format.


def not_found(request, exception=None):
    """``handler404``: no route matches, e.g. a malformed id (``/api/v1/listings/abc/``)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def bad_request(request, exception=None):
    """``handler400``: Django refused the request itself, e.g. for a Host header it does not serve."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return bad_request_page(request, exception)


# --- accounts -----------------------------------------------------------------------------------


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(request=s.RegisterIn, responses={201: s.RegisterOut})
    def post(self, request):
        user = services.account_register(**validated_body(s.RegisterIn, request))
        return Response(s.RegisterOut(user).data, status=status.HTTP_201_CREATED)


class TokenView(ObtainAuthToken):
    """``{username, password}`` → ``{token}``, rate-limited per client address (``THROTTLE_LOGIN``)
    so that passwords cannot be guessed at speed. The credentials are the body: no authentication
    (the schema says so), and it reads a form as well as JSON (``curl -d``)."""

    authentication_classes: list = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


# --- reference data -----------------------------------------------------------------------------


class RegionListView(generics.ListAPIView):
    permission_classes = [AllowAny]
    serializer_class = s.RegionOut

    def get_queryset(self):
        validated_query(_NoFilters, self.request)
        return selectors.region_list()


class RegionDetailView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=s.RegionDetailOut)
    def get(self, request, code: str):
        region = selectors.region_with_rtts(code=code)
        if region is None:
            raise Http404
        return Response(s.RegionDetailOut(region).data)


class GpuModelListView(generics.ListAPIView):
    permission_classes = [AllowAny]
    serializer_class = s.GpuModelOut

    def get_queryset(self):
        validated_query(_NoFilters, self.request)
        return selectors.gpu_model_list()


class CapacityView(APIView):
    """Idle GPUs by region and latency class as seen from ``origin``, nearest first."""

    permission_classes = [AllowAny]

    @extend_schema(parameters=[s.CapacityQuery], responses=s.CapacityRowOut(many=True))
    def get(self, request):
        query = validated_query(s.CapacityQuery, request)
        rows = selectors.capacity_by_region(origin=query["origin"], gpu_model=query.get("gpu_model"))
        return Response(s.CapacityRowOut(rows, many=True).data)


# --- listings -----------------------------------------------------------------------------------


class ListingListView(generics.GenericAPIView):
    serializer_class = s.ListingOut
    pagination_class = SearchPagination

    def get_permissions(self):
        return [IsProvider()] if self.request.method == "POST" else [AllowAny()]

    @extend_schema(parameters=[s.ListingQuery], responses=s.ListingOut(many=True))
    def get(self, request):
        query = validated_query(s.ListingQuery, request)
        viewer = provider_of(request)
        if query.pop("mine"):
            if viewer is None:
                raise ValidationError({"mine": ["Only provider accounts have listings of their own."]})
            query["provider"] = viewer
        query["ordering"] = s.LISTING_ORDERINGS[query["ordering"]]
        queryset = selectors.listing_search(selectors.ListingFilters(**query), viewer=viewer)
        page = self.paginate_queryset(queryset)
        rtts = selectors.rtts_from(query.get("origin"))
        return self.get_paginated_response(s.ListingOut(page, many=True, context={"rtt_ms_by_region": rtts}).data)

    @extend_schema(request=s.ListingIn, responses={201: s.ListingOut}, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request):
        provider = provider_of(request)
        listing = services.listing_create(provider=provider, **validated_body(s.ListingIn, request))
        listing = selectors.listing_visible(listing_id=listing.pk, viewer=provider)
        return Response(s.ListingOut(listing).data, status=status.HTTP_201_CREATED)


class ListingDetailView(APIView):
    """Anyone reads an active listing; only its provider changes or withdraws it (DELETE)."""

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "GET" else [IsProvider()]

    def _visible(self, request, listing_id: int):
        listing = selectors.listing_visible(listing_id=listing_id, viewer=provider_of(request))
        if listing is None:
            raise Http404
        return listing

    @extend_schema(responses=s.ListingOut)
    def get(self, request, listing_id: int):
        return Response(s.ListingOut(self._visible(request, listing_id)).data)

    @extend_schema(request=s.ListingUpdateIn, responses=s.ListingOut)
    def patch(self, request, listing_id: int):
        changes = validated_body(s.ListingUpdateIn, request)
        provider = provider_of(request)
        services.listing_update(listing_id=listing_id, provider=provider, changes=changes)
        return Response(s.ListingOut(self._visible(request, listing_id)).data)

    @extend_schema(request=None, responses={200: OpenApiResponse(s.ListingOut, "The withdrawn listing.")})
    def delete(self, request, listing_id: int):
        services.listing_withdraw(listing_id=listing_id, provider=provider_of(request))
        return Response(s.ListingOut(self._visible(request, listing_id)).data)


# --- requests -----------------------------------------------------------------------------------


class RequestListView(generics.GenericAPIView):
    serializer_class = s.RequestOut

    def get_permissions(self):
        return [IsBuyer()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(responses=s.RequestOut(many=True))
    def get(self, request):
        validated_query(_NoFilters, request)
        page = self.paginate_queryset(selectors.request_list_for(request.user))
        return self.get_paginated_response(s.RequestOut(page, many=True).data)

    @extend_schema(request=s.RequestIn, responses={201: s.RequestOut}, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request):
        buyer_request = services.request_submit(buyer=buyer_of(request), **validated_body(s.RequestIn, request))
        return Response(s.RequestOut(buyer_request).data, status=status.HTTP_201_CREATED)


class RequestDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=s.RequestOut)
    def get(self, request, request_id: int):
        buyer_request = selectors.request_list_for(request.user).filter(pk=request_id).first()
        if buyer_request is None:
            raise Http404
        return Response(s.RequestOut(buyer_request).data)


class RequestCancelView(APIView):
    permission_classes = [IsBuyer]

    @extend_schema(request=None, responses=s.RequestOut)
    def post(self, request, request_id: int):
        buyer_request = services.request_cancel(request_id=request_id, buyer=buyer_of(request))
        return Response(s.RequestOut(buyer_request).data)


class QuoteView(APIView):
    """The placement the engine would choose for a request now, without committing anything."""

    permission_classes = [IsBuyer]

    @extend_schema(request=s.RequestIn, responses=s.QuoteOut)
    def post(self, request):
        quote = selectors.request_quote(buyer=buyer_of(request), **validated_body(s.RequestIn, request))
        return Response(quote.to_dict())


# --- matches and runs ---------------------------------------------------------------------------


class _NoFilters(s.serializers.Serializer):
    """Lists without filters still refuse unknown parameters."""


class MatchListView(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = s.MatchOut

    def get_queryset(self):
        validated_query(_NoFilters, self.request)
        return selectors.match_list_for(self.request.user)


class MatchDetailView(generics.RetrieveAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = s.MatchOut
    lookup_url_kwarg = "match_id"

    def get_queryset(self):
        return selectors.match_list_for(self.request.user)


class MatchCancelView(APIView):
    """The buyer stops a match: it pays for the GPU-hours it held (nothing if not yet started)."""

    permission_classes = [IsBuyer]

    @extend_schema(request=None, responses=s.MatchOut)
    def post(self, request, match_id: int):
        services.match_cancel(match_id=match_id, buyer=buyer_of(request), now=market_now())
        return Response(s.MatchOut(selectors.match_list_for(request.user).get(pk=match_id)).data)


class ListingFailNodesView(APIView):
    """The provider reports failed nodes: the matches on them fail over to other capacity."""

    permission_classes = [IsProvider]

    @extend_schema(request=s.FailNodesIn, responses=s.ListingOut)
    def post(self, request, listing_id: int):
        nodes = validated_body(s.FailNodesIn, request)["nodes"]
        services.listing_nodes_fail(listing_id=listing_id, provider=provider_of(request), nodes=nodes)
        listing = selectors.listing_visible(listing_id=listing_id, viewer=provider_of(request))
        return Response(s.ListingOut(listing).data)


def statement_of(request) -> selectors.Statement:
    organisation = selectors.organisation_of(request.user)
    if organisation is None:
        raise PermissionDenied("Statements are for buyer and provider accounts.")
    month = validated_query(s.StatementQuery, request).get("month")
    first = date.fromisoformat(f"{month}-01") if month else market_now().date().replace(day=1)
    return selectors.statement_for(organisation, first)


class StatementView(APIView):
    """This month's (or ``?month=YYYY-MM``'s) settled matches and totals for the caller's
    organisation: what a buyer pays, what a provider earns."""

    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[s.StatementQuery], responses=s.StatementOut)
    def get(self, request):
        return Response(s.StatementOut(statement_of(request)).data)


class StatementCsvView(APIView):
    """The same statement as CSV: one row per match, then a totals row."""

    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[s.StatementQuery], responses={(200, "text/csv"): str})
    def get(self, request):
        statement = statement_of(request)
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="statement-{statement.month}.csv"'
        writer = csv.writer(response)
        columns = list(s.StatementLineOut().fields)
        writer.writerow(columns)
        for line in s.StatementLineOut(statement.lines, many=True).data:
            writer.writerow([line[column] for column in columns])
        writer.writerow(["total", *[statement.totals.get(column, "") for column in columns[1:]]])
        return response


class MatchingRunListView(generics.ListAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = s.MatchingRunOut

    def get_queryset(self):
        validated_query(_NoFilters, self.request)
        return selectors.matching_run_list()


# --- vouchers -----------------------------------------------------------------------------------


class VoucherClaimView(APIView):
    """Claim a code: it becomes the buyer's. Claiming one's own voucher again is a no-op (200)."""

    permission_classes = [IsBuyer]

    @extend_schema(request=s.ClaimIn, responses=s.VoucherOut, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request):
        buyer = buyer_of(request)
        voucher = services.voucher_claim(code=validated_body(s.ClaimIn, request)["code"], buyer=buyer)
        (mine,) = selectors.vouchers_of(buyer, voucher_id=voucher.pk)
        return Response(s.VoucherOut(mine).data)


class VoucherListView(generics.GenericAPIView):
    """The buyer's vouchers with what each can still pay."""

    permission_classes = [IsBuyer]
    serializer_class = s.VoucherOut

    @extend_schema(responses=s.VoucherOut(many=True))
    def get(self, request):
        validated_query(_NoFilters, request)
        page = self.paginate_queryset(selectors.vouchers_of(buyer_of(request)))
        return self.get_paginated_response(s.VoucherOut(page, many=True).data)


class ProgramManager(BasePermission):
    """Staff manage every programme; a provider manages its own promotions."""

    message = "Only staff and providers manage voucher programmes."

    def has_permission(self, request, view) -> bool:
        return request.user.is_staff or provider_of(request) is not None


def sponsor_scope(request) -> Organisation | None:
    """None for staff (every programme); the provider for a provider (its promotions only)."""
    return None if request.user.is_staff else provider_of(request)


class VoucherProgramListView(generics.GenericAPIView):
    permission_classes = [ProgramManager]
    serializer_class = s.VoucherProgramOut

    @extend_schema(responses=s.VoucherProgramOut(many=True))
    def get(self, request):
        validated_query(_NoFilters, request)
        programs = selectors.voucher_programs_for(request.user, provider_of(request))
        return self.get_paginated_response(s.VoucherProgramOut(self.paginate_queryset(programs), many=True).data)

    @extend_schema(request=s.VoucherProgramIn, responses={201: s.VoucherProgramOut})
    def post(self, request):
        provider = sponsor_scope(request)
        terms = validated_body(s.VoucherProgramIn, request)
        terms.setdefault("sponsor", provider.name if provider else "")
        if not terms["sponsor"]:
            raise ValidationError({"sponsor": ["Name who pays for the programme."]})
        program = services.voucher_program_create(sponsor_provider=provider, **terms)
        return Response(s.VoucherProgramOut(program).data, status=status.HTTP_201_CREATED)


def managed_program(request, program_id: int):
    """A programme the caller manages (``voucher_programs_for``); any other is a 404."""
    program = selectors.voucher_programs_for(request.user, provider_of(request)).filter(pk=program_id).first()
    if program is None:
        raise Http404
    return program


class VoucherProgramDetailView(APIView):
    permission_classes = [ProgramManager]

    @extend_schema(responses=s.VoucherProgramOut)
    def get(self, request, program_id: int):
        return Response(s.VoucherProgramOut(managed_program(request, program_id)).data)

    @extend_schema(request=s.VoucherProgramUpdateIn, responses=s.VoucherProgramOut)
    def patch(self, request, program_id: int):
        changes = validated_body(s.VoucherProgramUpdateIn, request)
        services.voucher_program_update(program_id=program_id, sponsor_provider=sponsor_scope(request), changes=changes)
        return Response(s.VoucherProgramOut(managed_program(request, program_id)).data)


class VoucherIssueView(generics.GenericAPIView):
    """Issue codes in a programme (POST), or list them (GET): staff, or the promotion's provider."""

    permission_classes = [ProgramManager]
    serializer_class = s.IssuedVoucherOut

    @extend_schema(request=s.IssueIn, responses={201: s.IssuedVoucherOut(many=True)})
    def post(self, request, program_id: int):
        terms = validated_body(s.IssueIn, request)
        vouchers = services.vouchers_issue(program_id=program_id, sponsor_provider=sponsor_scope(request), **terms)
        return Response(s.IssuedVoucherOut(vouchers, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.IssuedVoucherOut(many=True))
    def get(self, request, program_id: int):
        validated_query(_NoFilters, request)
        vouchers = managed_program(request, program_id).vouchers.select_related("buyer").order_by("id")
        return self.get_paginated_response(s.IssuedVoucherOut(self.paginate_queryset(vouchers), many=True).data)


class VoucherProgramReportView(APIView):
    permission_classes = [ProgramManager]

    @extend_schema(responses=s.ProgramReportOut)
    def get(self, request, program_id: int):
        report = selectors.voucher_program_report(managed_program(request, program_id))
        return Response(s.ProgramReportOut(report).data)
