"""matching.cores: compiled kernels' row ranges on several threads give what one call gives."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from matching import cores, substitution_engine
from matching.substitution import solve_inference
from tests.matching.test_substitution import bench_round


@pytest.mark.parametrize(("n", "parts"), [(0, 1), (5, 1), (10, 3), (10, 4), (4097, 2), (7, 7)])
def test_the_ranges_cover_every_row_once_in_order_and_differ_by_at_most_one(n, parts):
    spans = cores.ranges(n, parts)
    assert len(spans) == parts
    assert [lo for lo, _ in spans] == [0] + [hi for _, hi in spans[:-1]]
    assert spans[-1][1] == n
    sizes = [hi - lo for lo, hi in spans]
    assert max(sizes) - min(sizes) <= 1


def test_split_returns_the_ranges_results_in_order_and_runs_them_at_once(monkeypatch):
    monkeypatch.setattr(cores, "THREADS", 3)
    monkeypatch.setattr(cores, "MIN_ROWS", 4)
    names, barrier = set(), threading.Barrier(3, timeout=10)

    def call(lo, hi):
        names.add(threading.current_thread().name)
        barrier.wait()  # (only returns once all three ranges run at the same time)
        return list(range(lo, hi))

    got = cores.split(14, call)
    assert got == [list(range(0, 5)), list(range(5, 10)), list(range(10, 14))]
    assert len(names) == 3


@pytest.mark.parametrize(("threads", "n", "calls"), [(1, 10_000, 1), (2, 7, 1), (2, 9, 2), (8, 20, 5)])
def test_split_makes_one_call_per_thread_and_none_smaller_than_min_rows(monkeypatch, threads, n, calls):
    monkeypatch.setattr(cores, "THREADS", threads)
    monkeypatch.setattr(cores, "MIN_ROWS", 4)
    got = cores.split(n, lambda lo, hi: (lo, hi))
    assert len(got) == calls
    assert got == cores.ranges(n, calls)


def test_an_error_in_any_range_is_raised_after_every_range_has_finished(monkeypatch):
    monkeypatch.setattr(cores, "THREADS", 2)
    monkeypatch.setattr(cores, "MIN_ROWS", 1)
    finished = []

    def call(lo, hi):
        if lo > 0:
            raise ZeroDivisionError("second range")
        time.sleep(0.05)
        finished.append(lo)

    with pytest.raises(ZeroDivisionError, match="second range"):
        cores.split(2, call)
    assert finished == [0]


@pytest.mark.parametrize(("value", "threads"), [("1", 1), (" 3 ", 3), ("0", 1), ("-2", 1)])
def test_matching_threads_sets_the_threads(value, threads):
    assert cores.configured_threads({"MATCHING_THREADS": value}) == threads


def test_without_matching_threads_every_core_of_the_process_is_used():
    assert cores.configured_threads({}) >= 1
    assert cores.configured_threads({"MATCHING_THREADS": ""}) == cores.configured_threads({})


def test_a_matching_threads_that_is_not_a_whole_number_is_refused_by_name():
    with pytest.raises(ValueError, match="MATCHING_THREADS must be a whole number, not 'two'"):
        cores.configured_threads({"MATCHING_THREADS": "two"})


def _split_in_child(queue):
    queue.put(cores.split(8, lambda lo, hi: hi - lo))


def test_a_forked_child_splits_on_its_own_threads(monkeypatch):
    # A Celery prefork worker is forked from a parent that may have split already: the child
    # inherits the pool object but not its threads, and must not wait on them for ever.
    monkeypatch.setattr(cores, "THREADS", 2)
    monkeypatch.setattr(cores, "MIN_ROWS", 2)
    assert cores.split(8, lambda lo, hi: hi - lo) == [4, 4]  # (the parent's pool exists now)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_split_in_child, args=(queue,))
    child.start()
    assert queue.get(timeout=30) == [4, 4]
    child.join(timeout=30)
    assert child.exitcode == 0


@pytest.mark.parametrize("label", ["100x50", "300x150"])
def test_a_round_solved_on_several_threads_is_the_round_solved_on_one(monkeypatch, label):
    # Small ranges so that a small round splits every kernel (the rules matrix per GPU model, the
    # bound's per-demand least values, the covers' costs) into uneven parts.
    monkeypatch.setattr(substitution_engine, "EXACT_OPTIONS", 0)
    monkeypatch.setattr(cores, "MIN_ROWS", 7)
    problem = bench_round(label)
    monkeypatch.setattr(cores, "THREADS", 1)
    one = solve_inference(problem)
    monkeypatch.setattr(cores, "THREADS", 3)
    three = solve_inference(problem)
    assert three[0] == one[0]
    assert three[1] == one[1]
    timings = ("prepare_ms", "solve_ms", "total_ms", "place_ms", "bound_ms")
    assert {k: v for k, v in three[2].items() if not k.endswith("_ms")} == {
        k: v for k, v in one[2].items() if not k.endswith("_ms")
    }
    assert set(timings) <= set(one[2])
