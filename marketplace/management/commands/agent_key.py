from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from marketplace import selectors, services
from marketplace.errors import DomainError


class Command(BaseCommand):
    help = (
        "Create an API key with the agent scope for USERNAME's provider organisation and print its "
        "secret (only this once), for manage.py provider_agent --key. USERNAME must own the organisation."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True, help="an owner of the provider organisation")
        parser.add_argument("--name", default="provider agent", help='the name of the key (default "provider agent")')

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        organisation = selectors.organisation_of(user)
        if organisation is None or organisation.kind != organisation.Kind.PROVIDER:
            raise CommandError(f"{username!r} is not a member of a provider organisation.")
        try:
            created = services.api_key_create(organisation=organisation, user=user, name=name, scopes=["agent"])
        except DomainError as error:
            raise CommandError(error.message) from None
        self.stdout.write(created.secret)
