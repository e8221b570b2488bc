"""``manage.py names_check``: which stored names break today's name rules (``marketplace.names``).

The rules refuse new names with markup (``<``, ``>``) or control, invisible and other category C*
characters; rows stored before a rule existed are left as they are (pages escape them). This lists
them, so an operator can ask their owners to rename them, and exits 1 when there are any. It reads
only: nothing is rewritten.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from marketplace import names, selectors
from marketplace.errors import DomainError


class Command(BaseCommand):
    help = (
        "List stored organisation names, usernames, API key names and voucher programme names that "
        "today's name rules would refuse (markup, control or invisible characters). Changes nothing; "
        "exits 1 if there are any."
    )

    def handle(self, *args, **options):
        found = 0
        for what, pk, name in selectors.stored_names():
            try:
                names.name_check(name, field="name")
            except DomainError as error:
                found += 1
                self.stdout.write(f"{what} {pk} {name!r}: {error.message}")
        if found:
            raise CommandError(f"{found} stored names break the name rules (listed above); nothing was changed.")
        self.stdout.write("Every stored name follows the name rules.")
