"""The names in use, for the look-alike rule (``marketplace.names.lookalike_check``).

The rule compares a new name with every one in use, so its cost grows with the table (one query,
and a skeleton per name, cached per process). Each selector reads one column whole: a server-side
cursor (``iterator()`` on PostgreSQL) left open by a refusal mid-way would outlive the savepoint
the refusal rolls back, and closing it then would abort the caller's transaction.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from marketplace.models import Organisation, VoucherProgram


def usernames_in_use(*, excluding_id: int | None = None) -> list[str]:
    return list(get_user_model().objects.exclude(pk=excluding_id).values_list("username", flat=True))


def organisation_names_in_use(*, excluding_id: int | None = None) -> list[str]:
    return list(Organisation.objects.exclude(pk=excluding_id).values_list("name", flat=True))


def voucher_program_names_in_use(*, excluding_id: int | None = None) -> list[str]:
    return list(VoucherProgram.objects.exclude(pk=excluding_id).values_list("name", flat=True))
