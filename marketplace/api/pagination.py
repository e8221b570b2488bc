from django.core.paginator import Paginator
from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """``?page=N&page_size=M`` (M from 1; above 200 counts as 200); responses carry ``count``,
    ``next`` and ``previous``. A ``page_size`` that is not a whole number from 1 is a 400, like any
    bad parameter, rather than silently the default; a page past the end is a 404."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdecimal() or int(raw) < 1:
            raise ValidationError({self.page_size_query_param: [_("A whole number from 1.")]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters


class WindowCountPaginator(Paginator):
    """A paginator for searches that count themselves: every row carries ``search_count``, the
    search's ``COUNT(*) OVER ()`` (see ``selectors.listing_search``).

    One query per page instead of a count and a fetch, each compiled from the same (annotated,
    joined) queryset. Only a page with no rows (an empty result, or past the end) costs the plain
    count, which tells an empty first page from a 404.
    """

    def page(self, number):
        try:
            wanted = int(number)
        except (TypeError, ValueError):
            return super().page(number)  # raises PageNotAnInteger
        # SQL offsets are 64-bit: a page beyond them is past the end, and the plain path says so (404).
        if wanted >= 1 and wanted * self.per_page < 2**63:
            bottom = (wanted - 1) * self.per_page
            rows = list(self.object_list[bottom : bottom + self.per_page])
            if rows:
                self.__dict__["count"] = rows[0].search_count  # Paginator.count is a cached_property
                return self._get_page(rows, self.validate_number(wanted), self)
        return super().page(number)


class SearchPagination(Pagination):
    """``Pagination`` for the search endpoints: count and page in one query."""

    django_paginator_class = WindowCountPaginator
