from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from marketplace.health import healthz
from marketplace.metrics.view import metrics

# Under /api/, Django's own 400, 403, 404 and 500 answer JSON like every API error; elsewhere, our pages.
handler400 = "marketplace.api.errors.bad_request"
handler403 = "marketplace.api.errors.permission_denied"
handler404 = "marketplace.api.errors.not_found"
handler500 = "marketplace.api.errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("marketplace.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    # set_language: the pages' 中文/English switch (POST, stored in a cookie).
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("marketplace.web.urls")),
]
