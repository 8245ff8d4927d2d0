"""Pipelines of sandboxes: Sandbox.cmd() | Sandbox.cmd() (README "Pipelines").

Each test runs a script as root and as the unprivileged user (`who`) that
uses only the public API and prints what it saw as JSON.  Each stage runs
under its own policy: the tests show that a stage gets exactly its own
(the fetcher reaches the network and the others do not; only the last stage
writes), that data flows through the pipes, and that the pipeline's status
follows bash's `set -o pipefail`.
"""

from __future__ import annotations

import signal
from pathlib import Path

from apicase import run_script
from conftest import find_processes, kill_marked, unique_marker



THREE = r"""
d = sys.argv[1]
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(8)
port = server.getsockname()[1]
def serve():
    while True:
        conn, _ = server.accept()
        conn.sendall(b"alpha 1\nbeta 2\ngamma 3\n")
        conn.close()
threading.Thread(target=serve, daemon=True).start()
TRY = '''
import os, socket, sys
try:
    socket.create_connection(("127.0.0.1", %d), timeout=5).close()
    sys.stderr.write("connect: allowed\\n")
except OSError as e:
    sys.stderr.write("connect: %%s\\n" %% e.strerror)
try:
    open(os.path.join(%r, "stage-" + sys.argv[1]), "w").close()
    sys.stderr.write("write: allowed\\n")
except OSError as e:
    sys.stderr.write("write: %%s\\n" %% e.strerror)
''' % (port, d)
FETCH = TRY + '''
s = socket.create_connection(("127.0.0.1", %d), timeout=5)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
''' % port
PARSE = TRY + '''
for line in sys.stdin:
    name, value = line.split()
    print(name.upper(), int(value) * 10)
'''
STORE = TRY + '''
data = sys.stdin.read()
open(os.path.join(%r, "stored"), "w").write(data)
sys.stdout.write(data)
''' % d
fetcher = sandlock.Sandbox(net_allow=["127.0.0.1:%d" % port])
parser = sandlock.Sandbox(max_processes=4)
storer = sandlock.Sandbox(fs_writable=[d])
pipeline = fetcher.cmd([PY, "-c", FETCH, "1"]) | parser.cmd([PY, "-c", PARSE, "2"]) | storer.cmd([PY, "-c", STORE, "3"])
r = pipeline.run(timeout=60)
out["status"] = [r.returncode, r.success, [s.returncode for s in r], len(r)]
out["stdout"] = r.stdout.decode()
out["stderr"] = [s.stderr.decode().splitlines() for s in r]
out["files"] = sorted(os.listdir(d))
out["stored"] = open(os.path.join(d, "stored")).read()
"""


def test_three_stages_each_under_its_own_policy_pass_data_through_pipes(who, scratch: Path) -> None:
    d = who.make_dir(scratch / "store", 0o777)
    out = run_script(who, THREE, str(d))
    assert out["status"] == [0, True, [0, 0, 0], 3], out
    assert out["stdout"] == "ALPHA 10\nBETA 20\nGAMMA 30\n"
    assert out["stored"] == out["stdout"]
    fetch, parse, store = out["stderr"]
    assert fetch[0] == "connect: allowed" and fetch[1].startswith("write: ") and fetch[1] != "write: allowed", fetch
    assert parse[0] != "connect: allowed" and parse[0].startswith("connect: "), parse  # no network here
    assert parse[1] != "write: allowed", parse
    assert store[0] != "connect: allowed" and store[1] == "write: allowed", store  # the control for writes
    assert out["files"] == ["stage-3", "stored"]


PIPEFAIL = r"""
box = sandlock.Sandbox()
def sh(code):
    return box.cmd(["sh", "-c", code])
r = (sh("echo a; exit 3") | sh("cat; exit 5") | sh("cat")).run()
out["two_fail"] = [r.returncode, r.exit_code, [s.returncode for s in r], r.stdout.decode(), r.success]
r = (sh("echo a; exit 3") | sh("cat") | sh("cat")).run()
out["first_fails"] = [r.returncode, [s.returncode for s in r], r.stdout.decode()]
r = (sh("echo a") | sh("tr a b") | sh("cat")).run()
out["all_ok"] = [r.returncode, r.success, r.stdout.decode()]
r = (box.cmd(["yes"]) | box.cmd(["head", "-n", "2"])).run()
out["sigpipe"] = [r.returncode, r.exit_code, [s.returncode for s in r], r.stdout.decode()]
try:
    (sh("exit 4") | sh("cat")).run(check=True)
    out["check"] = "no error"
except subprocess.CalledProcessError as exc:
    out["check"] = [type(exc).__name__, exc.returncode]
"""


def test_the_pipelines_status_is_the_last_failing_stages_as_with_pipefail(who) -> None:
    out = run_script(who, PIPEFAIL)
    assert out["two_fail"] == [5, 5, [3, 5, 0], "a\n", False]
    assert out["first_fails"] == [3, [3, 0, 0], "a\n"]
    assert out["all_ok"] == [0, True, "b\n"]
    # head exits after two lines; yes then dies of SIGPIPE, which pipefail reports (bash: 141)
    assert out["sigpipe"] == [-signal.SIGPIPE, 128 + signal.SIGPIPE, [-signal.SIGPIPE, 0], "y\ny\n"]
    assert out["check"] == ["SandboxCalledProcessError", 4]


INPUT = r"""
box = sandlock.Sandbox()
r = (box.cmd(["tr", "a-z", "A-Z"]) | box.cmd(["sh", "-c", "cat; echo note >&2"])).run(input="hello\n", text=True)
out["text"] = [r.stdout, r[0].stderr, r[1].stderr]
payload = os.urandom(1 << 20)
r = (box.cmd(["cat"]) | box.cmd(["cat"]) | box.cmd(["cat"])).run(input=payload)
out["mib"] = r.stdout == payload
r = box.cmd(["echo", "single"]).run()
out["single"] = [len(r), r.stdout.decode()]
"""


def test_input_feeds_the_first_stage_and_each_stages_stderr_is_its_own(who) -> None:
    out = run_script(who, INPUT)
    assert out["text"] == ["HELLO\n", "", "note\n"]
    assert out["mib"] is True
    assert out["single"] == [1, "single\n"]


FAILURES = r"""
marker = sys.argv[1]
box = sandlock.Sandbox()
start = time.monotonic()
try:
    (box.cmd(["sleep", marker]) | box.cmd(["no-such-program-i16"])).run()
    out["missing"] = "no error"
except FileNotFoundError as exc:
    out["missing"] = [type(exc).__name__, isinstance(exc, sandlock.ExecError)]
out["fast"] = time.monotonic() - start < 10
r = (box.cmd(["sleep", marker]) | box.cmd(["cat"])).run(timeout=0.5)
out["timeout"] = [[s.timed_out for s in r], r[0].exit_code, r.returncode]
"""


def test_a_stage_that_cannot_start_raises_and_a_timeout_ends_every_stage(who) -> None:
    marker = unique_marker()
    try:
        out = run_script(who, FAILURES, marker)
        assert find_processes(marker) == []
    finally:
        kill_marked(marker)
    assert out["missing"] == ["CommandNotFoundError", True] and out["fast"] is True
    assert out["timeout"][0][0] is True and out["timeout"][1] == 124 and out["timeout"][2] == 124, out
