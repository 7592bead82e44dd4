"""The push path's trigger (kcg_mail.entrypoints.push.IntakeTrigger): coalescing,
no lost wake-up, retry after a failed run, a clean stop. ``run`` is a recording
function here (what the trigger does with it is the subject); the real intake
flow behind it is exercised end to end in tests/e2e/test_serve.py."""

from __future__ import annotations

import threading
import time

from kcg_mail.entrypoints.push import IntakeTrigger


def wait_until(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


class Run:
    """A run that blocks until released, recording how many times it ran."""

    def __init__(self, fail_first: int = 0):
        self.started = 0
        self.finished = 0
        self.fail_first = fail_first
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.started += 1
            n = self.started
        self.gate.wait(10)
        with self.lock:
            self.finished += 1
        if n <= self.fail_first:
            raise RuntimeError(f"run {n} failed")


def test_requests_during_a_run_coalesce_into_one_more_run():
    run = Run()
    trig = IntakeTrigger(run).start()
    try:
        run.gate.clear()
        trig.request()
        assert wait_until(lambda: run.started == 1)
        for _ in range(20):  # mail keeps arriving while the run works
            trig.request()
        assert run.started == 1  # nothing runs alongside
        run.gate.set()
        assert trig.wait_idle(10)
        assert run.started == 2, "exactly one more run, right after the first"
    finally:
        trig.stop()


def test_a_request_while_idle_runs_at_once_and_each_is_handled():
    run = Run()
    trig = IntakeTrigger(run).start()
    try:
        for n in range(1, 4):
            trig.request()
            assert wait_until(lambda: run.finished == n)
            assert trig.wait_idle(5)
        assert run.started == 3
    finally:
        trig.stop()


def test_a_failed_run_is_tried_again_without_new_mail():
    run = Run(fail_first=2)
    trig = IntakeTrigger(run, retry_initial=0.05, retry_max=0.2).start()
    try:
        trig.request()
        assert wait_until(lambda: run.finished == 3), run.finished
        time.sleep(0.5)
        assert run.started == 3, "no more runs once one succeeded"
        assert trig.failures == 2 and trig.runs == 1
    finally:
        trig.stop()


def test_stop_lets_the_working_run_finish_and_starts_nothing_new():
    run = Run()
    trig = IntakeTrigger(run).start()
    run.gate.clear()
    trig.request()
    assert wait_until(lambda: run.started == 1)
    trig.request()  # would be the next run
    threading.Timer(0.3, run.gate.set).start()
    assert trig.stop(join=10) is True
    assert run.finished == 1 and run.started == 1


def test_stop_reports_a_run_still_working():
    run = Run()
    trig = IntakeTrigger(run).start()
    run.gate.clear()
    trig.request()
    assert wait_until(lambda: run.started == 1)
    assert trig.stop(join=0.2) is False
    run.gate.set()
