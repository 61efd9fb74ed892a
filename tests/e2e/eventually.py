"""Waiting for something the system under test does on its own time."""
import time


def eventually(check, what, timeout=5.0, interval=0.05):
    """Calls `check` until it returns something true and returns that. Fails the test after
    `timeout` seconds (one last call is made at the deadline) with `what`: a description, or a
    function that makes one then (to show the state at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what() if callable(what) else what}")
        time.sleep(interval)
