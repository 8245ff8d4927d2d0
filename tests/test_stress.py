"""Launch under load: many sandboxes at once from one Python process (docs/design.md "Threads and many runs")."""

import collections
import os
import threading

import sandlock


def test_a_thousand_launches_from_eight_threads_all_succeed():
    box = sandlock.Sandbox()
    failures = collections.Counter()
    fds_before = len(os.listdir("/proc/self/fd"))

    def worker(i):
        for j in range(125):
            try:
                r = box.run(["/bin/echo", f"{i}-{j}"])
                if r.exit_code != 0 or r.stdout != f"{i}-{j}\n".encode():
                    failures[(r.exit_code, r.stdout[:40], r.stderr[:200])] += 1
            except Exception as exc:  # noqa: BLE001 -- counted and shown below
                failures[repr(exc)[:200]] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures.most_common(5)
    # every pipe, pidfd and listener of those runs was closed again
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 3  # + the Sandbox's cached rulesets


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
