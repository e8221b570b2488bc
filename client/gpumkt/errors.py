"""What a failed call raises: the API's answer, or the reason none came."""

from __future__ import annotations

from typing import Any


class GpumktError(Exception):
    """Base of the SDK's errors."""


class ApiError(GpumktError):
    """The API answered with a 4xx or 5xx. ``body`` is its JSON (``{field: [message]}`` or
    ``{"detail": …}``), or the text when it was not JSON."""

    def __init__(self, status: int, body: Any, *, method: str, url: str) -> None:
        self.status, self.body, self.method, self.url = status, body, method, url
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The status, then the ``detail`` or one line per field at fault (``field: message``), as
        the API said it."""
        lines = error_lines(self.body)
        if len(lines) == 1:
            return f"HTTP {self.status}: {lines[0]}"
        return f"HTTP {self.status}:\n" + "\n".join(f"  {line}" for line in lines)


class TransportError(GpumktError):
    """No answer: the server could not be reached (after the retries an idempotent call gets)."""


def error_lines(body: Any, prefix: str = "") -> list[str]:
    """The API's error body as lines: ``detail`` alone, each field's messages after its name
    (nested fields as ``field.sub``), anything else as it is."""
    if isinstance(body, dict):
        if set(body) == {"detail"}:
            return [f"{prefix}{body['detail']}"]
        lines: list[str] = []
        for field, messages in body.items():
            name = f"{prefix}{field}"
            if isinstance(messages, dict):
                lines += error_lines(messages, prefix=f"{name}.")
            elif isinstance(messages, list):
                lines += [f"{name}: {m}" if not isinstance(m, dict | list) else f"{name}: {m!r}" for m in messages]
            else:
                lines.append(f"{name}: {messages}")
        return lines or ["(empty error body)"]
    if isinstance(body, list):
        return [str(item) for item in body] or ["(empty error body)"]
    text = str(body).strip()
    return [text[:500] if text else "(no body)"]
