"""A strict Content-Security-Policy for the web pages: scripts, styles and data from this origin
only, no inline code. htmx and Chart.js are served as static files (see ``make assets``).

Applied to views of the ``web`` namespace; the Django admin and the API docs keep their own
defaults (they are not ours to rewrite, and Swagger UI needs inline code).
"""

from __future__ import annotations

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.app_name == "web":
            response.headers.setdefault("Content-Security-Policy", POLICY)
        return response
