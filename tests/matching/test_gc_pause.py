import gc
import threading

from matching.gc_pause import cyclic_gc_paused


def test_the_collector_is_paused_inside_and_resumes_after_the_last_block():
    assert gc.isenabled()
    with cyclic_gc_paused():
        assert not gc.isenabled()
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block is still inside
    assert gc.isenabled()


def test_a_block_that_raises_still_resumes_the_collector():
    try:
        with cyclic_gc_paused():
            raise RuntimeError("solve failed")
    except RuntimeError:
        pass
    assert gc.isenabled()


def test_a_collector_paused_before_stays_paused():
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_blocks_on_two_threads_resume_only_when_both_are_out():
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with cyclic_gc_paused():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()  # the other thread's block is still inside
    leave.set()
    thread.join(5)
    assert gc.isenabled()
