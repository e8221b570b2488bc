"""Names a party shows to others, and the rules that make them show what they are.

Usernames, organisation names, voucher programme names, sponsors and provinces appear on other
parties' pages, statements and API answers. An outside probe registered ``demo-аdmin`` (a Cyrillic
а), ``ｄｅｍｏ-admin`` (fullwidth), names with a right-to-left override, a zero-width space or a
newline, and markup (issue 14, finding 7). The rules, each raising ``InvalidInput`` naming the field:

- :func:`name_check`: no control characters (NUL, tab, newline…), no invisible formatting
  characters (bidi overrides, isolates and marks; zero-width spaces and joiners; the BOM; the soft
  hyphen), no line or paragraph separators, private-use, unassigned or surrogate code points, no
  letters that render as blank (Hangul fillers, the Braille blank), and no markup (``<``, ``>``).
  Chinese names, and Latin ones with spaces, hyphens, ampersands, parentheses and dots, pass.
- :func:`username_normalise`: usernames are stored NFKC-normalised (``ｄｅｍｏ`` is ``demo``, as
  Django's own forms do it), within ``bounds.USERNAME``.
- :func:`lookalike_check`: a name that looks like one already in use (:func:`skeletons`) is refused, and
  so is a name that mixes Latin letters with a look-alike of a Latin letter from another script.

Each refusal is in the reader's language (``django.utils.translation``: the one Django this module
uses; see the import contract in pyproject.toml).

The look-alike data are Unicode's (``confusables.txt`` and ``Scripts.txt``, UTS #39) as the
``confusable_homoglyphs`` package ships them. The services apply these rules, so the API, the
pages and the admin share them; forms call them too, to show the message beside the field.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

from confusable_homoglyphs import categories, confusables
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from marketplace.bounds import USERNAME
from marketplace.errors import InvalidInput

#: Unicode general categories no name may hold, with what each is called in the error message.
FORBIDDEN_CATEGORIES = {
    "Cc": _("a control character"),
    "Cf": _("an invisible formatting character (bidi control, zero-width character)"),
    "Zl": _("a line separator"),
    "Zp": _("a paragraph separator"),
    "Cs": _("a lone surrogate"),
    "Co": _("a private-use character"),
    "Cn": _("an unassigned code point"),
}
#: Letters and symbols that render as blank space without being spaces.
BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800")
#: Kept out so that no page or e-mail that shows a name can be made to read it as a tag.
MARKUP = frozenset("<>")
#: Scripts whose characters are shared by every script (digits, punctuation, combining marks).
SHARED_SCRIPTS = frozenset({"COMMON", "INHERITED"})


def name_check(value: str, *, field: str) -> str:
    """The name to store (NFC, without surrounding spaces), or ``InvalidInput`` on ``field``
    naming the first character no name may hold."""
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise InvalidInput(gettext("Give a name."), field=field)
    for char in name:
        what = _forbidden(char)
        if what:
            message = gettext("Contains %(char)s, %(what)s: a name must show what it is.")
            raise InvalidInput(message % {"char": _spelled(char), "what": what}, field=field)
    return name


def _forbidden(char: str) -> str | None:
    if char in MARKUP:
        return gettext("markup")
    if char in BLANK_LOOKING:
        return gettext("a character that shows as blank")
    what = FORBIDDEN_CATEGORIES.get(unicodedata.category(char))
    return str(what) if what is not None else None


def _spelled(char: str) -> str:
    code = f"U+{ord(char):04X}"
    name = unicodedata.name(char, "")
    return f"{name} ({code})" if name else code


def username_normalise(value: str) -> str:
    """``value`` NFKC-normalised, or ``InvalidInput`` on ``username`` when the result leaves
    ``bounds.USERNAME`` (NFKC can lengthen a name, or turn a letter into a symbol)."""
    username = unicodedata.normalize("NFKC", value)
    if USERNAME.max_length is not None and len(username) > USERNAME.max_length:
        message = gettext("At most %(count)d characters.") % {"count": USERNAME.max_length}
        raise InvalidInput(message, field="username")
    if USERNAME.pattern and not re.match(USERNAME.pattern, username):
        raise InvalidInput(gettext("Letters, digits and @ . + - _ only."), field="username")
    return username


def lookalike_check(name: str, *, existing: Iterable[str], field: str) -> None:
    """Raise ``InvalidInput`` on ``field`` when ``name`` passes for another: it mixes Latin letters
    with a look-alike of one from another script (``demo-аdmin``), or it looks like a name in
    ``existing`` (:func:`skeletons`: ``dem0-admin``, ``ｄｅｍｏ-admin``, ``DEMO-ADMIN``).

    ``existing`` is every name in use for the same kind of thing, without the one being renamed.
    The cost is one skeleton per existing name, cached per process.
    """
    disguised = _latin_lookalike(name)
    if disguised:
        message = gettext("Mixes Latin letters with %(char)s, which looks like a Latin letter.")
        raise InvalidInput(message % {"char": _spelled(disguised)}, field=field)
    own = skeletons(name)
    for other in existing:
        if any(mine == theirs for mine, theirs in zip(own, skeletons(other), strict=True)):
            message = gettext('Looks like "%(other)s", which is taken: choose a name that does not.')
            raise InvalidInput(message % {"other": other}, field=field)


def distinct_name_check(value: str, *, existing: Iterable[str], field: str) -> str:
    """:func:`name_check`, then :func:`lookalike_check` against ``existing``: the name to store
    of a thing whose name must stand apart from the others of its kind."""
    name = name_check(value, field=field)
    lookalike_check(name, existing=existing, field=field)
    return name


def _latin_lookalike(name: str) -> str | None:
    """The first letter of a non-Latin script that looks like a Latin one, if ``name`` has Latin letters."""
    scripts = {categories.alias(char) for char in name}
    if "LATIN" not in scripts:
        return None
    for char in name:
        if categories.alias(char) not in SHARED_SCRIPTS | {"LATIN"} and _looks_latin(char):
            return char
    return None


@functools.cache
def _looks_latin(char: str) -> bool:
    return bool(confusables.is_confusable(char, preferred_aliases=["latin"]))


@functools.lru_cache(maxsize=100_000)
def skeletons(name: str) -> tuple[str, str]:
    """What ``name`` looks like: two names look alike when either of their skeletons is the same.

    Unicode's skeleton (UTS #39: each character mapped to its prototype, between NFDs) tells
    look-alikes apart by case (``I`` is ``l``, ``i`` is not), and names here are compared without
    case, so there are two: of the name as written (``demo-Iogin`` is ``demo-login``) and of its
    case-folded form (``DEMO-ADMIN`` is ``demo-admin``), each case-folded and skeletoned again (``0``
    is ``O`` is ``o``). Both are of the NFKC form, with runs of spaces as one (pages show one).
    """
    text = unicodedata.normalize("NFKC", name)
    return _folded_skeleton(text), _folded_skeleton(text.casefold())


def _folded_skeleton(text: str) -> str:
    text = _uts39_skeleton(_uts39_skeleton(text).casefold())
    return " ".join(text.split())


def _uts39_skeleton(text: str) -> str:
    mapped = "".join(_prototypes().get(char, char) for char in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", mapped)


@functools.cache
def _prototypes() -> dict[str, str]:
    """Each confusable character's prototype, from the package's copy of ``confusables.txt``.

    The package keeps each line of the file (source → prototype) in both directions, so each set of
    look-alikes is a star: its prototype linked to every source. A character with several
    neighbours is a prototype; one whose only neighbour has several, or is a sequence (``m`` → ``rn``),
    is a source. In a star of two single characters the direction is lost, and the smaller code
    point stands for both, which keeps the two alike. (Checked against ICU 77's skeletons: the same
    sets of look-alikes but for 11 of 3,332, combining-mark cases of newer Unicode data.)
    """
    neighbours: dict[str, list[str]] = {}
    for char, homoglyphs in confusables.confusables_data.items():
        # Right-to-left characters come wrapped in LRMs from how the file displays them.
        key = _unwrapped(char)
        neighbours.setdefault(key, []).extend(_unwrapped(homoglyph["c"]) for homoglyph in homoglyphs)
    prototypes = {}
    for char, linked in neighbours.items():
        linked = list(dict.fromkeys(linked))
        if len(char) != 1 or len(linked) != 1:
            continue
        (other,) = linked
        prototypes[char] = other if len(other) > 1 or len(neighbours.get(other, ())) > 1 else min(char, other)
    return prototypes


def _unwrapped(text: str) -> str:
    return text.replace("\u200e", "").replace("\u200f", "")
