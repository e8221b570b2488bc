"""Commits ask for rounds: at once on a quiet shard, shared while a round runs, windowed on a busy shard."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from marketplace.services import rounds, triggers
from marketplace.services.shard_lock import shard_lock


@pytest.fixture
def enqueued(monkeypatch):
    """The rounds asked of Celery, as ``(shard, trigger, countdown)``, instead of sent."""
    calls = []

    def enqueue(*, shard, trigger, countdown=0):
        calls.append((shard, trigger, countdown))

    monkeypatch.setattr(triggers, "matching_round_enqueue", enqueue)
    monkeypatch.setattr(rounds, "matching_round_enqueue", enqueue)
    cache.clear()
    return calls


def test_a_commit_to_an_idle_shard_starts_a_round_at_once(db, enqueued):
    triggers._round_request("h20")
    assert enqueued == [("h20", "commit", 0)]
    assert triggers.round_pending("h20")


def test_commits_before_the_round_starts_share_it(db, enqueued):
    for _ in range(5):
        triggers._round_request("h20")
    assert len(enqueued) == 1


def test_a_commit_during_a_round_waits_for_it_then_its_follow_up_starts_at_once(db, reference, enqueued):
    with shard_lock("h20") as held:  # a round of h20 is running
        assert held
        triggers._round_request("h20")
        triggers._round_request("h20")
        assert enqueued == []  # the holder starts the next round when it releases the lock
    cache.delete(triggers.round_pending_key("h20"))
    triggers._round_request("h20")  # this commit lands during the round below
    enqueued.clear()
    rounds._follow_up("h20")
    assert enqueued == [("h20", "commit", 0)]


def test_a_round_with_nothing_asked_meanwhile_starts_no_follow_up(db, reference, enqueued):
    rounds.round_run(shard="h20", trigger="manual")
    assert enqueued == []
    assert not triggers.round_pending("h20")


def test_a_busy_shard_gets_one_round_per_window(db, reference, enqueued, settings, monkeypatch):
    settings.MATCHING_COALESCE_SECONDS = 1
    settings.MATCHING_BUSY_COMMITS_PER_SECOND = 2
    monkeypatch.setattr(triggers, "_clock", lambda: 1_000_000.5)  # all within one second
    for _ in range(6):  # one after another, each after the previous round started: never contended
        triggers._round_request("h20")
        cache.delete(triggers.round_pending_key("h20"))  # as the round does when it starts
    assert [countdown for *_, countdown in enqueued] == [0] * 6
    triggers._round_request("h20")
    triggers._round_request("h20")  # found the round pending: contended
    with shard_lock("h20"):
        triggers._round_request("h20")  # found a round running: contended
    enqueued.clear()
    rounds._follow_up("h20")  # two contended commits in the last second: the shard is busy
    assert enqueued == [("h20", "commit", 1)]
    cache.delete(triggers.round_pending_key("h20"))
    triggers._round_request("h20")  # and its next commit to an idle shard waits the window too
    assert enqueued[-1] == ("h20", "commit", 1)


def test_without_a_window_nothing_waits(db, enqueued, settings):
    settings.MATCHING_COALESCE_SECONDS = 0
    for _ in range(10):
        triggers._round_request("h20")
        cache.delete(triggers.round_pending_key("h20"))
    assert {countdown for *_, countdown in enqueued} == {0}


def test_a_round_clears_the_pending_mark_and_follows_up_what_came_meanwhile(db, reference, enqueued, monkeypatch):
    def commit_during_the_round(**kwargs):
        triggers._round_request("h20")
        return original(**kwargs)

    original = rounds.match_plan_apply_quarantined
    monkeypatch.setattr(rounds, "match_plan_apply_quarantined", commit_during_the_round)
    triggers._round_request("h20")
    assert enqueued == [("h20", "commit", 0)]
    rounds.round_run(shard="h20", trigger="commit")
    # The commit during the round saw the lock held and enqueued nothing; the round did, at its end.
    assert enqueued[1:] == [("h20", "commit", 0)]
