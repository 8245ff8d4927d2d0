"""Launch under load: many sandboxes at once from one Python process (docs/design.md "Threads and many runs")."""

import os
import threading

import pytest

import sandlock
from conftest import at_once


@pytest.mark.slow
def test_a_thousand_launches_from_eight_threads_all_succeed_with_their_own_output() -> None:
    """The one stress test of launching (marked slow: `-m "not slow"` skips it, README "Tests")."""
    box = sandlock.Sandbox()
    runs = 125
    fds_before = len(os.listdir("/proc/self/fd"))

    results = at_once(8, lambda i: [box.run(["/bin/echo", f"thread-{i}-run-{j}"]).stdout for j in range(runs)], 240)
    assert results == {i: [f"thread-{i}-run-{j}\n".encode() for j in range(runs)] for i in range(8)}
    # every pipe, pidfd and listener of those runs was closed again
    # + the Sandbox's cached rulesets (3) and its fork server's socket, pidfd and /dev/null (3)
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 6


def test_sandboxes_in_threads_do_not_share_their_policies(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    results = {}

    def run(name, own, other):
        box = sandlock.Sandbox(fs_writable=[own])
        r = box.run(["sh", "-c", f"echo x > {own}/f && echo x > {other}/g"])
        results[name] = r

    threads = [threading.Thread(target=run, args=("a", a, b)), threading.Thread(target=run, args=("b", b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (a / "f").exists() and (b / "f").exists()
    assert not (a / "g").exists() and not (b / "g").exists()
    assert all(r.exit_code != 0 and b"Permission denied" in r.stderr for r in results.values())
