"""REST API v1: one thin view per endpoint — validate, call one service or selector, serialise."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors, services
from marketplace.api import serializers as s
from marketplace.api.permissions import IsBuyer, IsProvider
from marketplace.models import Organisation

#: Query parameters every list accepts besides its own filters.
COMMON_PARAMS = frozenset({"page", "page_size", "format"})


def validated_query(serializer_class, request) -> dict:
    """The request's query parameters through ``serializer_class``; unknown ones are a 400."""
    unknown = set(request.query_params) - set(serializer_class().fields) - COMMON_PARAMS
    if unknown:
        raise ValidationError({name: ["Unknown parameter."] for name in sorted(unknown)})
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


# --- accounts -----------------------------------------------------------------------------------


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(request=s.RegisterIn, responses={201: s.RegisterOut})
    def post(self, request):
        user = services.account_register(**validated_body(s.RegisterIn, request))
        return Response(s.RegisterOut(user).data, status=status.HTTP_201_CREATED)


# --- reference data -----------------------------------------------------------------------------


class RegionListView(generics.ListAPIView):
    permission_classes = [AllowAny]
    serializer_class = s.RegionOut

    def get_queryset(self):
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
        return self.get_paginated_response(s.ListingOut(page, many=True).data)

    @extend_schema(request=s.ListingIn, responses={201: s.ListingOut})
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

    @extend_schema(request=s.RequestIn, responses={201: s.RequestOut})
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


class MatchingRunListView(generics.ListAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = s.MatchingRunOut

    def get_queryset(self):
        validated_query(_NoFilters, self.request)
        return selectors.matching_run_list()
