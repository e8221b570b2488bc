"""``Client``: the marketplace's REST API over httpx.

Every call the SDK makes is declared once in ``gpumkt.endpoints.ENDPOINTS`` (method, path, the
query parameters and body fields it may send, whether it creates): the client refuses to send
anything else, and ``tests/client/test_schema.py`` holds the table to the server's OpenAPI schema.

Retries: a 429 or 503 (and, on a creating POST, a 409 saying the first attempt with its key is
still in progress) is retried after the ``Retry-After`` the server sent (else an exponential
backoff), for at most ``max_attempts`` attempts and never a single wait longer than
``max_retry_wait`` seconds; a lost connection or timeout is retried only on calls that are safe to
repeat (reads, and creating POSTs, which carry an ``Idempotency-Key``). A creating POST keeps one
key across all its attempts, so the server creates at most one object and replays its first answer.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from gpumkt import __version__
from gpumkt.endpoints import API_PREFIX, ENDPOINTS, PAGE_SIZE, Endpoint
from gpumkt.errors import ApiError, TransportError
from gpumkt.models import (
    BuyerRequest,
    CapacityRow,
    Guidance,
    Listing,
    LlmModel,
    Match,
    PricePoint,
    Quote,
    RegionPrice,
    Statement,
    Token,
    Voucher,
)

RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENCY_HEADER = "Idempotency-Key"


def retry_after_seconds(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """The answer's ``Retry-After`` in seconds (delta-seconds or an HTTP date), None if absent or
    unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class WaitOutcome:
    """How ``Client.request_wait`` ended: ``matched``, or not with ``reason``."""

    request: BuyerRequest
    matched: bool
    reason: str


