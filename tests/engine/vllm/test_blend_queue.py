"""The vLLM backend's blend thread: a request's blend goes before queued write-backs, write-backs
still run (in order), and aging keeps them from starving."""

from __future__ import annotations

import threading
import time

import pytest

from engine.vllm.blend_queue import BlendQueue, BlendQueueClosed


def _blocked(queue: BlendQueue) -> threading.Event:
    """Occupy the thread until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(10)

    queue.submit(hold, background=True)
    assert started.wait(10)
    return gate


def test_a_blend_goes_before_queued_write_backs_which_run_later_in_order() -> None:
    queue = BlendQueue(aging_s=60)
    ran: list[str] = []
    gate = _blocked(queue)
    backs = [queue.submit(ran.append, f"piece {i}", background=True) for i in range(3)]

    def blend_fn() -> str:
        ran.append("blend")
        return "kv"

    blend = queue.submit(blend_fn)
    assert queue.waiting() == (1, 3)
    gate.set()
    assert blend.result(10) == "kv"
    for f in backs:
        f.result(10)
    assert ran == ["blend", "piece 0", "piece 1", "piece 2"]
    queue.shutdown()


def test_an_aged_write_back_runs_before_newer_blends() -> None:
    queue = BlendQueue(aging_s=0.0)
    ran: list[str] = []
    gate = _blocked(queue)
    back = queue.submit(ran.append, "write-back", background=True)
    blend = queue.submit(ran.append, "blend")
    gate.set()
    back.result(10), blend.result(10)
    assert ran == ["write-back", "blend"]
    queue.shutdown()


def test_errors_reach_the_caller_and_the_thread_serves_on() -> None:
    queue = BlendQueue()

    def fail() -> None:
        raise ValueError("bad blend")

    with pytest.raises(ValueError, match="bad blend"):
        queue.submit(fail).result(10)
    assert queue.submit(lambda: 7).result(10) == 7
    queue.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        queue.submit(lambda: 1)


def test_shutdown_runs_what_is_queued() -> None:
    queue = BlendQueue()
    gate = _blocked(queue)
    later = queue.submit(lambda: "done", background=True)
    gate.set()
    queue.shutdown(wait=True)
    assert later.result(0) == "done"


def test_write_backs_wait_while_a_request_is_in_vllm_up_to_their_aging() -> None:
    queue = BlendQueue(aging_s=60)
    queue.begin()
    back = queue.submit(lambda: "stored", background=True)
    assert queue.submit(lambda: "blend").result(10) == "blend"  # interactive work is not held
    assert not back.done() and queue.waiting() == (0, 1)
    queue.end()
    assert back.result(10) == "stored"
    aged = BlendQueue(aging_s=0.2)
    aged.begin()  # a request that never leaves: the write-back still runs once it has aged
    assert aged.submit(lambda: "late", background=True).result(10) == "late"
    aged.end()
    queue.shutdown()
    aged.shutdown()


def test_a_blend_arriving_mid_job_runs_at_the_jobs_next_pause_point() -> None:
    queue = BlendQueue(aging_s=60)
    ran: list[str] = []
    began, submitted = threading.Event(), threading.Event()

    def write_back() -> str:  # three slices, a pause point before each but the first
        ran.append("slice 0")
        began.set()
        assert submitted.wait(10)
        for i in (1, 2):
            queue.pause()
            ran.append(f"slice {i}")
        return "stored"

    back = queue.submit(write_back, background=True)
    assert began.wait(10)
    blend = queue.submit(ran.append, "blend")
    submitted.set()
    assert back.result(10) == "stored" and blend.result(10) is None
    assert ran == ["slice 0", "blend", "slice 1", "slice 2"]
    queue.pause()  # from another thread than the blend thread: returns at once
    queue.shutdown()


def test_a_paused_job_waits_while_a_request_is_in_vllm_and_resumes_after() -> None:
    queue = BlendQueue(aging_s=60)
    ran: list[str] = []
    began, go, resumed = threading.Event(), threading.Event(), threading.Event()

    def write_back() -> None:
        began.set()
        assert go.wait(10)
        queue.pause()
        resumed.set()

    back = queue.submit(write_back, background=True)
    assert began.wait(10)
    queue.begin()  # a request entered vLLM while the job was running
    go.set()
    assert not resumed.wait(0.3)  # the job waits at its pause point
    assert queue.submit(ran.append, "blend").result(10) is None  # requests' blends still run
    queue.end()
    back.result(10)
    assert resumed.is_set() and ran == ["blend"]
    queue.shutdown()


def test_an_aged_job_does_not_wait_at_its_pause_points() -> None:
    queue = BlendQueue(aging_s=0.0)
    began, go = threading.Event(), threading.Event()

    def write_back() -> str:
        began.set()
        assert go.wait(10)
        queue.pause()
        return "done"

    back = queue.submit(write_back, background=True)
    assert began.wait(10)
    queue.begin()
    go.set()
    assert back.result(10) == "done"  # aging 0: a request in vLLM does not hold it
    queue.end()
    queue.shutdown()


def test_shutdown_dropping_background_work_cancels_it_and_stops_the_running_job() -> None:
    queue = BlendQueue(aging_s=60)
    started, release = threading.Event(), threading.Event()
    steps: list[int] = []

    def sliced() -> None:  # a write-back in slices, with a pause point before each
        started.set()
        release.wait(10)
        for i in range(5):
            queue.pause()
            steps.append(i)

    running = queue.submit(sliced, background=True)
    assert started.wait(10)
    queued = queue.submit(steps.append, 99, background=True)
    blend = queue.submit(lambda: "kv")
    closer = threading.Thread(target=queue.shutdown, kwargs={"wait": True, "drop_background": True})
    closer.start()
    deadline = time.monotonic() + 10
    while not queued.cancelled() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queued.cancelled()  # cancelled at once, while the running job is still held
    release.set()
    closer.join(10)
    assert not closer.is_alive()
    assert blend.result(1) == "kv"  # a request's blend that was queued still runs
    with pytest.raises(BlendQueueClosed):
        running.result(1)
    assert steps == []  # it stopped at its first pause point; the dropped job never ran
    with pytest.raises(RuntimeError):
        queue.submit(lambda: None)
