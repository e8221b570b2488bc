from django.urls import path

from marketplace.api import accounts, listings, matches, quotes, reference, requests, runs, statements, vouchers

urlpatterns = [
    path("auth/register/", accounts.RegisterView.as_view(), name="register"),
    path("auth/token/", accounts.TokenView.as_view(), name="token"),
    path("regions/", reference.RegionListView.as_view(), name="region-list"),
    path("regions/<slug:code>/", reference.RegionDetailView.as_view(), name="region-detail"),
    path("gpu-models/", reference.GpuModelListView.as_view(), name="gpu-model-list"),
    path("capacity/", reference.CapacityView.as_view(), name="capacity"),
    path("listings/", listings.ListingListView.as_view(), name="listing-list"),
    path("listings/<int:listing_id>/", listings.ListingDetailView.as_view(), name="listing-detail"),
    path("requests/", requests.RequestListView.as_view(), name="request-list"),
    path("requests/<int:request_id>/", requests.RequestDetailView.as_view(), name="request-detail"),
    path("requests/<int:request_id>/cancel/", requests.RequestCancelView.as_view(), name="request-cancel"),
    path("listings/<int:listing_id>/fail-nodes/", listings.ListingFailNodesView.as_view(), name="listing-fail-nodes"),
    path("matches/<int:match_id>/cancel/", matches.MatchCancelView.as_view(), name="match-cancel"),
    path("statements/", statements.StatementView.as_view(), name="statement"),
    path("statements/csv/", statements.StatementCsvView.as_view(), name="statement-csv"),
    path("quotes/", quotes.QuoteView.as_view(), name="quote"),
    path("matches/", matches.MatchListView.as_view(), name="match-list"),
    path("matches/<int:match_id>/", matches.MatchDetailView.as_view(), name="match-detail"),
    path("vouchers/", vouchers.VoucherListView.as_view(), name="voucher-list"),
    path("vouchers/claim/", vouchers.VoucherClaimView.as_view(), name="voucher-claim"),
    path("voucher-programs/", vouchers.VoucherProgramListView.as_view(), name="voucher-program-list"),
    path(
        "voucher-programs/<int:program_id>/",
        vouchers.VoucherProgramDetailView.as_view(),
        name="voucher-program-detail",
    ),
    path("voucher-programs/<int:program_id>/vouchers/", vouchers.VoucherIssueView.as_view(), name="voucher-issue"),
    path(
        "voucher-programs/<int:program_id>/report/",
        vouchers.VoucherProgramReportView.as_view(),
        name="voucher-report",
    ),
    path("matching-runs/", runs.MatchingRunListView.as_view(), name="matching-run-list"),
]
