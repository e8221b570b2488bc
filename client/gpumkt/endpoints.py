"""Every call the SDK makes, declared once: method, path (the OpenAPI schema's template), the query
parameters and body fields it may send, and how it may be retried. ``Client`` refuses to send
anything else, and ``tests/client/test_schema.py`` holds this table to the server's schema."""

from __future__ import annotations

from dataclasses import dataclass

API_PREFIX = "/api/v1"
#: Answers that mean "not done, try again later": too many requests, and a server the API needs
#: The largest page the API serves (``?page_size=``); lists are read page by page.
PAGE_SIZE = 200

REQUEST_TERMS = (
    "gpu_model",
    "gpus_per_replica",
    "replicas",
    "origin",
    "latency_class",
    "max_rtt_ms",
    "latency_weight",
    "max_price_per_gpu_hour",
    "duration_hours",
    "start_by",
    "voucher_code",
    "interruptible",
)
#: The inference form (docs/inference.md): an LLM at output tokens/s under a TTFT target, instead of a
#: GPU count; the same two operations take it.
INFERENCE_TERMS = (
    "llm_model",
    "output_tokens_per_second",
    "prompt_tokens",
    "output_tokens",
    "ttft_p95_ms",
    "origin",
    "max_price_per_million_tokens",
    "duration_hours",
    "gpu_models",
    "precision",
    "start_by",
    "voucher_code",
)
LISTING_TERMS = (
    "gpu_count",
    "gpus_per_node",
    "price_per_gpu_hour",
    "available_from",
    "available_until",
    "interruptible_floor_price_per_gpu_hour",
)


@dataclass(frozen=True)
class Endpoint:
    """One operation the SDK calls. ``path`` is the schema's template (``{listing_id}``);
    ``creates``: a POST that makes an object, sent with an ``Idempotency-Key``; ``safe``: no side
    effect, so a lost connection is retried."""

    method: str
    path: str
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    creates: bool = False
    safe: bool = False
    paginated: bool = False
    authenticated: bool = True
    #: Filters that a server from before issue 19 does not know (a 400 "Unknown parameter"): the
    #: client then reads the whole list and keeps the items whose field of that name is equal.
    local_filters: tuple[str, ...] = ()

    @property
    def retries_connection_errors(self) -> bool:
        return self.safe or self.creates or self.method in ("PUT", "DELETE")


_PAGES = ("page", "page_size")

ENDPOINTS: dict[str, Endpoint] = {
    "token": Endpoint("POST", "/auth/token/", body=("username", "password"), authenticated=False),
    "capacity": Endpoint("GET", "/capacity/", query=("origin", "gpu_model"), safe=True),
    "listing_list": Endpoint(
        "GET",
        "/listings/",
        query=("region", "gpu_model", "origin", "latency_class", "max_price", "status", "mine", "ordering", *_PAGES),
        safe=True,
        paginated=True,
    ),
    "listing_create": Endpoint("POST", "/listings/", body=("region", "gpu_model", *LISTING_TERMS), creates=True),
    "listing_get": Endpoint("GET", "/listings/{listing_id}/", safe=True),
    "listing_update": Endpoint("PATCH", "/listings/{listing_id}/", body=LISTING_TERMS),
    "listing_withdraw": Endpoint("DELETE", "/listings/{listing_id}/"),
    "listing_guidance": Endpoint("GET", "/listings/{listing_id}/guidance/", safe=True),
    "prices": Endpoint("GET", "/prices/", query=("gpu_model", "origin"), safe=True, authenticated=False),
    "price_history": Endpoint(
        "GET",
        "/prices/history/",
        query=("gpu_model", "region", "hours", *_PAGES),
        safe=True,
        paginated=True,
        authenticated=False,
    ),
    "llm_models": Endpoint("GET", "/llm-models/", query=_PAGES, safe=True, paginated=True, authenticated=False),
    "quote": Endpoint("POST", "/quotes/", body=REQUEST_TERMS, safe=True),
    "request_submit": Endpoint("POST", "/requests/", body=REQUEST_TERMS, creates=True),
    "inference_quote": Endpoint("POST", "/quotes/", body=INFERENCE_TERMS, safe=True),
    "inference_submit": Endpoint("POST", "/requests/", body=(*INFERENCE_TERMS, "workload"), creates=True),
    "request_list": Endpoint(
        "GET", "/requests/", query=("status", *_PAGES), safe=True, paginated=True, local_filters=("status",)
    ),
    "request_get": Endpoint("GET", "/requests/{request_id}/", safe=True),
    "request_cancel": Endpoint("POST", "/requests/{request_id}/cancel/"),
    "match_list": Endpoint(
        "GET",
        "/matches/",
        query=("request", "listing", "status", *_PAGES),
        safe=True,
        paginated=True,
        local_filters=("request", "listing", "status"),
    ),
    "statement": Endpoint("GET", "/statements/", query=("month",), safe=True),
    "statement_csv": Endpoint("GET", "/statements/csv/", query=("month",), safe=True),
    "voucher_claim": Endpoint("POST", "/vouchers/claim/", body=("code",), creates=True),
    "voucher_list": Endpoint("GET", "/vouchers/", query=_PAGES, safe=True, paginated=True),
}
