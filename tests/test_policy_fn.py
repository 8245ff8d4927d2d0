"""The dynamic policy callback: Sandbox(policy_fn=fn) (README "Policy callback").

Every test runs a small script as root and as the unprivileged user (the `who`
fixture) that uses only the public API and prints what it saw as JSON.  The
callback is asked after the static policy allowed an operation, on the
supervisor's own copy of its arguments (docs/design.md "Security rules"): it can
refuse, narrow the rest of the run, never widen; raising or hanging denies.
"""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest

from conftest import SYSTEM_PATH, SYSTEM_PYTHON
from rootcase import bb, busybox_shared  # noqa: F401  (fixtures)

PREAMBLE = r"""
import errno, json, os, socket, sys, threading, time
import sandlock
PY = %r
out = {}
""" % SYSTEM_PYTHON


def run_script(who, body: str, *args: str, timeout: float = 180) -> Dict[str, Any]:
    r = who.python(PREAMBLE + body + "\nprint(json.dumps(out))\n", args=list(args), timeout=timeout,
                   env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8"})
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    out["_stderr"] = r.stderr.decode()
    return out  # type: ignore[no-any-return]


EXEC = r"""
events = []
def fn(event, ctx):
    events.append([event.kind, event.path, list(event.argv or ())])
    if event.kind == "exec" and "forbidden" in event.argv[1:]:
        return errno.EACCES
    return True
box = sandlock.Sandbox(policy_fn=fn)
r = box.run(["/bin/sh", "-c", "/bin/echo allowed; /bin/echo forbidden; echo rc=$?"])
out["rc"] = r.exit_code
out["stdout"] = r.stdout.decode()
out["events"] = [e for e in events if e[0] == "exec"]
"""


def test_a_callback_refuses_an_exec_by_its_arguments_and_sees_the_path_and_argv_the_program_gets(who) -> None:
    out = run_script(who, EXEC)
    assert out["rc"] == 0
    assert out["stdout"] == "allowed\nrc=126\n"
    paths = [path for _, path, _ in out["events"]]
    assert [argv for _, _, argv in out["events"]] == [
        ["/bin/sh", "-c", "/bin/echo allowed; /bin/echo forbidden; echo rc=$?"],
        ["/bin/echo", "allowed"], ["/bin/echo", "forbidden"]]
    assert all(p.startswith("/") and p.endswith(("/sh", "/dash", "/bash", "/echo")) for p in paths), paths


OPEN = r"""
d = sys.argv[1]
events = []
def fn(event, ctx):
    events.append([event.kind, event.path])
    return event.kind != "open" or not event.path.endswith("/refused")
box = sandlock.Sandbox(fs_writable=[d], policy_fn=fn)
code = "import sys\nfor n in ('kept', 'refused'):\n    try:\n        open(sys.argv[1] + '/' + n, 'w').write('x')\n        print(n, 'ok')\n    except OSError as e:\n        print(n, e.errno)\n"
r = box.run([PY, "-c", code, d])
out["stdout"] = r.stdout.decode()
out["files"] = sorted(os.listdir(d))
out["opens"] = [p for k, p in events if k == "open"]
"""


def test_a_callback_refuses_an_open_for_writing_and_the_file_is_never_made(who, scratch) -> None:
    d = who.make_dir(scratch / "w")
    out = run_script(who, OPEN, str(d))
    assert out["stdout"] == "kept ok\nrefused 1\n"  # EPERM
    assert out["files"] == ["kept"]
    assert out["opens"] == [f"{d}/kept", f"{d}/refused"]


# two loopback listeners of the test process, accepting 8 connections each: `servers` = their ports
TWO_SERVERS = r"""
servers = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    threading.Thread(target=lambda s=s: [s.accept()[0].close() for _ in range(8)], daemon=True).start()
    servers.append(s.getsockname()[1])
"""

NET = TWO_SERVERS + r"""
ok_port, refused_port = servers
seen = []
def fn(event, ctx):
    if event.kind in ("connect", "sendto", "bind"):
        seen.append([event.kind, event.host, event.port, event.protocol])
    return not (event.kind == "connect" and event.port == refused_port)
code = ("import socket, sys\nfor p in sys.argv[1:]:\n    s = socket.socket()\n    try:\n"
        "        s.connect(('127.0.0.1', int(p)))\n        print(p, 'ok')\n    except OSError as e:\n        print(p, e.errno)\n")
static = sys.argv[1]
box = sandlock.Sandbox(net_allow=["127.0.0.1:%d" % ok_port] if static == "narrow" else ["127.0.0.1"], policy_fn=fn)
r = box.run([PY, "-c", code, str(ok_port), str(refused_port)])
out["stdout"] = r.stdout.decode().split("\n")
out["seen"] = seen
out["ports"] = servers
"""


def test_a_callback_refuses_a_connect_to_one_port_and_allows_another(who) -> None:
    out = run_script(who, NET, "wide")
    ok, refused = out["ports"]
    assert out["stdout"][:2] == [f"{ok} ok", f"{refused} 1"]
    assert ["connect", "127.0.0.1", ok, "tcp"] in out["seen"]
    assert ["connect", "127.0.0.1", refused, "tcp"] in out["seen"]


def test_a_callback_that_allows_everything_never_widens_the_static_policy(who, scratch) -> None:
    out = run_script(who, NET, "narrow")
    ok, refused = out["ports"]
    assert out["stdout"][:2] == [f"{ok} ok", f"{refused} 13"]  # EACCES from the static rules
    assert ["connect", "127.0.0.1", refused, "tcp"] not in out["seen"]  # never asked
    # files: a path outside fs_writable stays refused whatever the callback says
    d = who.make_dir(scratch / "ro")
    body = r"""
asked = []
box = sandlock.Sandbox(policy_fn=lambda e, c: asked.append(e.path) or True)
r = box.run([PY, "-c", "open(__import__('sys').argv[1] + '/f', 'w')", sys.argv[1]])
out["rc"] = r.exit_code
out["err"] = r.stderr.decode()
out["asked"] = [p for p in asked if p and p.startswith(sys.argv[1])]
"""
    out = run_script(who, body, str(d))
    assert out["rc"] == 1 and "Permission denied" in out["err"]
    assert out["asked"] == []
    assert list(d.iterdir()) == []


NARROW = r"""
d = sys.argv[1]
def fn(event, ctx):
    if event.kind == "open" and event.path.endswith("/trigger"):
        ctx.deny_path(d + "/secret")
    return True
box = sandlock.Sandbox(fs_writable=[d], policy_fn=fn)
code = ("import sys, os\nd = sys.argv[1]\ndef read():\n    try:\n        return open(d + '/secret/data').read()\n"
        "    except OSError as e:\n        return e.errno\nprint(read())\nopen(d + '/trigger', 'w').close()\n"
        "print(read())\ntry:\n    os.stat(d + '/secret/data')\n    print('stat ok')\nexcept OSError as e:\n    print('stat', e.errno)\n")
r = box.run([PY, "-c", code, d])
out["stdout"] = r.stdout.decode()
r = box.run([PY, "-c", code.split("open(d + '/trigger'")[0], d])
out["next_run"] = r.stdout.decode()
"""


def test_deny_path_from_the_callback_holds_for_the_rest_of_the_run_only(who, scratch) -> None:
    d = who.make_dir(scratch / "n")
    who.make_dir(d / "secret")
    who.make_file(d / "secret" / "data", "hidden")
    out = run_script(who, NARROW, str(d))
    assert out["stdout"] == "hidden\n13\nstat 13\n"
    assert out["next_run"] == "hidden\n"  # a narrowing lasts one run


PROCS = r"""
def fn(event, ctx):
    if event.kind == "exec" and event.path.endswith("/true") and event.argv[-1:] == ("narrow",):
        ctx.set_max_processes(1)
    return True
code = ("import os, subprocess, sys\nsubprocess.run(['/bin/true', sys.argv[1]])\nmade = 0\nfor _ in range(3):\n"
        "    try:\n        pid = os.fork()\n    except OSError as e:\n        print('fork', e.errno)\n        break\n"
        "    if pid == 0:\n        os._exit(0)\n    made += 1\n    os.waitpid(pid, 0)\nprint('made', made)\n")
box = sandlock.Sandbox(max_processes=8, policy_fn=fn)
out["narrow"] = box.run([PY, "-c", code, "narrow"]).stdout.decode()
out["control"] = box.run([PY, "-c", code, "keep"]).stdout.decode()
try:
    unlimited = sandlock.Sandbox(policy_fn=fn).run([PY, "-c", code, "narrow"]).stdout.decode()
except Exception as e:
    unlimited = repr(e)
out["unlimited"] = unlimited
"""


def test_the_callback_lowers_the_process_limit_for_the_rest_of_the_run(who) -> None:
    out = run_script(who, PROCS)
    assert out["narrow"] == "fork 11\nmade 0\n"  # EAGAIN
    assert out["control"] == "made 3\n"
    assert out["unlimited"] == "fork 11\nmade 0\n"  # no static limit: a callback may still set one


RAISES = r"""
d = sys.argv[1]
def fn(event, ctx):
    if event.kind == "open" and event.path.endswith("/boom"):
        raise RuntimeError("callback bug")
    return True
box = sandlock.Sandbox(fs_writable=[d], policy_fn=fn)
code = ("import sys\nfor n in ('boom', 'after'):\n    try:\n        open(sys.argv[1] + '/' + n, 'w')\n        print(n, 'ok')\n"
        "    except OSError as e:\n        print(n, e.errno)\n")
r = box.run([PY, "-c", code, d])
out["stdout"] = r.stdout.decode()
out["files"] = sorted(os.listdir(d))
"""


def test_a_callback_that_raises_denies_with_eperm_and_the_run_goes_on(who, scratch) -> None:
    d = who.make_dir(scratch / "r")
    out = run_script(who, RAISES, str(d))
    assert out["stdout"] == "boom 1\nafter ok\n"
    assert out["files"] == ["after"]
    assert "policy_fn raised RuntimeError: callback bug" in out["_stderr"]


HANGS = r"""
d = sys.argv[1]
def fn(event, ctx):
    if event.kind == "open" and event.path.endswith("/slow"):
        time.sleep(2)
    return True
box = sandlock.Sandbox(fs_writable=[d], policy_fn=fn, policy_fn_timeout=0.5)
code = ("import sys, time\nfor n in ('slow', 'later'):\n    t = time.monotonic()\n    try:\n        open(sys.argv[1] + '/' + n, 'w')\n"
        "        print(n, 'ok')\n    except OSError as e:\n        print(n, e.errno, round(time.monotonic() - t, 2))\n    time.sleep(2.5)\n")
r = box.run([PY, "-c", code, d])
out["stdout"] = r.stdout.decode().split()
out["files"] = sorted(os.listdir(d))
"""


def test_a_callback_that_hangs_is_denied_after_its_time_bound_and_the_run_goes_on(who, scratch) -> None:
    d = who.make_dir(scratch / "h")
    out = run_script(who, HANGS, str(d))
    words = out["stdout"]
    assert words[:2] == ["slow", "1"] and 0.4 <= float(words[2]) < 1.9, words
    assert words[3:] == ["later", "ok"]
    assert out["files"] == ["later"]


RACE = r"""
prog, mode = sys.argv[1], sys.argv[2]
deny = sys.argv[3] == "deny"
def fn(event, ctx):
    if deny and event.kind == "exec" and (event.path.endswith("/false")
                                          or (event.path.endswith("/echo") and "denied!" in event.argv)):
        return errno.EACCES
    return True
box = sandlock.Sandbox(fs_readable=[os.path.dirname(prog)], **({"policy_fn": fn} if deny else {}))
args = ["path", "200", "/usr/bin/echo", "/usr/bin/false"] if mode == "path" else \
       ["argv", "200", "/usr/bin/echo", "allowed", "denied!"]
r = box.run([prog, *args])
out["line"] = r.stdout.decode().strip()
"""


def _counts(line: str) -> Dict[str, int]:
    assert line.startswith("exec_race "), line
    return {k: int(v) for k, v in (w.split("=") for w in line.split()[1:])}


@pytest.mark.parametrize("mode", ["path", "argv"])
def test_a_thread_rewriting_the_path_or_argv_of_an_exec_never_runs_what_the_callback_refused(who, progs, mode) -> None:
    out = _counts(run_script(who, RACE, progs["exec_race"], mode, "deny")["line"])
    assert out["status1"] == 0 and out["lines_denied"] == 0, out
    assert out["refused"] + out["killed"] < out["attempts"], out  # allowed execs still ran
    # control: the same probe without a callback runs the other program or argument
    control = _counts(run_script(who, RACE, progs["exec_race"], mode, "none")["line"])
    assert control["status1"] + control["lines_denied"] > 0, control
    assert control["killed"] == 0, control


def test_a_callback_refuses_an_exec_by_its_arguments_in_an_emulated_root(who, busybox_shared) -> None:  # noqa: F811
    body = r"""
seen = []
def fn(event, ctx):
    if event.kind == "exec":
        seen.append(list(event.argv))
        return "forbidden" not in event.argv
    return True
box = sandlock.Sandbox(chroot=sys.argv[1], policy_fn=fn)
r = box.run(["/bin/sh", "-c", "echo a; /bin/echo ok; /bin/echo forbidden; echo rc=$?"])
out["stdout"] = r.stdout.decode()
out["seen"] = seen
"""
    out = run_script(who, body, str(busybox_shared))
    assert out["stdout"] == "a\nok\nrc=126\n"
    assert ["/bin/echo", "forbidden"] in out["seen"]


FAILS = r"""
d = sys.argv[1]
asked = []
box = sandlock.Sandbox(fs_readable=[d], policy_fn=lambda e, c: asked.append(e.kind) or True)
code = ("import os, sys\ntry:\n    os.execv(sys.argv[1], [sys.argv[1]])\nexcept OSError as e:\n    print('exec', e.errno)\n"
        "print('went on')\n")
r = box.run([PY, "-c", code, d + "/garbage"])
out["stdout"] = r.stdout.decode()
out["asked"] = asked.count("exec")
"""


def test_an_exec_the_callback_allowed_that_fails_returns_its_error_and_the_program_goes_on(who, scratch) -> None:
    d = who.make_dir(scratch / "g")
    who.make_file(d / "garbage", b"\x01\x02 not a program\n", mode=0o755)
    out = run_script(who, FAILS, str(d))
    assert out["stdout"] == "exec 8\nwent on\n"  # ENOEXEC
    assert out["asked"] == 2


def test_an_exec_of_a_fifo_the_callback_allowed_fails_at_once_and_holds_nothing(who, scratch) -> None:
    d = who.make_dir(scratch / "fifo")
    import os
    os.mkfifo(d / "pipe", 0o755)
    who.own(d / "pipe")
    body = r"""
d = sys.argv[1]
box = sandlock.Sandbox(fs_readable=[d], policy_fn=lambda e, c: True)
code = ("import os, sys\ntry:\n    os.execv(sys.argv[1], [sys.argv[1]])\nexcept OSError as e:\n    print('exec', e.errno)\n")
t = time.monotonic()
out["stdout"] = box.run([PY, "-c", code, d + "/pipe"], timeout=30).stdout.decode()
out["took"] = time.monotonic() - t
"""
    out = run_script(who, body, str(d))
    assert out["stdout"] == "exec 13\n" and out["took"] < 10, out  # EACCES, as without a callback


NET_NARROW = TWO_SERVERS + r"""
a, b = servers
binds = []
def fn(event, ctx):
    if event.kind == "bind":
        binds.append([event.host, event.port, event.protocol])
    if event.kind == "connect" and event.port == a:
        ctx.restrict_network(allow=["127.0.0.1:%d" % a], bind=["udp://*"])
    return True
code = ("import socket, sys\ndef c(p):\n    s = socket.socket()\n    try:\n        s.connect(('127.0.0.1', p))\n        return 'ok'\n"
        "    except OSError as e:\n        return e.errno\ndef b(kind):\n    s = socket.socket(socket.AF_INET, kind)\n    try:\n"
        "        s.bind(('127.0.0.1', 0))\n        return 'ok'\n    except OSError as e:\n        return e.errno\n"
        "a, b_ = int(sys.argv[1]), int(sys.argv[2])\nprint(c(b_), b(socket.SOCK_STREAM), c(a), c(b_), c(a), b(socket.SOCK_STREAM), b(socket.SOCK_DGRAM))\n")
box = sandlock.Sandbox(net_allow=["127.0.0.1"], net_allow_bind=["*"], policy_fn=fn)
out["stdout"] = box.run([PY, "-c", code, str(a), str(b)]).stdout.decode()
out["binds"] = binds
"""


def test_restrict_network_from_the_callback_narrows_connects_and_binds_for_the_rest_of_the_run(who) -> None:
    out = run_script(who, NET_NARROW)
    # before: b and a TCP bind allowed; after the first connect to a: only a, and UDP binds
    assert out["stdout"] == "ok ok ok 13 ok 13 ok\n"
    assert out["binds"][0] == ["127.0.0.1", 0, "tcp"] and out["binds"][-1] == ["127.0.0.1", 0, "udp"]


MEMORY = r"""
def fn(event, ctx):
    if event.kind == "exec" and event.path.endswith("/true"):
        ctx.set_max_memory(32 << 20)
    return True
code = ("import subprocess, sys, time\nsubprocess.run(['/bin/true'] if sys.argv[1] == 'narrow' else ['/bin/echo', '-n'])\n"
        "x = bytearray(200 << 20)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\ntime.sleep(2)\nprint('survived')\n")
box = sandlock.Sandbox(policy_fn=fn)
r = box.run([PY, "-c", code, "narrow"])
out["narrow"] = [r.stdout.decode(), r.reason]
r = box.run([PY, "-c", code, "keep"])
out["control"] = [r.stdout.decode(), r.reason]
"""


def test_the_callback_lowers_the_memory_limit_and_a_run_above_it_is_ended(who) -> None:
    out = run_script(who, MEMORY)
    assert out["control"][0] == "survived\n"
    assert out["narrow"][0] == "" and "memory limit exceeded" in out["narrow"][1], out


ROOT_RACE = r"""
root, deny = sys.argv[1], sys.argv[2] == "deny"
def fn(event, ctx):
    return not (event.kind == "exec" and event.argv[:1] == ("/bin/echo",) and "denied!" in event.argv)
box = sandlock.Sandbox(chroot=root, **({"policy_fn": fn} if deny else {}))
r = box.run(["/bin/exec_race", "argv", "200", "/bin/echo", "allowed", "denied!"])
out["line"] = r.stdout.decode().strip()
"""


def test_in_an_emulated_root_a_thread_rewriting_argv_never_runs_what_the_callback_refused(who, progs, bb) -> None:  # noqa: F811
    if not progs.static:
        pytest.skip("needs the static build of tests/progs (a static libc) to run inside the busybox root")
    import shutil
    shutil.copy(progs["exec_race"], bb / "bin" / "exec_race")
    out = _counts(run_script(who, ROOT_RACE, str(bb), "deny")["line"])
    assert out["lines_denied"] == 0, out
    assert out["refused"] + out["killed"] < out["attempts"], out
    control = _counts(run_script(who, ROOT_RACE, str(bb), "none")["line"])
    assert control["lines_denied"] > 0 and control["killed"] == 0, control


CONFINED = r"""
outside = sys.argv[1]
tried = {}
def fn(event, ctx):
    if event.kind == "exec" and "tried" not in tried:
        try:
            tried["tried"] = open(outside).read()
        except OSError as e:
            tried["tried"] = e.errno
    return True
sandlock.Sandbox(policy_fn=fn).run(["/bin/true"])
out["callback"] = tried["tried"]
out["caller"] = open(outside).read()
"""


def test_the_callback_runs_confined_and_cannot_read_what_the_policy_does_not_grant(who, scratch) -> None:
    d = who.make_dir(scratch / "c")
    secret = who.make_file(d / "secret", "mine")
    out = run_script(who, CONFINED, str(secret))
    assert out["caller"] == "mine"   # control: the same read outside the callback
    assert out["callback"] == 13     # EACCES: the supervisor's Landlock domain


def test_a_policy_fn_that_is_not_callable_or_a_wrong_bound_is_a_policy_error() -> None:
    import sandlock
    for kwargs, word in (({"policy_fn": 3}, "policy_fn"), ({"policy_fn": print, "policy_fn_timeout": 0}, "policy_fn_timeout"),
                         ({"policy_fn_timeout": 1}, "policy_fn_timeout")):
        with pytest.raises(sandlock.PolicyError, match=word):
            sandlock.Sandbox(**kwargs)


def test_the_event_is_an_immutable_copy() -> None:
    from sandlock import _policyfn
    event = _policyfn.Event("exec", 1, path="/bin/x", argv=("x", "y"))
    with pytest.raises(AttributeError):
        event.path = "/bin/y"  # type: ignore[misc]
    assert isinstance(event.argv, tuple)
    assert json.dumps(event._asdict())