class Client:
    """The marketplace's API for one account.

    ``url`` is the server (``https://market.example``); ``key`` an API token, sent as
    ``Authorization: Token <key>`` (None for the calls anyone may make). ``transport`` and
    ``sleep`` are seams: an ``httpx.MockTransport`` for unit tests of the retry logic, and the
    function that waits between attempts.
    """

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        max_attempts: int = 4,
        max_retry_wait: float = 60.0,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.url, self.key = url.rstrip("/"), key
        self.max_attempts, self.max_retry_wait, self.backoff = max_attempts, max_retry_wait, backoff
        self._sleep = sleep
        headers = {"User-Agent": f"gpumkt/{__version__}", "Accept": "application/json"}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # The raw layer: JSON in, JSON out (the CLI's --json prints this).

    def call(
        self,
        name: str,
        *,
        path: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Call the endpoint ``name`` of ``ENDPOINTS``; None values in ``query`` and ``body``
        are left out. A paginated list is read to its end and returned as one list of its
        results. Raises ``ApiError`` on a 4xx/5xx and ``TransportError`` with no answer."""
        endpoint = ENDPOINTS[name]
        try:
            response = self.send(name, path=path, query=query, body=body, idempotency_key=idempotency_key)
        except ApiError as exc:
            local = {k: v for k, v in (query or {}).items() if k in endpoint.local_filters and v is not None}
            if not local or not _unknown_parameters(exc, local):
                raise
            rest = {k: v for k, v in (query or {}).items() if k not in local}
            items = self.call(name, path=path, query=rest)
            return [item for item in items if all(item[k] == v for k, v in local.items())]
        if not endpoint.paginated:
            return response.json() if response.content else None
        return [item for page in self._pages(endpoint, response) for item in page["results"]]

    def send(
        self,
        name: str,
        *,
        path: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """One call of the endpoint ``name`` (with its retries), its successful answer as it came."""
        endpoint = ENDPOINTS[name]
        query = _present(query, endpoint.query, "query parameter", name)
        if endpoint.paginated:
            query.setdefault("page_size", PAGE_SIZE)  # the fewest round trips
        body = _present(body, endpoint.body, "body field", name) if endpoint.method in ("POST", "PATCH") else None
        headers = {}
        if endpoint.authenticated and self.key:
            headers["Authorization"] = f"Token {self.key}"
        if endpoint.creates:
            headers[IDEMPOTENCY_HEADER] = idempotency_key or str(uuid.uuid4())
        url = API_PREFIX + endpoint.path.format(**(path or {}))
        return self._send(endpoint, url, params=query, json=body, headers=headers)

    def _pages(self, endpoint: Endpoint, first: httpx.Response) -> Iterator[dict[str, Any]]:
        page = first.json()
        yield page
        while page.get("next"):
            page = self._send(endpoint, page["next"], params=None, json=None, headers=self._auth()).json()
            yield page

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.key}"} if self.key else {}

    def _send(
        self,
        endpoint: Endpoint,
        url: str,
        *,
        params: dict[str, Any] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        """Send with the retries the module docstring states; the same headers (and so the same
        ``Idempotency-Key``) on every attempt."""
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                response = self._http.request(endpoint.method, url, params=params, json=json, headers=headers)
            except httpx.TransportError as exc:
                if last or not endpoint.retries_connection_errors:
                    raise TransportError(f"{endpoint.method} {self.url}{url}: {exc}") from exc
                self._sleep(self._backoff(attempt))
                continue
            if (response.status_code in RETRY_STATUSES or _key_in_progress(endpoint, response)) and not last:
                wait = retry_after_seconds(response)
                wait = self._backoff(attempt) if wait is None else wait
                if wait <= self.max_retry_wait:
                    self._sleep(wait)
                    continue
            if response.is_error:
                raise ApiError(response.status_code, _body_of(response), method=endpoint.method, url=str(response.url))
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff * float(2 ** (attempt - 1)), self.max_retry_wait)

    # The typed layer.

    def token(self, username: str, password: str) -> str:
        """An API token for ``username`` (``POST /auth/token/``)."""
        return Token.from_json(self.call("token", body={"username": username, "password": password})).token

    def capacity(self, *, origin: str, gpu_model: str | None = None) -> list[CapacityRow]:
        rows = self.call("capacity", query={"origin": origin, "gpu_model": gpu_model})
        return [CapacityRow.from_json(row) for row in rows]

    def listings(self, **filters: Any) -> list[Listing]:
        """The listing search (``region, gpu_model, origin, latency_class, max_price, status,
        mine, ordering``), every page."""
        return [Listing.from_json(item) for item in self.call("listing_list", query=filters)]

    def listing(self, listing_id: int) -> Listing:
        return Listing.from_json(self.call("listing_get", path={"listing_id": listing_id}))

    def listing_create(self, *, idempotency_key: str | None = None, **terms: Any) -> Listing:
        """List capacity: ``region, gpu_model, gpu_count, gpus_per_node, price_per_gpu_hour``
        (decimal strings for prices), optionally ``available_from/until`` (ISO times with offset)."""
        return Listing.from_json(self.call("listing_create", body=terms, idempotency_key=idempotency_key))

    def listing_update(self, listing_id: int, **changes: Any) -> Listing:
        return Listing.from_json(self.call("listing_update", path={"listing_id": listing_id}, body=changes))

    def listing_withdraw(self, listing_id: int) -> Listing:
        return Listing.from_json(self.call("listing_withdraw", path={"listing_id": listing_id}))

    def listing_guidance(self, listing_id: int) -> Guidance:
        """Why the caller's listing is idle and the price that would fill it (its provider only)."""
        return Guidance.from_json(self.call("listing_guidance", path={"listing_id": listing_id}))

    def prices(self, *, gpu_model: str, origin: str) -> list[RegionPrice]:
        """Clearing prices of ``gpu_model`` per region after its latest round, nearest to ``origin`` first."""
        rows = self.call("prices", query={"gpu_model": gpu_model, "origin": origin})
        return [RegionPrice.from_json(row) for row in rows]

    def price_history(self, *, gpu_model: str, region: str, hours: int | None = None) -> list[PricePoint]:
        """One region's clearing prices over the last ``hours`` (the server's default: 24), oldest first."""
        query = {"gpu_model": gpu_model, "region": region, "hours": hours}
        return [PricePoint.from_json(item) for item in self.call("price_history", query=query)]

    def llm_models(self) -> list[LlmModel]:
        """The LLM catalogue the inference form may name."""
        return [LlmModel.from_json(item) for item in self.call("llm_models")]

    def quote(self, **terms: Any) -> Quote:
        """Where the engine would place these request terms now; nothing is written."""
        return Quote.from_json(self.call("quote", body=terms))

    def request_submit(self, *, idempotency_key: str | None = None, **terms: Any) -> BuyerRequest:
        return BuyerRequest.from_json(self.call("request_submit", body=terms, idempotency_key=idempotency_key))

    def inference_quote(self, **terms: Any) -> dict[str, Any]:
        """The inference form's quote (``llm_model, output_tokens_per_second, prompt_tokens,
        output_tokens, ttft_p95_ms, origin, max_price_per_million_tokens, duration_hours``, optionally
        ``gpu_models, precision, start_by, voucher_code``): the placement and the frontier by GPU
        model, as the API's JSON. Nothing is written."""
        answer: dict[str, Any] = self.call("inference_quote", body=terms)
        return answer

    def inference_submit(self, *, idempotency_key: str | None = None, **terms: Any) -> BuyerRequest:
        """Submit demand in the inference form (the terms of :meth:`inference_quote`, plus ``workload``)."""
        return BuyerRequest.from_json(self.call("inference_submit", body=terms, idempotency_key=idempotency_key))

    def request(self, request_id: int) -> BuyerRequest:
        return BuyerRequest.from_json(self.call("request_get", path={"request_id": request_id}))

    def requests(self, *, status: str | None = None) -> list[BuyerRequest]:
        return [BuyerRequest.from_json(item) for item in self.call("request_list", query={"status": status})]

    def request_cancel(self, request_id: int) -> BuyerRequest:
        return BuyerRequest.from_json(self.call("request_cancel", path={"request_id": request_id}))

    def matches(
        self, *, request: int | None = None, listing: int | None = None, status: str | None = None
    ) -> list[Match]:
        """The caller's matches, filtered by request, listing and status."""
        query = {"request": request, "listing": listing, "status": status}
        return [Match.from_json(item) for item in self.call("match_list", query=query)]

    def statement(self, *, month: str | None = None) -> Statement:
        """``month``: YYYY-MM; by default the market's current month."""
        return Statement.from_json(self.call("statement", query={"month": month}))

    def statement_csv(self, *, month: str | None = None) -> str:
        return self.send("statement_csv", query={"month": month}).text

    def voucher_claim(self, code: str, *, idempotency_key: str | None = None) -> Voucher:
        return Voucher.from_json(self.call("voucher_claim", body={"code": code}, idempotency_key=idempotency_key))

    def vouchers(self) -> list[Voucher]:
        return [Voucher.from_json(item) for item in self.call("voucher_list")]

    def request_wait(
        self,
        request_id: int,
        *,
        terms: dict[str, Any] | None = None,
        timeout: float = 120.0,
        interval: float = 1.0,
        on_poll: Callable[[BuyerRequest], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> WaitOutcome:
        """Poll request ``request_id`` until it is matched, cannot be, or ``timeout`` passes.

        It cannot be matched (now) when it was cancelled or expired, when the latest round left it
        out (its ``left_out_reason``), or when the engine, quoting its ``terms`` (the body it was
        submitted with), places none of the replicas still wanted, or fewer once a round has
        partly matched it: the quote's ``unserved_reason`` is the reason. An open request that the
        quote could place waits for a round until the timeout.
        """
        deadline = clock() + timeout
        while True:
            current = self.request(request_id)
            if on_poll is not None:
                on_poll(current)
            outcome = self._wait_outcome(current, terms)
            if outcome is not None:
                return outcome
            if clock() >= deadline:
                reason = f"still {current.status} after {timeout:g} s: no matching round has placed it yet"
                if current.held_until is not None:
                    reason += f" (held for its call: offered to the rounds again at {current.held_until.isoformat()})"
                return WaitOutcome(current, False, reason)
            self._sleep(interval)

    def _wait_outcome(self, current: BuyerRequest, terms: dict[str, Any] | None) -> WaitOutcome | None:
        if current.status == "matched":
            return WaitOutcome(current, True, "")
        if current.status in BuyerRequest.FINAL_STATUSES:
            return WaitOutcome(current, False, f"the request is {current.status}")
        if current.left_out_reason:
            return WaitOutcome(current, False, current.left_out_reason)
        if terms is None:
            return None
        quote = self.quote(**terms)
        wanted = current.replicas - current.matched_replicas
        placed_none = quote.replicas_placed == 0
        if placed_none or (current.status == "partially_matched" and quote.replicas_placed < wanted):
            return WaitOutcome(current, False, quote.unserved_reason or "no listing fits it now")
        return None


def _present(values: dict[str, Any] | None, allowed: tuple[str, ...], what: str, name: str) -> dict[str, Any]:
    """``values`` without its None entries; anything the endpoint does not declare is a bug here."""
    present = {key: value for key, value in (values or {}).items() if value is not None}
    unknown = sorted(set(present) - set(allowed))
    if unknown:
        raise ValueError(f"{name} sends no {what} {', '.join(unknown)} (see gpumkt.endpoints.ENDPOINTS)")
    return present


def _unknown_parameters(error: ApiError, sent: dict[str, Any]) -> bool:
    """Whether ``error`` is the API refusing only query parameters of ``sent`` as unknown."""
    body = error.body
    return (
        error.status == 400
        and isinstance(body, dict)
        and bool(body)
        and all(name in sent and messages == ["Unknown parameter."] for name, messages in body.items())
    )


def _key_in_progress(endpoint: Endpoint, response: httpx.Response) -> bool:
    """A 409 naming the ``Idempotency-Key``: the first attempt with this key is still running on
    the server (a retry came while it worked). Asking again later gets its answer."""
    if not endpoint.creates or response.status_code != 409:
        return False
    body = _body_of(response)
    return isinstance(body, dict) and IDEMPOTENCY_HEADER in body


def _body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
