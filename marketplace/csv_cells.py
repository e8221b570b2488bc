"""CSV that a spreadsheet opens as data, never as formulas (CSV injection, per OWASP).

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets: a programme named ``=HYPERLINK("http://…","claim")`` became
a live link in every buyer's and provider's statement. Such a cell is written with a leading
apostrophe (``'=HYPERLINK(…)``), which spreadsheets show as the text itself.

Numbers stay numbers: a cell that is a plain decimal (``-12.5000``: an optional minus, digits, an
optional fraction, nothing else) is written as it is, so a negative amount still sums. Every other
cell is treated as text, whatever its column, so a new column cannot forget the rule.

Every CSV the project writes goes through :func:`writer`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

#: What makes a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def cell(value: Any) -> Any:
    """``value`` as a CSV cell no spreadsheet runs: text that would start a formula gets a leading
    apostrophe; numbers, and text that is a plain decimal, are left as they are."""
    if value is None or isinstance(value, int | float | Decimal):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not PLAIN_DECIMAL.fullmatch(text):
        return "'" + text
    return text


class FormulaSafeWriter:
    """``csv.writer`` whose every cell goes through :func:`cell`."""

    def __init__(self, file, **fmtparams):
        self._writer = csv.writer(file, **fmtparams)

    def writerow(self, row: Iterable[Any]):
        return self._writer.writerow([cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(file, **fmtparams) -> FormulaSafeWriter:
    """A CSV writer on ``file`` (``csv.writer``'s arguments) whose cells never run as formulas."""
    return FormulaSafeWriter(file, **fmtparams)
