from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from cdp.api.errors import not_found

# The schema and its docs are public: they describe the API, they expose no data.
PUBLIC = {"authentication_classes": [], "permission_classes": [AllowAny], "throttle_classes": []}

handler404 = "cdp.api.errors.not_found"
handler500 = "cdp.api.errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/schema/", SpectacularAPIView.as_view(**PUBLIC), name="schema"),
    path("v1/docs/", SpectacularSwaggerView.as_view(url_name="schema", **PUBLIC), name="docs"),
    path("v1/", include("cdp.ingestion.api.urls")),
    path("v1/", include("identity.api.urls")),
    path("v1/", include("consent.api.urls")),
    path("v1/", include("segments.api.urls")),
    # Unknown API routes answer with the error body even when DEBUG shows HTML pages elsewhere.
    re_path(r"^v1/", not_found, {"exception": None}, name="v1-not-found"),
]
