"""``manage.py catalogue``: the translation catalogues, collected, compiled and checked.

- ``manage.py catalogue`` collects every string marked for translation in the pages, forms, e-mails,
  the API's messages and ``config/`` into ``marketplace/locale/{zh_Hans,en}/LC_MESSAGES/django.po``
  (Django's makemessages, keeping what is translated), then compiles the ``.mo`` files the project
  ships (so that a running marketplace needs no gettext).
- ``manage.py catalogue --check`` changes nothing; it fails, listing them, if a marked string is
  missing from the catalogue, a Chinese entry is empty or fuzzy, or a ``.mo`` is older than its
  ``.po``. The test suite runs it (tests/web/test_i18n.py).

Both need GNU gettext (``make tools`` installs it).
"""

from __future__ import annotations

import gettext
import re
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

ESCAPE = re.compile(r"\\(.)")
ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
LOCALES = ["zh_Hans", "en"]
#: The language whose every entry must be translated (English's msgid is its own text).
TRANSLATED = "zh_Hans"
#: Run from the project's root, makemessages walks everything; only marketplace/ and config/ hold
#: strings users see.
IGNORE = [
    ".venv/*", "venv/*", "client/*", "tests/*", "bench/*", "bin/*", "docs/*", "var/*", "artifacts/*",
    "node_modules/*", "marketplace/locale", "marketplace/static/*", "marketplace/migrations/*", "matching/*",
    "*.egg-info/*",
]


def catalogue_path(locale: str, base: Path | None = None) -> Path:
    root = base if base is not None else Path(settings.LOCALE_PATHS[0])
    return root / locale / "LC_MESSAGES" / "django.po"


def read_po(path: Path) -> dict[tuple[str, str], tuple[str, bool]]:
    """(msgctxt, msgid) → (msgstr, fuzzy) of a .po file; plural forms keep their first msgstr."""
    entries: dict[tuple[str, str], tuple[str, bool]] = {}
    fields: dict[str, str] = {}
    current = ""
    fuzzy = False

    def flush() -> None:
        nonlocal fields, fuzzy
        if fields.get("msgid"):
            msgstr = fields.get("msgstr", fields.get("msgstr[0]", ""))
            entries[(fields.get("msgctxt", ""), fields["msgid"])] = (msgstr, fuzzy)
        fields, fuzzy = {}, False

    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            flush()
        elif line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            fields[current] += _unquote(line)
        else:
            key, _, value = line.partition(" ")
            if key == "msgid" and "msgid" in fields:
                flush()
            current = key
            fields[key] = _unquote(value)
    return entries


def _unquote(text: str) -> str:
    body = text.strip()[1:-1]
    return ESCAPE.sub(lambda m: ESCAPES.get(m.group(1), m.group(1)), body)


class Command(BaseCommand):
    help = "Collect and compile the translation catalogues, or (--check) verify they are complete."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--check", action="store_true", help="change nothing; fail on any gap")

    def handle(self, *args: Any, check: bool = False, **options: Any) -> None:
        if check:
            problems = self.problems()
            if problems:
                raise CommandError("the catalogues are not complete:\n  " + "\n  ".join(problems))
            self.stdout.write("catalogues complete")
            return
        self.collect(Path(settings.LOCALE_PATHS[0]))
        call_command("compilemessages", locale=LOCALES, verbosity=0)
        self.stdout.write(f"collected and compiled {', '.join(LOCALES)}")

    def collect(self, locale_root: Path) -> None:
        with override_settings(LOCALE_PATHS=[str(locale_root)]):
            call_command(
                "makemessages", locale=LOCALES, ignore_patterns=IGNORE, no_obsolete=True,
                add_location="file", verbosity=0,
            )

    def problems(self) -> list[str]:
        problems: list[str] = []
        shipped = read_po(catalogue_path(TRANSLATED))
        with tempfile.TemporaryDirectory() as tmp:
            self.collect(Path(tmp))
            marked = read_po(catalogue_path(TRANSLATED, Path(tmp)))
        for key in sorted(set(marked) - set(shipped)):
            problems.append(f"not in the catalogue: {_show(key)}")
        for key, (msgstr, fuzzy) in sorted(shipped.items()):
            if key not in marked:
                continue  # obsolete entries do no harm; `manage.py catalogue` drops them
            if not msgstr:
                problems.append(f"untranslated: {_show(key)}")
            elif fuzzy:
                problems.append(f"fuzzy: {_show(key)}")
        for locale in LOCALES:
            po = catalogue_path(locale)
            mo = po.with_suffix(".mo")
            if not mo.exists():
                problems.append(f"{mo} missing: run `manage.py catalogue`")
                continue
            with mo.open("rb") as handle:
                compiled = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
            for (context, msgid), (msgstr, fuzzy) in read_po(po).items():
                if not msgstr or fuzzy:
                    continue
                key = f"{context}\x04{msgid}" if context else msgid
                got = compiled.get(key, compiled.get((key, 0)))
                if got != msgstr:
                    stale = _show((context, msgid))
                    problems.append(f"{mo.name} of {locale} is stale at {stale}: run `manage.py catalogue`")
                    break
        return problems


def _show(key: tuple[str, str]) -> str:
    context, msgid = key
    return f"[{context}] {msgid!r}" if context else repr(msgid)
