from django.contrib.auth import views as auth_views
from django.urls import path

from marketplace.web.views import buyer, monitor, organisation, provider, public

app_name = "web"

urlpatterns = [
    path("", public.board, name="board"),
    path("signin/", auth_views.LoginView.as_view(template_name="web/signin.html"), name="signin"),
    path("password/reset/", public.PasswordReset.as_view(), name="password-reset"),
    path("password/reset/sent/", public.PasswordResetDone.as_view(), name="password-reset-done"),
    path("password/reset/<uidb64>/<token>/", public.PasswordResetConfirm.as_view(), name="password-reset-confirm"),
    path("password/reset/done/", public.PasswordResetComplete.as_view(), name="password-reset-complete"),
    path("signout/", public.SignOut.as_view(), name="signout"),
    path("password/", public.PasswordChange.as_view(), name="password-change"),
    path("signup/", public.sign_up, name="signup"),
    path("me/", public.home_for_user, name="home"),
    path("provider/", provider.dashboard, name="provider"),
    path("provider/listings/new/", provider.listing_new, name="listing-new"),
    path("provider/listings/<int:listing_id>/edit/", provider.listing_edit, name="listing-edit"),
    path("provider/listings/<int:listing_id>/withdraw/", provider.withdraw, name="listing-withdraw"),
    path("provider/listings/<int:listing_id>/guidance/", provider.guidance, name="listing-guidance"),
    path("provider/listings/<int:listing_id>/failed-nodes/", provider.failure_report, name="failure-report"),
    path("provider/promotions/", provider.promotions, name="promotions"),
    path("provider/promotions/<int:program_id>/pause/", provider.promotion_pause, name="promotion-pause"),
    path("buyer/", buyer.dashboard, name="buyer"),
    path("buyer/requests/new/", buyer.request_new, name="request-new"),
    path("buyer/requests/<int:request_id>/cancel/", buyer.cancel, name="request-cancel"),
    path("buyer/quote/", buyer.quote, name="quote"),
    path("buyer/serve/", buyer.serve, name="serve"),
    path("buyer/serve/quote/", buyer.serve_quote, name="serve-quote"),
    path("buyer/live/", buyer.live, name="buyer-live"),
    path("statements/", buyer.statements, name="statements"),
    path("statements/csv/", buyer.statements_csv, name="statements-csv"),
    path("organisation/", organisation.page, name="organisation"),
    path("organisation/keys/", organisation.key_create, name="api-key-create"),
    path("organisation/keys/<int:key_id>/revoke/", organisation.key_revoke, name="api-key-revoke"),
    path("organisation/members/", organisation.member_add, name="member-add"),
    path("organisation/members/<int:member_id>/role/", organisation.member_role, name="member-role"),
    path("organisation/members/<int:member_id>/remove/", organisation.member_remove, name="member-remove"),
    path("organisation/spend-cap/", organisation.spend_cap, name="spend-cap"),
    path("monitor/", monitor.page, name="monitor"),
    path("monitor/live/", monitor.live, name="monitor-live"),
    path("monitor/unserved/", monitor.unserved, name="monitor-unserved"),
    path("monitor/charts.json", monitor.charts, name="monitor-charts"),
]
