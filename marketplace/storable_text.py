"""Text every column can store, and the middleware that refuses any other before a view runs.

PostgreSQL's text columns cannot hold NUL (U+0000), and no UTF-8 column or response can hold a
lone surrogate (U+D800–U+DFFF, which JSON's ``"\\ud800"`` can spell). Either one in a value that
reaches a query was a 500 (``DataError`` / ``UnicodeEncodeError``), on PostgreSQL only: SQLite
stored the NUL. The check here does not depend on the database, so both answer the same 400.

Where each input is checked:

- the path, query string, form bodies and headers: :class:`StorableTextMiddleware`, for the pages,
  the admin and the API alike (a NUL in ``?origin=``, a sign-in form or a session cookie);
- JSON bodies: ``marketplace.api.parsers``, which also bounds their depth.
"""

from __future__ import annotations

import re

from django.http import HttpResponseBadRequest, JsonResponse
from django.utils import translation
from django.utils.translation import gettext as _

#: NUL, and the UTF-16 surrogates: a Python string can hold one alone, UTF-8 (PostgreSQL, SQLite,
#: a JSON answer) cannot.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """What in ``text`` no column can store, in words (``"a NUL character (U+0000)"``), or None."""
    found = UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return _("a NUL character (U+0000)")
    return _("a lone surrogate (U+%(code)s), which is not text") % {"code": f"{ord(found.group()):04X}"}


def shown(text: str) -> str:
    """``text`` as an error message may quote it: unstorable characters written as escapes."""
    return UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def refusal(where: str, text: str) -> str:
    """The message refusing ``text``, found in ``where`` ("The path", "eligible_regions[0]", …)."""
    return _("%(where)s contains %(what)s; no field accepts it.") % {"where": where, "what": unstorable(text)}


class StorableTextMiddleware:
    """Answer 400 naming the input when a path, query parameter, form field or header holds text
    no column can store (:func:`unstorable`), before any view, form or query sees it.

    Under ``/api/`` the answer is the API's error format (``{name: [message]}``); elsewhere a plain
    400. The pages' form bodies are read here (``request.POST``), as Django's CSRF check would read
    them anyway; the API's bodies are its parsers' (``marketplace.api.parsers``): reading a body here
    would take it from DRF, which then could not refuse a media type it does not read (415).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if self.first_refused(request) is None:
            return self.get_response(request)
        # This runs before LocaleMiddleware: the refusal speaks the language that would pick.
        language = translation.get_language_from_request(request)
        with translation.override(language):
            name, message = self.first_refused(request) or ("", "")
        if request.path.startswith("/api/"):
            response = JsonResponse({name: [message]}, status=400, json_dumps_params={"ensure_ascii": False})
        else:
            response = HttpResponseBadRequest(f"{name}: {message}", content_type="text/plain; charset=utf-8")
        response.headers["Content-Language"] = language
        return response

    @staticmethod
    def first_refused(request) -> tuple[str, str] | None:
        """(the input's name, the message) of the first unstorable input, or None."""
        if unstorable(request.path):
            return "path", refusal(_("The path"), request.path)
        for header, value in request.META.items():
            if header.startswith("HTTP_") and isinstance(value, str) and unstorable(value):
                name = header.removeprefix("HTTP_").replace("_", "-").title()
                return shown(name), refusal(_("This header"), value)
        forms = [(_("This query parameter"), request.GET)]
        if request.method == "POST" and not request.path.startswith("/api/"):
            forms.append((_("This form field"), request.POST))
        for kind, form in forms:
            for name, values in form.lists():
                for text in (name, *values):
                    if unstorable(text):
                        return shown(name), refusal(kind, text)
        return None
