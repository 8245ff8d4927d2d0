"""Running API code as a test identity: a script that imports sandlock, fills `out`
and prints it as JSON (tests/test_popen.py, tests/test_pipeline.py)."""

from __future__ import annotations

import json
from typing import Any, Dict

from conftest import SYSTEM_PATH, SYSTEM_PYTHON

PREAMBLE = r"""
import json, os, signal, socket, subprocess, sys, threading, time
import sandlock
PY = %r
out = {}
""" % SYSTEM_PYTHON


def run_script(who, body: str, *args: str, timeout: float = 120) -> Dict[str, Any]:  # type: ignore[no-untyped-def]
    """Run PREAMBLE + body as who (not sandboxed itself); the `out` it filled, decoded."""
    r = who.python(PREAMBLE + body + "\nprint(json.dumps(out))\n", args=list(args), timeout=timeout,
                   env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8"})
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    return json.loads(r.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]
