"""The reference provider agent: the provider's side of the agent API, over HTTP.

Every ``--interval`` seconds it sends a heartbeat (every node ``ok``) for each listing it serves,
reads its assignments, and says ready for each reserved match it saw on the previous pass (one pass
stands in for provisioning), with an example endpoint under ``.invalid`` (a name that never
resolves). After ``--fail-after`` seconds it stops heartbeating and keeps running silent, as a
hung host would: the marketplace then fails its nodes and the matches on them fail over.

It talks to the marketplace only through the public API (httpx), as a provider's own daemon
would; nothing here touches the database.
"""

from __future__ import annotations

import logging
import os
import time

import httpx
from django.core.management.base import BaseCommand, CommandError

API = "/api/v1"


def example_endpoint(*, region: str, match_id: int) -> str:
    """A clearly-example https URL for a ready match (``.invalid`` never resolves, RFC 2606)."""
    return f"https://{region}.example-provider.invalid/v1/matches/{match_id}"


class Agent:
    """One agent process: ``listings`` (None: every active listing of the key's provider)."""

    def __init__(self, *, client: httpx.Client, listings: list[int] | None, log):
        self.client, self.wanted, self.log = client, listings, log
        self.seen_reserved: set[int] = set()
        self.ready: set[int] = set()

    def pages(self, path: str, params: dict | None = None) -> list[dict]:
        results, url, query = [], f"{API}{path}", {"page_size": 200, **(params or {})}
        while url:
            response = self.client.get(url, params=query)
            response.raise_for_status()
            body = response.json()
            results += body["results"]
            url, query = body["next"], None
        return results

    def listings(self) -> list[dict]:
        mine = self.pages("/agent/listings/")
        return [listing for listing in mine if self.wanted is None or listing["id"] in self.wanted]

    def heartbeat(self, listing: dict) -> None:
        nodes = {str(node): "ok" for node in range(listing["node_count"])}
        response = self.client.post(f"{API}/agent/heartbeats/", json={"listing": listing["id"], "nodes": nodes})
        if response.status_code != 200:
            self.log(f"heartbeat for listing {listing['id']}: {response.status_code} {response.text[:200]}")

    def provision(self, listing_ids: list[int]) -> None:
        """Say ready for each reserved match seen on the previous pass; remember the new ones."""
        assignments = [a for a in self.pages("/agent/assignments/") if a["listing"] in listing_ids]
        reserved = {a["id"]: a for a in assignments if a["status"] == "reserved"}
        for match_id, assignment in sorted(reserved.items()):
            if match_id not in self.seen_reserved:
                self.log(f"match {match_id}: provisioning {assignment['gpus']} GPUs on nodes {assignment['nodes']}")
                continue
            endpoint = example_endpoint(region=assignment["region"], match_id=match_id)
            response = self.client.post(
                f"{API}/agent/matches/{match_id}/ready/", json={"endpoint": endpoint, "note": "reference agent"}
            )
            self.log(f"match {match_id}: ready at {endpoint} → {response.status_code}")
        self.seen_reserved = set(reserved)

    def tick(self, *, heartbeats: bool) -> None:
        listings = self.listings()
        if heartbeats:
            for listing in listings:
                self.heartbeat(listing)
        self.provision([listing["id"] for listing in listings])


class Command(BaseCommand):
    help = (
        "Run the reference provider agent: heartbeats for a listing's nodes, ready (with an example "
        "endpoint) for its matches; --fail-after S stops the heartbeats to show failover."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--listing", type=int, action="append", help="a listing to serve (repeatable; default: all active)"
        )
        parser.add_argument("--url", default=os.environ.get("GPUMKT_URL", "http://127.0.0.1:8000"))
        parser.add_argument("--key", default=os.environ.get("GPUMKT_AGENT_KEY"), help="API key with the agent scope")
        parser.add_argument("--interval", type=float, default=15.0, help="seconds between passes (default 15)")
        parser.add_argument("--fail-after", type=float, default=None, help="stop heartbeating after S seconds")
        parser.add_argument("--passes", type=int, default=None, help="stop after N passes (default: run until killed)")

    def handle(self, *args, listing, url, key, interval, fail_after, passes, **options):
        if not key:
            raise CommandError("Give --key (or GPUMKT_AGENT_KEY): an API key with the agent scope.")
        if interval <= 0:
            raise CommandError("--interval must be above 0.")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call would drown the agent's own
        headers = {"Authorization": f"Token {key}", "User-Agent": "gpumkt-reference-agent"}
        started, done = time.monotonic(), 0
        with httpx.Client(base_url=url, headers=headers, timeout=10.0) as client:
            agent = Agent(client=client, listings=listing, log=self.log)
            silent = False
            while passes is None or done < passes:
                beating = fail_after is None or time.monotonic() - started < fail_after
                if not beating and not silent:
                    self.log(f"--fail-after {fail_after:g} s reached: no more heartbeats")
                    silent = True
                try:
                    agent.tick(heartbeats=beating)
                except httpx.HTTPError as error:  # the server restarting, a timeout: try again next pass
                    self.log(f"pass failed: {error!r}")
                done += 1
                time.sleep(interval)

    def log(self, message: str) -> None:
        self.stdout.write(f"{time.strftime('%H:%M:%S')} {message}")
        self.stdout.flush()
