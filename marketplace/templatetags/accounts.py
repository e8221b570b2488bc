"""Template tags of the account pages."""

from __future__ import annotations

from django import template
from django.contrib.auth.password_validation import password_validators_help_texts

register = template.Library()


@register.simple_tag
def password_rules() -> list[str]:
    """What ``AUTH_PASSWORD_VALIDATORS`` ask of a password, one rule a line, in the reader's
    language (Django ships the Chinese of its own validators' texts)."""
    return password_validators_help_texts()
