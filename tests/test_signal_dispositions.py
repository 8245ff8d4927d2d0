"""Ignored signals the command inherits: what subprocess gives (docs/design.md "Launch").

A signal the caller ignores (nohup's SIGHUP, a background job's SIGINT) stays ignored in
the command, as it would bare; SIGPIPE and SIGXFSZ, which Python ignores for itself, are
default again, as subprocess makes them; and so are SIGINT and SIGQUIT when sandlock's CLI
ignored them itself (the command sharing its process group).  As root and as the user,
through the API (a first run launched directly, later ones from the fork server) and the CLI.
"""

from __future__ import annotations

import json

CODE = r"""
import json, signal, subprocess, sys
import sandlock
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
def ignored(out):
    line = [l for l in out.decode().splitlines() if l.startswith("SigIgn:")][0]
    mask = int(line.split()[1], 16)
    return [n for n in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGPIPE,
                        signal.SIGXFSZ) if mask & (1 << (n - 1))]
argv = ["grep", "SigIgn", "/proc/self/status"]
box = sandlock.Sandbox()
out = {"bare": ignored(subprocess.run(argv, capture_output=True).stdout),
       "api": [ignored(box.run(argv).stdout) for _ in range(3)],
       "cli": ignored(subprocess.run([sys.executable, "-m", "sandlock", "--", *argv], capture_output=True,
                                     stdin=subprocess.DEVNULL).stdout)}
print(json.dumps(out))
"""


def test_a_signal_the_caller_ignores_stays_ignored_and_pythons_own_are_reset_as_subprocess_does(who) -> None:  # type: ignore[no-untyped-def]
    r = who.python(CODE)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().splitlines()[-1])
    assert out["bare"] == [1, 10]  # SIGHUP, SIGUSR1: inherited; SIGPIPE, SIGXFSZ reset by subprocess
    assert out["api"] == [[1, 10]] * 3, out
    assert out["cli"] == [1, 10], out


CHILD_SIGNAL = r"""
import json, signal, subprocess, sys, time
import sandlock
signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children reaped by the kernel, for nobody
argv = ["grep", "SigIgn", "/proc/self/status"]
def ignored(r):
    return bool(int(r.stdout.decode().split()[1], 16) & (1 << (signal.SIGCHLD - 1)))
def seen(box):
    return [box.run(["sh", "-c", "exit 3"]).returncode, ignored(box.run(argv))]
box = sandlock.Sandbox()
runs = [seen(box)]   # launched directly (a Sandbox's first two runs)
deadline = time.monotonic() + 30
while not (box._server is not None and box._server.usable()) and time.monotonic() < deadline:
    time.sleep(0.01)
runs += [seen(box) for _ in range(2)]   # from the fork server
served = box._server.usable()
print(json.dumps({"runs": runs, "served": served, "bare_ignored": ignored(subprocess.run(argv, capture_output=True))}))
"""


def test_a_caller_that_ignores_sigchld_gets_its_commands_exit_status_and_the_command_inherits_it(who) -> None:  # type: ignore[no-untyped-def]
    r = who.python(CHILD_SIGNAL)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().splitlines()[-1])
    assert out["bare_ignored"] is True   # control: subprocess's child inherits the ignored SIGCHLD
    assert out["runs"] == [[3, True]] * 3 and out["served"], out
