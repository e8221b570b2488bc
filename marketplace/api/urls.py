from django.urls import path

from marketplace.api import views

urlpatterns = [
    path("auth/register/", views.RegisterView.as_view(), name="register"),
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("regions/", views.RegionListView.as_view(), name="region-list"),
    path("regions/<slug:code>/", views.RegionDetailView.as_view(), name="region-detail"),
    path("gpu-models/", views.GpuModelListView.as_view(), name="gpu-model-list"),
    path("capacity/", views.CapacityView.as_view(), name="capacity"),
    path("listings/", views.ListingListView.as_view(), name="listing-list"),
    path("listings/<int:listing_id>/", views.ListingDetailView.as_view(), name="listing-detail"),
    path("requests/", views.RequestListView.as_view(), name="request-list"),
    path("requests/<int:request_id>/", views.RequestDetailView.as_view(), name="request-detail"),
    path("requests/<int:request_id>/cancel/", views.RequestCancelView.as_view(), name="request-cancel"),
    path("listings/<int:listing_id>/fail-nodes/", views.ListingFailNodesView.as_view(), name="listing-fail-nodes"),
    path("matches/<int:match_id>/cancel/", views.MatchCancelView.as_view(), name="match-cancel"),
    path("statements/", views.StatementView.as_view(), name="statement"),
    path("statements/csv/", views.StatementCsvView.as_view(), name="statement-csv"),
    path("quotes/", views.QuoteView.as_view(), name="quote"),
    path("matches/", views.MatchListView.as_view(), name="match-list"),
    path("matches/<int:match_id>/", views.MatchDetailView.as_view(), name="match-detail"),
    path("vouchers/", views.VoucherListView.as_view(), name="voucher-list"),
    path("vouchers/claim/", views.VoucherClaimView.as_view(), name="voucher-claim"),
    path("voucher-programs/", views.VoucherProgramListView.as_view(), name="voucher-program-list"),
    path("voucher-programs/<int:program_id>/", views.VoucherProgramDetailView.as_view(), name="voucher-program-detail"),
    path("voucher-programs/<int:program_id>/vouchers/", views.VoucherIssueView.as_view(), name="voucher-issue"),
    path("voucher-programs/<int:program_id>/report/", views.VoucherProgramReportView.as_view(), name="voucher-report"),
    path("matching-runs/", views.MatchingRunListView.as_view(), name="matching-run-list"),
]
