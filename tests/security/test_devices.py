"""Device files are content-only: nothing in the sandbox changes their metadata.

Found by the red-team suite: in an emulated root, /dev/null is the host's
device, granted for writing; a sandboxed root's chmod was performed on
behalf by the supervisor, which has the uid that owns /dev/null, and set
the host's /dev/null to mode 0000.  The fixture puts every probed device
back as it was even if a regression lets a change through.
"""

from __future__ import annotations

import os
import stat
from typing import Iterator, List, Tuple

import pytest

DEVICES = ["/dev/null", "/dev/zero", "/dev/full"]


@pytest.fixture
def guarded() -> Iterator[List[Tuple[str, os.stat_result]]]:
    saved = [(path, os.stat(path)) for path in DEVICES]
    try:
        yield saved
    finally:
        for path, st in saved:  # undo whatever got through, then let the test say it
            now = os.stat(path)
            if stat.S_IMODE(now.st_mode) != stat.S_IMODE(st.st_mode) and os.geteuid() == 0:
                os.chmod(path, stat.S_IMODE(st.st_mode))
            if (now.st_uid, now.st_gid) != (st.st_uid, st.st_gid) and os.geteuid() == 0:
                os.chown(path, st.st_uid, st.st_gid)
            if now.st_mtime_ns != st.st_mtime_ns and os.geteuid() == 0:
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


PROBE = ('for d in /dev/null /dev/zero /dev/full; do chmod 600 $d; echo "chmod $d $?"; '
         'chown 12345 $d; echo "chown $d $?"; touch -d @1000000000 $d; echo "utime $d $?"; done; '
         'echo data > /dev/null; echo "write $?"')


@pytest.mark.parametrize("mode", ["host", "root"])
def test_device_metadata_cannot_be_changed(who, guarded, mode: str, request: pytest.FixtureRequest) -> None:
    options: List[str] = []
    if mode == "root":
        options = ["--root", str(request.getfixturevalue("busybox_root"))]
    r = who.run([*options, "--", "sh", "-c", PROBE])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "write 0" in lines, r.stdout  # the content stays usable
    refused = [line for line in lines if line.split()[0] in ("chmod", "chown", "utime")]
    assert len(refused) == 9 and all(line.split()[-1] != "0" for line in refused), r.stdout
    for path, st in guarded:
        now = os.stat(path)
        assert (stat.S_IMODE(now.st_mode), now.st_uid, now.st_gid, now.st_mtime_ns) == \
               (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns), f"{path} was changed: {r.stdout}"

