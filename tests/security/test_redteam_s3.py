"""Red team of the merge of 2026-12-06 (fake root, host renames and links made on
behalf, vendoring, Ctrl-Z in the command's group, the network verdict cache).

Each probe asserts what the attacker would see; each has a control.  Probes
that found a hole that is closed here say so in their docstring; those that
found nothing stay as cheap regression tests.
"""

from __future__ import annotations

import os
from pathlib import Path


# --- fake root: the supervisor's memory ----------------------------------------------------

def test_a_loop_of_files_made_chowned_and_removed_keeps_the_pending_changes_bounded(tmp_path: Path) -> None:
    """A command that creates a file, chowns it and removes it, again and again,
    leaves no record -- and must leave no pending change per inode number either
    (tmpfs never reuses inode numbers: one entry per loop, never released until
    the end of the run, was memory without bound).  Half the files are kept
    (distinct inode numbers on any filesystem) and chowned back to the default."""
    from sandlock import _fakeroot
    from sandlock import _syscalls
    hot = _syscalls.HotCalls()
    root = tmp_path / "root"
    root.mkdir()
    owners = _fakeroot.Owners.open(str(root))
    try:
        for i in range(300):
            fd = os.open(root / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
            st = hot.fstat(fd)
            owners.set(fd, st, 1000, 1000, 0, 0)  # chown 1000:1000
            if i % 2:
                owners.set(fd, st, 0, 0, 0, 0)  # chown 0:0 again: the default view
            os.close(fd)
            if not i % 2:
                os.unlink(root / f"f{i}")
                owners.forget(st.dev, st.ino)  # its last name is gone
        assert owners.records == {}
        assert len(owners.changed) == 0, len(owners.changed)
        # control: a change that outlives the loop is still saved, and one removed
        # that was in the record file is removed from it
        (root / "kept").write_text("")
        (root / "gone").write_text("")
        for name in ("kept", "gone"):
            fd = os.open(root / name, os.O_PATH)
            owners.set(fd, hot.fstat(fd), 42, 42, 0, 0)
            os.close(fd)
        owners.save()
        fd = os.open(root / "gone", os.O_PATH)
        st = hot.fstat(fd)
        os.close(fd)
        owners.forget(st.dev, st.ino)
        owners.save()
    finally:
        owners.close()
    again = _fakeroot.Owners.open(str(root))
    again.close()
    assert [v[1] for v in again.records.values()] == [42]


def test_threads_setting_many_groups_keep_the_supervisors_memory_bounded(tmp_path: Path) -> None:
    """Virtual setgroups keeps a thread's groups in the supervisor: 4096 threads of
    65536 groups each (the kernel's NGROUPS_MAX) were ~10 GB of the supervisor's
    memory.  Past GROUPS_HELD_MAX groups over all live threads, setgroups fails
    with ENOMEM; control: a thread that replaces its own list, and dead threads'
    lists, never count against it."""
    import errno
    import threading
    from sandlock import _fakeroot
    root = tmp_path / "root"
    root.mkdir()
    owners = _fakeroot.Owners.open(str(root))
    release = threading.Event()
    tids: list = []
    started = threading.Barrier(41)

    def live() -> None:
        tids.append(threading.get_native_id())
        started.wait()
        release.wait()

    threads = [threading.Thread(target=live) for _ in range(40)]
    for t in threads:
        t.start()
    started.wait()
    groups = tuple(range(1000, 1000 + _fakeroot.NGROUPS_MAX))  # one tuple: the test stays small
    refused = []
    try:
        for tid in tids:
            try:
                _fakeroot._store(owners, tid, _fakeroot.Creds([0] * 4, [0] * 4, groups))
            except OSError as exc:
                refused.append(exc.errno)
        held = sum(len(c.groups) for c in owners.creds.values())
        assert held <= 1 << 20, held
        assert refused and set(refused) == {errno.ENOMEM}, refused
        # control: the same live thread replaces its list; a dead thread's list goes
        _fakeroot._store(owners, tids[0], _fakeroot.Creds([0] * 4, [0] * 4, groups))
        for tid in tids[:2]:
            _fakeroot._store(owners, tid, _fakeroot.Creds([0] * 4, [0] * 4, (5,)))
        owners.creds[2 ** 22 + 1] = _fakeroot.Creds([0] * 4, [0] * 4, groups)  # no such tid
        _fakeroot._store(owners, tids[-1], _fakeroot.Creds([0] * 4, [0] * 4, groups))
        assert 2 ** 22 + 1 not in owners.creds
    finally:
        release.set()
        for t in threads:
            t.join()
        owners.close()
