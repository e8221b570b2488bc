"""Template tags of the account pages."""

from __future__ import annotations

from django import template
from django.contrib.auth.password_validation import password_validators_help_texts
from django.utils.translation import pgettext_lazy

from marketplace.models.api_keys import Scope
from marketplace.web import formatting

register = template.Library()


@register.simple_tag
def password_rules() -> list[str]:
    """What ``AUTH_PASSWORD_VALIDATORS`` ask of a password, one rule a line, in the reader's
    language (Django ships the Chinese of its own validators' texts)."""
    return password_validators_help_texts()


#: A key's scopes as the pages name them; the API and the stored form keep the codes.
SCOPE_NAMES = {
    Scope.READ.value: pgettext_lazy("API key scope", "read"),
    Scope.TRADE.value: pgettext_lazy("API key scope", "trade"),
    Scope.AGENT.value: pgettext_lazy("API key scope", "agent"),
    Scope.ADMIN.value: pgettext_lazy("API key scope", "admin"),
}


@register.filter
def scope_names(scopes: str) -> str:
    """"read trade" → "read, trade" (in Chinese "只读、交易"): a key's stored scopes for a reader."""
    separator = "、" if formatting.is_chinese() else ", "
    return separator.join(str(SCOPE_NAMES.get(code, code)) for code in scopes.split())
