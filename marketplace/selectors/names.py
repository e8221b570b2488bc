"""The names in use, for the look-alike rule (``marketplace.names.lookalike_check``).

The rule compares a new name with every one in use, so its cost grows with the table (one query,
and a skeleton per name, cached per process). Each selector reads one column whole: a server-side
cursor (``iterator()`` on PostgreSQL) left open by a refusal mid-way would outlive the savepoint
the refusal rolls back, and closing it then would abort the caller's transaction.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Model, QuerySet

from marketplace.models import ApiKey, Organisation, VoucherProgram


def usernames_in_use(*, excluding_id: int | None = None) -> list[str]:
    return _column(get_user_model().objects.all(), "username", excluding_id)


def organisation_names_in_use(*, excluding_id: int | None = None) -> list[str]:
    return _column(Organisation.objects.all(), "name", excluding_id)


def voucher_program_names_in_use(*, excluding_id: int | None = None) -> list[str]:
    return _column(VoucherProgram.objects.all(), "name", excluding_id)


def _column(rows: QuerySet[Model], column: str, excluding_id: int | None) -> list[str]:
    if excluding_id is not None:
        rows = rows.exclude(pk=excluding_id)
    return list(rows.values_list(column, flat=True))


#: The names ``manage.py names_check`` reads: (what, model, column) of each stored name shown to people.
STORED_NAMES = (
    ("organisation", Organisation, "name"),
    ("username", get_user_model(), "username"),
    ("api key", ApiKey, "name"),
    ("voucher programme", VoucherProgram, "name"),
)


def stored_names() -> list[tuple[str, int, str]]:
    """Every stored name of :data:`STORED_NAMES` as ``(what, id, name)``: one query per column."""
    return [
        (what, pk, name)
        for what, model, column in STORED_NAMES
        for pk, name in model.objects.order_by("pk").values_list("pk", column)
    ]
