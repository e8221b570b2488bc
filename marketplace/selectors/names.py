"""The names in use, for the look-alike rule (``marketplace.names.lookalike_check``).

Each is an iterator over one column, read in chunks: the rule compares a new name with every one
in use, so its cost grows with the table (a skeleton per name, cached per process).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.contrib.auth import get_user_model

from marketplace.models import Organisation, VoucherProgram

CHUNK = 2000


def usernames_in_use(*, excluding_id: int | None = None) -> Iterator[str]:
    users = get_user_model().objects.exclude(pk=excluding_id)
    return users.values_list("username", flat=True).iterator(chunk_size=CHUNK)


def organisation_names_in_use(*, excluding_id: int | None = None) -> Iterator[str]:
    organisations = Organisation.objects.exclude(pk=excluding_id)
    return organisations.values_list("name", flat=True).iterator(chunk_size=CHUNK)


def voucher_program_names_in_use(*, excluding_id: int | None = None) -> Iterator[str]:
    programs = VoucherProgram.objects.exclude(pk=excluding_id)
    return programs.values_list("name", flat=True).iterator(chunk_size=CHUNK)
