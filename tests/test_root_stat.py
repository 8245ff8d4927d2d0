"""stat and lstat in the emulated root take a short way for a clean absolute path ('.'
components and repeated '/' folded; relative paths joined to the cwd: RootResolver.stat_path)
and the general way for every other spelling and route: each
answer is what a real root gives, on both sides (a symlink on the way or at the end,
'..', '.', '//', a trailing '/', /proc, /dev, a mounted directory, a denied file, a
missing one).  Fixtures: tests/rootcase.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from rootcase import PY, show, in_root, assert_no_host_path, canary
from rootcase import deb_shared, deb, work  # noqa: F401  (fixtures)


STAT_CODE = r'''
import errno, json, os, stat, sys
def kind(st):
    for name in ("REG", "DIR", "LNK", "CHR", "FIFO", "SOCK"):
        if getattr(stat, "S_IS" + name)(st.st_mode):
            return name
def one(path, follow):
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError as e:
        return errno.errorcode[e.errno]
    return kind(st) if kind(st) != "REG" else "REG %d" % st.st_size
paths = sys.argv[1:]
print(json.dumps({p: [one(p, True), one(p, False)] for p in paths}))
'''


def test_stat_of_every_spelling_and_route_answers_as_a_real_root(who, deb: Path, work: Path, canary: Path) -> None:
    who.make_file(work / "f", "abc\n")
    deb_version = len((deb / "etc/debian_version").read_bytes())
    passwd = len((deb / "etc/passwd").read_bytes())
    expect = {
        "/etc/debian_version": [f"REG {deb_version}"] * 2,                  # the short way
        "/usr/bin/sh": [f"REG {(deb / 'usr/bin/dash').stat().st_size}", "LNK"],  # a symlink at the end
        "/bin": ["DIR", "LNK"],                                               # (merged /usr)
        "/bin/dash": [f"REG {(deb / 'usr/bin/dash').stat().st_size}"] * 2,  # a symlink on the way
        "/etc/../etc/debian_version": [f"REG {deb_version}"] * 2,
        "/etc/./debian_version": [f"REG {deb_version}"] * 2,
        "//etc//debian_version": [f"REG {deb_version}"] * 2,
        "/etc/debian_version/": ["ENOTDIR"] * 2,
        "/etc/debian_version/.": ["ENOTDIR"] * 2,                           # '.' folded, not this one
        "/etc/debian_version/./x": ["ENOTDIR"] * 2,
        "/etc/.//./debian_version": [f"REG {deb_version}"] * 2,
        "/bin/./dash": [f"REG {(deb / 'usr/bin/dash').stat().st_size}"] * 2,  # folded, a symlink on the way
        "/etc/debian_version/x": ["ENOTDIR"] * 2,
        "/etc/nosuch": ["ENOENT"] * 2,
        "/../../../../../..": ["DIR"] * 2,
        "/": ["DIR"] * 2,
        str(canary): ["ENOENT"] * 2,                                          # a host path is a guest path
        "/proc/self/status": ["REG 0"] * 2,
        "/proc/self/cwd": ["DIR", "LNK"],
        "/dev/null": ["CHR"] * 2,
        "/work/f": ["REG 4"] * 2,                                             # a mounted directory
        "/work": ["DIR"] * 2,
        "/etc/passwd": ["EACCES"] * 2,                                        # denied
        "/etc/group": [f"REG {len((deb / 'etc/group').read_bytes())}"] * 2,   # its control
    }
    r = in_root(who, deb, [PY, "-c", STAT_CODE, *expect], "--fs-mount", f"/work:{work}",
                "--fs-deny", "/etc/passwd")
    assert r.returncode == 0, show(r)
    assert json.loads(r.stdout) == expect, show(r)
    assert passwd > 0
    assert_no_host_path(r, deb, work)
