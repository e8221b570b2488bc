"""Webhooks: signatures, SSRF rules, the endpoints API, who gets which event, and real deliveries
to a local HTTP receiver (retries, redelivery, disabling)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from marketplace import services
from marketplace.models import Match, WebhookDelivery, WebhookEndpoint
from marketplace.services.events import EVENT_TYPES, event_publish
from marketplace.services.lifecycle import lifecycle_tick
from marketplace.services.rounds import round_run
from marketplace.services.webhooks import webhook_delivery_attempt, webhook_endpoint_create
from marketplace.tasks import webhook_deliver, webhooks_sweep
from marketplace.webhook_addresses import UnsafeUrl, destination_resolve
from marketplace.webhook_signatures import WebhookVerificationError, secret_generate, signature, verify
from tests.marketplace.webhook_receiver import receiver_running

PUBLIC_URL = "https://93.184.216.34/hooks"  # a public address literal: no DNS needed to check it
ALL_EVENTS = list(EVENT_TYPES)


@pytest.fixture
def local_receivers(settings):
    """The settings a receiver on 127.0.0.1 over http needs (off by default)."""
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
    return settings


def send_due() -> list[WebhookDelivery]:
    """Run the delivery task, as a worker would, for every due delivery, oldest first."""
    due = list(WebhookDelivery.objects.filter(status="pending", next_attempt_at__lte=timezone.now()).order_by("pk"))
    for delivery in due:
        webhook_deliver(delivery.pk)
    return due


# --- signatures ---------------------------------------------------------------------------------

VECTOR = {  # the Standard Webhooks spec's published test vector
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "msg_id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": 1614265330,
    "body": b'{"test": 2432232314}',
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}


def vector_headers(**changes) -> dict[str, str]:
    headers = {
        "webhook-id": VECTOR["msg_id"],
        "webhook-timestamp": str(VECTOR["timestamp"]),
        "webhook-signature": VECTOR["signature"],
    }
    return headers | changes


def test_signing_reproduces_the_spec_test_vector():
    signed = signature(VECTOR["secret"], msg_id=VECTOR["msg_id"], timestamp=VECTOR["timestamp"], body=VECTOR["body"])
    assert signed == VECTOR["signature"]


def test_verify_accepts_the_spec_vector_within_the_tolerance():
    verify(VECTOR["secret"], vector_headers(), VECTOR["body"], now=VECTOR["timestamp"] + 299)
    verify(
        VECTOR["secret"], {k.upper(): v for k, v in vector_headers().items()}, VECTOR["body"], now=VECTOR["timestamp"]
    )


def test_verify_accepts_any_of_several_signatures():
    headers = vector_headers(**{"webhook-signature": f"v1,bm90IGl0 {VECTOR['signature']}"})
    verify(VECTOR["secret"], headers, VECTOR["body"], now=VECTOR["timestamp"])


@pytest.mark.parametrize(
    ("headers", "body", "now"),
    [
        pytest.param(vector_headers(), b'{"test": 2432232315}', VECTOR["timestamp"], id="tampered body"),
        pytest.param(vector_headers(), VECTOR["body"], VECTOR["timestamp"] + 301, id="replayed after 5 minutes"),
        pytest.param(vector_headers(), VECTOR["body"], VECTOR["timestamp"] - 301, id="timestamp from the future"),
        pytest.param(
            vector_headers(**{"webhook-timestamp": str(VECTOR["timestamp"] + 1)}),
            VECTOR["body"],
            VECTOR["timestamp"],
            id="timestamp changed",
        ),
        pytest.param(
            vector_headers(**{"webhook-id": "msg_other"}), VECTOR["body"], VECTOR["timestamp"], id="id changed"
        ),
        pytest.param(
            vector_headers(**{"webhook-signature": "v2," + VECTOR["signature"][3:]}),
            VECTOR["body"],
            VECTOR["timestamp"],
            id="unknown version",
        ),
        pytest.param({"webhook-id": VECTOR["msg_id"]}, VECTOR["body"], VECTOR["timestamp"], id="headers missing"),
    ],
)
def test_verify_refuses_a_tampered_or_replayed_delivery(headers, body, now):
    with pytest.raises(WebhookVerificationError):
        verify(VECTOR["secret"], headers, body, now=now)


def test_verify_refuses_another_endpoints_secret():
    with pytest.raises(WebhookVerificationError):
        verify(secret_generate(), vector_headers(), VECTOR["body"], now=VECTOR["timestamp"])


def test_secrets_are_whsec_and_32_random_bytes():
    first, second = secret_generate(), secret_generate()
    assert first.startswith("whsec_")
    assert first != second
    assert len(first) == len("whsec_") + 44


# --- SSRF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://127.1.2.3:8443/hook",
        "https://10.0.0.5/hook",
        "https://172.16.3.4/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://100.64.0.1/hook",
        "https://224.0.0.1/hook",
        "https://240.0.0.1/hook",
        "https://localhost/hook",
    ],
)
def test_non_public_addresses_are_refused(url):
    with pytest.raises(UnsafeUrl, match="not a public address"):
        destination_resolve(url, allow_http=False, allow_private=False)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://93.184.216.34/hook", "https"),
        ("ftp://93.184.216.34/hook", "https"),
        ("https://user:pw@93.184.216.34/hook", "password"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
    ],
)
def test_urls_that_are_not_https_or_do_not_resolve_are_refused(url, message):
    with pytest.raises(UnsafeUrl, match=message):
        destination_resolve(url, allow_http=False, allow_private=False)


def test_a_public_address_is_pinned_and_the_name_kept_for_host_and_sni():
    destination = destination_resolve("https://93.184.216.34:8443/a?b=1", allow_http=False, allow_private=False)
    assert destination.pinned_url == "https://93.184.216.34:8443/a?b=1"
    assert destination.host_header == "93.184.216.34:8443"
    local = destination_resolve("http://localhost:8080/x", allow_http=True, allow_private=True)
    assert local.address in {"127.0.0.1", "::1"}
    assert local.pinned_url in {"http://127.0.0.1:8080/x", "http://[::1]:8080/x"}
    assert (local.host, local.host_header) == ("localhost", "localhost:8080")


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/x", "https://169.254.169.254/", "https://[::1]/x", "http://93.184.216.34/x"]
)
def test_the_api_refuses_an_unsafe_endpoint_naming_the_url(clients, url):
    response = clients["buyer"].post("/api/v1/webhooks/", {"url": url, "events": ["match.failed"]}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["url"]
    assert not WebhookEndpoint.objects.exists()


def test_a_delivery_is_refused_when_the_host_no_longer_resolves_to_a_public_address(buyer):
    """Checked again at delivery time: a URL (or its DNS) that turned private is never connected to."""
    endpoint = webhook_endpoint_create(organisation=buyer, url=PUBLIC_URL, events=ALL_EVENTS).endpoint
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url="https://127.0.0.1:1/hooks")  # as if rebound
    (delivery_id,) = event_publish("request.matched", buyer.pk, {"request": 1})
    delivery = webhook_delivery_attempt(delivery_id=delivery_id)
    assert delivery is not None
    assert delivery.status == "pending"
    assert delivery.attempts[0]["error"].startswith("refused: The host 127.0.0.1 resolves to 127.0.0.1")


# --- the endpoints API --------------------------------------------------------------------------


def test_an_endpoint_is_created_with_its_secret_shown_once(clients):
    body = {"url": PUBLIC_URL, "events": ["request.matched", "match.failed", "request.matched"]}
    response = clients["buyer"].post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["match.failed", "request.matched"]
    assert created["enabled"] is True
    listed = clients["buyer"].get("/api/v1/webhooks/").json()
    assert listed["count"] == 1
    assert "secret" not in listed["results"][0]
    assert "secret" not in clients["buyer"].get(f"/api/v1/webhooks/{created['id']}/").json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": PUBLIC_URL, "events": ["match.paused"]}, "events"),
        ({"url": PUBLIC_URL, "events": ["request.matched", "no.such"]}, "events"),
        ({"url": PUBLIC_URL, "events": []}, "events"),
        ({"url": PUBLIC_URL}, "events"),
        ({"url": "not a url", "events": ["match.failed"]}, "url"),
        ({"url": "https://x.example/" + "a" * 500, "events": ["match.failed"]}, "url"),
    ],
)
def test_bad_endpoint_input_is_a_400_naming_the_field(clients, body, field):
    response = clients["buyer"].post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_an_endpoint_is_changed_disabled_enabled_and_deleted(clients):
    created = clients["buyer"].post("/api/v1/webhooks/", {"url": PUBLIC_URL, "events": ["match.failed"]}, format="json")
    url = f"/api/v1/webhooks/{created.json()['id']}/"
    changed = clients["buyer"].patch(url, {"events": ["match.completed"], "enabled": False}, format="json").json()
    assert changed["events"] == ["match.completed"]
    assert changed["enabled"] is False
    assert changed["disabled_reason"] == "disabled by its organisation"
    assert clients["buyer"].patch(url, {"enabled": True}, format="json").json()["enabled"] is True
    assert clients["buyer"].patch(url, {"url": "https://10.0.0.1/"}, format="json").status_code == 400
    assert clients["buyer"].delete(url).status_code == 204
    assert clients["buyer"].get(url).status_code == 404


def test_api_keys_read_endpoints_with_read_and_manage_them_only_with_admin(clients, buyer):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    owner = get_user_model().objects.get(username="buy")
    webhook_endpoint_create(organisation=buyer, url=PUBLIC_URL, events=ALL_EVENTS)

    def client_with(*scopes: str) -> APIClient:
        secret = services.api_key_create(
            organisation=buyer, user=owner, name="-".join(scopes), scopes=list(scopes)
        ).secret
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
        return client

    body = {"url": PUBLIC_URL, "events": ["match.failed"]}
    reader, trader, admin = client_with("read"), client_with("read", "trade"), client_with("admin")
    assert reader.get("/api/v1/webhooks/").status_code == 200
    assert reader.post("/api/v1/webhooks/", body, format="json").status_code == 403
    assert trader.post("/api/v1/webhooks/", body, format="json").status_code == 403
    assert admin.get("/api/v1/webhooks/").status_code == 403  # admin alone does not read
    assert admin.post("/api/v1/webhooks/", body, format="json").status_code == 201


# --- who gets which event -----------------------------------------------------------------------


@pytest.fixture
def every_party_listens(provider, other_provider, buyer, other_buyer):
    return {
        name: webhook_endpoint_create(organisation=org, url=PUBLIC_URL, events=ALL_EVENTS).endpoint
        for name, org in (
            ("provider", provider),
            ("other_provider", other_provider),
            ("buyer", buyer),
            ("other_buyer", other_buyer),
        )
    }


def events_of(endpoint: WebhookEndpoint) -> list[str]:
    return list(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("pk").values_list("event_type", flat=True))


def test_each_event_reaches_only_the_party_it_concerns(every_party_listens, make_listing, make_request, now):
    listing = make_listing(gpu_count=8)
    request = make_request(replicas=2)
    round_run(shard="h20", trigger="manual")
    lifecycle_tick(now=now + timedelta(hours=1))  # starts the match
    Match.objects.filter(request=request).update(ends_at=now + timedelta(hours=2))
    lifecycle_tick(now=now + timedelta(hours=3))  # completes it
    assert events_of(every_party_listens["buyer"]) == ["request.matched", "match.running", "match.completed"]
    assert events_of(every_party_listens["provider"]) == ["listing.idle", "match.running", "match.completed"]
    assert events_of(every_party_listens["other_buyer"]) == []
    assert events_of(every_party_listens["other_provider"]) == []
    idle = WebhookDelivery.objects.get(endpoint=every_party_listens["provider"], event_type="listing.idle")
    assert idle.payload["data"] | {"run": None} == {
        "listing": listing.pk,
        "gpu_model": "h20",
        "region": "ningxia-zhongwei",
        "gpu_count": 8,
        "idle_gpus": 6,
        "run": None,
    }
    matched = WebhookDelivery.objects.get(endpoint=every_party_listens["buyer"], event_type="request.matched")
    assert matched.payload["type"] == "request.matched"
    assert matched.payload["data"]["request"] == request.pk
    assert matched.payload["data"]["matched_replicas"] == 2


def test_a_failed_match_tells_its_buyer_and_provider(every_party_listens, make_listing, make_request, provider, now):
    listing = make_listing(gpu_count=8)
    make_request(replicas=1, gpus_per_replica=8)
    round_run(shard="h20", trigger="manual")
    services.listing_nodes_fail(listing_id=listing.pk, provider=provider, nodes=[0])
    assert events_of(every_party_listens["buyer"])[-1] == "match.failed"
    assert events_of(every_party_listens["provider"])[-1] == "match.failed"
    assert "match.failed" not in events_of(every_party_listens["other_buyer"]) + events_of(
        every_party_listens["other_provider"]
    )


def test_lasting_states_are_announced_once(every_party_listens, make_listing, make_request):
    make_listing(gpu_count=8)
    make_request(replicas=1, max_price_per_gpu_hour=Decimal("1.00"))  # too cheap for the listing
    for _ in range(3):
        round_run(shard="h20", trigger="manual")
    assert events_of(every_party_listens["buyer"]) == ["request.unserved"]
    assert events_of(every_party_listens["provider"]) == ["listing.idle"]


def test_a_falling_programme_budget_tells_its_sponsor_once(
    every_party_listens, make_listing, make_request, provider, buyer, now
):
    program = services.voucher_program_create(
        name="Zhongwei launch offer",
        sponsor=provider.name,
        sponsor_provider=provider,
        percent=Decimal(50),
        budget=Decimal(100),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
    )
    (voucher,) = services.vouchers_issue(program_id=program.pk, sponsor_provider=provider, count=1)
    services.voucher_claim(code=voucher.code, buyer=buyer)
    make_listing(gpu_count=16)
    make_request(replicas=1, voucher_code=voucher.code)
    make_request(replicas=1, voucher_code=voucher.code)
    round_run(shard="h20", trigger="manual")
    provider_events = events_of(every_party_listens["provider"])
    assert provider_events.count("voucher_program.budget_low") == 1
    low = WebhookDelivery.objects.get(endpoint=every_party_listens["provider"], event_type="voucher_program.budget_low")
    assert low.payload["data"]["voucher_program"] == program.pk
    assert Decimal(low.payload["data"]["remaining_budget"]) < Decimal(10)
    assert "voucher_program.budget_low" not in events_of(every_party_listens["other_provider"])


def test_an_endpoint_gets_only_the_events_it_subscribed_to(buyer):
    endpoint = webhook_endpoint_create(organisation=buyer, url=PUBLIC_URL, events=["match.failed"]).endpoint
    event_publish("request.matched", buyer.pk, {"request": 1})
    event_publish("match.failed", buyer.pk, {"match": 1})
    assert events_of(endpoint) == ["match.failed"]


# --- live deliveries to a local receiver --------------------------------------------------------


def test_a_local_receiver_gets_a_real_rounds_events_signed_and_in_order(
    local_receivers, buyer, provider, make_listing, make_request, now
):
    with receiver_running() as receiver:
        created = webhook_endpoint_create(organisation=buyer, url=receiver.url, events=ALL_EVENTS)
        foreign = webhook_endpoint_create(
            organisation=provider, url=receiver.url + "/provider", events=["match.running"]
        )
        make_listing(gpu_count=8)
        request = make_request(replicas=1)
        round_run(shard="h20", trigger="manual")
        lifecycle_tick(now=now + timedelta(hours=1))
        sent = send_due()
    buyer_received = [r for r in receiver.received if r.path == "/hooks/market"]
    assert len(sent) == 3
    assert len(receiver.received) == 3
    types = []
    for item in buyer_received:
        verify(created.secret, item.headers, item.body)  # raises unless signed with the buyer's secret
        with pytest.raises(WebhookVerificationError):
            verify(foreign.secret, item.headers, item.body)
        assert item.headers["content-type"] == "application/json"
        assert item.headers["host"] == receiver.url.split("/")[2]
        types.append(json.loads(item.body)["type"])
    assert types == ["request.matched", "match.running"]
    assert json.loads(buyer_received[0].body)["data"]["request"] == request.pk
    log = WebhookDelivery.objects.filter(endpoint=created.endpoint).order_by("pk")
    assert [d.status for d in log] == ["succeeded", "succeeded"]
    assert [d.attempts[0]["status_code"] for d in log] == [200, 200]
    assert buyer_received[0].headers["webhook-id"] == log[0].event_id


def test_a_failing_receiver_gets_retries_with_growing_delays_until_it_answers(local_receivers, buyer):
    local_receivers.WEBHOOKS_RETRY_SCHEDULE_SECONDS = [5, 300, 1800, 7200]
    with receiver_running(statuses=[500, 500, 503, 200]) as receiver:
        endpoint = webhook_endpoint_create(organisation=buyer, url=receiver.url, events=ALL_EVENTS).endpoint
        (delivery_id,) = event_publish("match.failed", buyer.pk, {"match": 7})
        for _ in range(4):
            webhook_deliver(delivery_id)
            assert webhook_delivery_attempt(delivery_id=delivery_id) is None  # not due again yet: no double send
            WebhookDelivery.objects.filter(pk=delivery_id, status="pending").update(next_attempt_at=timezone.now())
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "succeeded"
    assert delivery.attempt_count == 4
    assert [a["status_code"] for a in delivery.attempts] == [500, 500, 503, 200]
    delays = [
        (datetime.fromisoformat(a["next_attempt_at"]) - datetime.fromisoformat(a["at"])).total_seconds()
        for a in delivery.attempts[:3]
    ]
    assert all(wanted <= delay < wanted + 5 for delay, wanted in zip(delays, [5, 300, 1800], strict=True))
    assert delivery.attempts[3]["next_attempt_at"] is None
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # one event, four attempts
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None  # the success forgot the failures


def test_a_delivery_fails_for_good_when_the_schedule_is_spent(local_receivers, buyer):
    local_receivers.WEBHOOKS_RETRY_SCHEDULE_SECONDS = [0, 0]
    with receiver_running(statuses=[500]) as receiver:
        webhook_endpoint_create(organisation=buyer, url=receiver.url, events=ALL_EVENTS)
        (delivery_id,) = event_publish("match.failed", buyer.pk, {"match": 7})
        for _ in range(5):
            webhook_deliver(delivery_id)
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempt_count, len(receiver.received)) == ("failed", 3, 3)


def test_the_sweep_sends_a_delivery_whose_message_was_lost(local_receivers, buyer):
    with receiver_running() as receiver:
        webhook_endpoint_create(organisation=buyer, url=receiver.url, events=ALL_EVENTS)
        (delivery_id,) = event_publish("match.failed", buyer.pk, {"match": 7})  # its on-commit task never runs
        from celery import current_app

        current_app.conf.task_always_eager = True
        try:
            assert webhooks_sweep() == 1
        finally:
            current_app.conf.task_always_eager = False
        assert webhooks_sweep() == 0
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "succeeded"
    assert len(receiver.received) == 1


def test_deliveries_are_enqueued_only_when_their_transaction_commits(buyer, django_capture_on_commit_callbacks):
    webhook_endpoint_create(organisation=buyer, url=PUBLIC_URL, events=ALL_EVENTS)
    with django_capture_on_commit_callbacks() as callbacks:
        event_publish("match.failed", buyer.pk, {"match": 7})
    assert len(callbacks) == 1  # one enqueue of the delivery, after commit; none before


def test_a_delivery_is_redelivered_by_hand_with_the_same_event_id(local_receivers, clients, buyer):
    with receiver_running(statuses=[200]) as receiver:
        created = webhook_endpoint_create(organisation=buyer, url=receiver.url, events=ALL_EVENTS)
        (delivery_id,) = event_publish("match.completed", buyer.pk, {"match": 9})
        webhook_deliver(delivery_id)
        base = f"/api/v1/webhooks/{created.endpoint.pk}/deliveries/"
        response = clients["buyer"].post(f"{base}{delivery_id}/redeliver/")
        assert response.status_code == 202, response.content
        send_due()
        assert clients["other_buyer"].post(f"{base}{delivery_id}/redeliver/").status_code == 404
    assert [r.headers["webhook-id"] for r in receiver.received] == [
        WebhookDelivery.objects.get(pk=delivery_id).event_id
    ] * 2
    log = clients["buyer"].get(base).json()
    assert log["count"] == 2
    assert [item["status"] for item in log["results"]] == ["succeeded", "succeeded"]
    assert log["results"][0]["attempts"][0]["status_code"] == 200


def test_an_endpoint_failing_for_a_day_is_disabled_and_its_owners_emailed(
    local_receivers, clients, buyer, django_capture_on_commit_callbacks
):
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="buy").update(email="ops@huangpu.example")
    with receiver_running(statuses=[500]) as receiver:
        endpoint = webhook_endpoint_create(organisation=buyer, url=receiver.url, events=ALL_EVENTS).endpoint
        first, second = (event_publish("match.failed", buyer.pk, {"match": n})[0] for n in (1, 2))
        a_day_ago = timezone.now() - timedelta(hours=24, seconds=1)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=a_day_ago)
        with django_capture_on_commit_callbacks(execute=True):  # the e-mail goes after commit
            webhook_deliver(first)
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None
    assert "every delivery failed since" in endpoint.disabled_reason
    assert (
        list(WebhookDelivery.objects.filter(pk__in=[first, second]).values_list("status", flat=True)) == ["failed"] * 2
    )
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@huangpu.example"]
    assert receiver.url in mail.outbox[0].body
    assert event_publish("match.failed", buyer.pk, {"match": 3}) == []  # nothing is written for it now
    response = clients["buyer"].post(f"/api/v1/webhooks/{endpoint.pk}/deliveries/{first}/redeliver/")
    assert response.status_code == 409
    assert "enabled" in response.json()


def test_a_slow_receiver_times_out_as_a_failed_attempt(local_receivers, buyer, settings):
    import socket

    settings.WEBHOOKS_TIMEOUT_SECONDS = 1
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        webhook_endpoint_create(organisation=buyer, url=url, events=ALL_EVENTS)
        (delivery_id,) = event_publish("match.failed", buyer.pk, {"match": 1})
        started = time.monotonic()
        webhook_deliver(delivery_id)
        assert time.monotonic() - started < 5
    finally:
        silent.close()
    attempt = WebhookDelivery.objects.get(pk=delivery_id).attempts[0]
    assert "Timeout" in attempt["error"]
    assert "status_code" not in attempt


def test_an_https_delivery_connects_to_the_checked_address_and_verifies_the_certificate_by_name(
    local_receivers, buyer, tmp_path, monkeypatch
):
    """The pinned connection goes to the resolved address but sends the name as SNI and checks the
    certificate against the name: a certificate for ``localhost`` is accepted at https://localhost,
    and refused when the URL names the bare address instead."""
    import shutil
    import socket
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # httpx trusts it as it would a public CA
    address = destination_resolve("https://localhost/", allow_http=False, allow_private=True).address
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # http.server calls it by this name
            self.rfile.read(int(self.headers["content-length"]))
            seen.append(self.headers["host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    server = Server((address, 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    host = f"[{address}]" if ":" in address else address
    try:
        by_name = webhook_endpoint_create(organisation=buyer, url=f"https://localhost:{port}/h", events=ALL_EVENTS)
        (first,) = event_publish("match.failed", buyer.pk, {"match": 1})
        webhook_deliver(first)
        WebhookEndpoint.objects.filter(pk=by_name.endpoint.pk).update(url=f"https://{host}:{port}/h")
        (second,) = event_publish("match.failed", buyer.pk, {"match": 2})
        webhook_deliver(second)
    finally:
        server.shutdown()
        server.server_close()
    assert WebhookDelivery.objects.get(pk=first).attempts[0]["status_code"] == 204
    assert seen == [f"localhost:{port}"]
    assert "CERTIFICATE_VERIFY_FAILED" in WebhookDelivery.objects.get(pk=second).attempts[0]["error"]
