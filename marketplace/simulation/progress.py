"""A plain-text progress bar on stderr, and the file a child run reports its progress through."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

WIDTH = 30


def bar(fraction: float, width: int = WIDTH) -> str:
    """``[#########.....]  60%`` for ``fraction`` in [0, 1]."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}"


class ProgressBar:
    """Redraws one line in place on a terminal; elsewhere (a log, CI) prints a line per 10 %."""

    def __init__(self, stream: TextIO | None = None, label: str = ""):
        self.stream = stream or sys.stderr
        self.label = label
        self.tty = self.stream.isatty()
        self._last_tenth = -1
        self._last_draw = 0.0

    def __call__(self, done: int, total: int, note: str = "") -> None:
        fraction = done / total if total else 1.0
        line = f"{self.label}{bar(fraction)} {note}"
        if self.tty:
            if time.monotonic() - self._last_draw > 0.1 or done >= total:
                self.stream.write(f"\r{line[:150]:<150}")
                self.stream.flush()
                self._last_draw = time.monotonic()
        elif int(fraction * 10) > self._last_tenth:
            self._last_tenth = int(fraction * 10)
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class ProgressFile:
    """A child run's progress for its parent to read: one line ``done total note``, rewritten."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, done: int, total: int, note: str = "") -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{done} {total} {note}\n", encoding="utf-8")
        tmp.replace(self.path)  # atomic: the parent never reads half a line

    @staticmethod
    def read(path: Path) -> tuple[float, str]:
        """(fraction done, note) from a progress file; (0, "") before the first report."""
        try:
            done, total, note = [*path.read_text(encoding="utf-8").strip().split(" ", 2), ""][:3]
            return int(done) / max(1, int(total)), note
        except (OSError, ValueError):
            return 0.0, ""


def close(progress) -> None:
    """Finish ``progress`` if it has a line to end."""
    if hasattr(progress, "close"):
        progress.close()
