"""Host information through /proc (README "What the sandbox allows", SECURITY.md "Host /proc").

Every probe runs INSIDE a sandbox, as root and as the unprivileged user (the
`who` fixture), in three views: "host" (the default policy, no --root),
"slash" (host mode with `-r /`, whose grant covers /proc) and "root" (the
Debian root filesystem, `--root`).  A host process started outside every
sandbox (as the same identity) carries a canary as its argv[0] and in its
environment; a unix socket bound outside carries a canary in its name.

What must hold: /proc lists only the sandbox's processes; a host pid is
neither listed nor reachable by any spelling (ENOENT); /proc/keys,
key-users, locks, timer_list, slabinfo, cmdline are absent; boot_id is a
per-run random value; mountinfo/mounts list only what the command can reach;
/proc/net/unix shows no host socket; and a thread racing the supervisor never
reads a host /proc file.  Controls: the sandbox's own processes are listed and
readable, /proc/self/* works, ps/top work, and the same racer reaches a
process of the sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

from conftest import SYSTEM_PYTHON, SYSTEM_READ

from .conftest import SECRET, Greeter, SecProgs

RUN_TIMEOUT = 120
HIDDEN = ("keys", "key-users", "locks", "timer_list", "slabinfo", "cmdline", "sysvipc/shm")

PROBE = r'''
import errno, json, os, sys

pid, canary = int(sys.argv[1]), sys.argv[2]

def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))

def read(path, **kw):
    try:
        fd = os.open(path, os.O_RDONLY, **kw)
    except OSError as e:
        return err(e)
    try:
        data = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        return data.decode("latin-1").encode("ascii", "backslashreplace").decode()
    finally:
        os.close(fd)

def attempt(fn, *args, **kw):
    try:
        out = fn(*args, **kw)
        return "OK " + (str(out) if not isinstance(out, os.stat_result) else "stat")
    except OSError as e:
        return err(e)

QUIET = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)]
out = {}
out["listing"] = sorted(e for e in os.listdir("/proc") if e.isdigit())
out["listing_names"] = sorted(os.listdir("/proc"))
out["self"] = os.getpid()
host = {}
for spelling in ("/proc/%d", "/proc//%d", "/proc/./%d", "/proc/self/../%d", "/proc/sys/../%d"):
    p = spelling % pid
    host[p + "/cmdline"] = read(p + "/cmdline")
    host[p + "/environ"] = read(p + "/environ")
    host[p + "/status"] = read(p + "/status")
    host[p + "/fd"] = attempt(os.listdir, p + "/fd")
    host[p + "/exe"] = attempt(os.readlink, p + "/exe")
    host[p + "/cwd"] = attempt(os.readlink, p + "/cwd")
    host[p] = attempt(os.stat, p)
    host["lstat " + p] = attempt(os.lstat, p)
    host["access " + p] = attempt(os.access, p, os.F_OK)
    host["chdir " + p] = attempt(os.chdir, p)
    host["O_PATH " + p] = attempt(os.open, p, os.O_PATH)
    host["exec " + p + "/exe"] = attempt(lambda: os.waitpid(os.posix_spawn(p + "/exe", ["x", "--version"], {}, file_actions=QUIET), 0))
    os.chdir("/")
d = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
host["dirfd cmdline"] = read("%d/cmdline" % pid, dir_fd=d)
host["dirfd stat"] = attempt(os.stat, str(pid), dir_fd=d)
host["dirfd listing"] = sorted(e for e in os.listdir(d) if e.isdigit())
os.close(d)
os.chdir("/proc")
host["cwd cmdline"] = read("%d/cmdline" % pid)
host["cwd listing"] = sorted(e for e in os.listdir(".") if e.isdigit())
host["cwd self"] = read("self/status").split("\n")[0]
os.chdir("/")
out["host"] = host
out["hidden"] = {name: read("/proc/" + name) for name in sys.argv[3].split(",")}
out["hidden_stat"] = {name: attempt(os.stat, "/proc/" + name) for name in sys.argv[3].split(",")}
out["boot_id"] = read("/proc/sys/kernel/random/boot_id")
out["boot_id_again"] = read("/proc/sys/kernel/random/boot_id")
for name in ("/proc/net/unix", "/proc/self/net/unix", "/proc/%d/net/unix" % os.getpid(),
             "/proc/self/mountinfo", "/proc/self/mounts", "/proc/mounts", "/proc/%d/mountinfo" % os.getpid(),
             "/proc/thread-self/mountinfo"):
    out[name.replace(str(os.getpid()), "PID")] = read(name)
out["self_fd"] = sorted(os.listdir("/proc/self/fd"), key=int)
out["self_exe"] = os.readlink("/proc/self/exe")
out["self_status"] = read("/proc/self/status").split("\n")[0]
out["self_maps"] = len(read("/proc/self/maps").splitlines())
for name in ("cpuinfo", "meminfo", "stat", "uptime", "loadavg"):
    out[name] = len(read("/proc/" + name))
json.dump(out, sys.stdout)
'''


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


class View:
    """One sandbox configuration, with the Python the probe runs under."""

    def __init__(self, mode: str, who, deb: Path) -> None:  # type: ignore[no-untyped-def]
        self.mode, self.who, self.deb = mode, who, deb

    def options(self) -> List[str]:
        if self.mode == "slash":
            return ["-r", "/"]
        if self.mode == "root":
            return ["--root", str(self.deb)]
        return []

    def run(self, command: List[str], *extra: str) -> subprocess.CompletedProcess:
        return self.who.run([*self.options(), *extra, "--", *command], timeout=RUN_TIMEOUT)


@pytest.fixture(params=["host", "slash", "root"])
def view(request: pytest.FixtureRequest, who, deb_root: Path) -> View:  # type: ignore[no-untyped-def]
    return View(request.param, who, deb_root)


@pytest.fixture
def outsider(who) -> Iterator[subprocess.Popen]:  # type: ignore[no-untyped-def]
    """A host process of the same identity: argv[0] and its environment hold SECRET."""
    code = f'import os; os.execve("/bin/sleep", ["{SECRET}", "300"], {{"{SECRET}": "1"}})'
    proc = who.spawn_outside([SYSTEM_PYTHON, "-c", code])
    try:
        for _ in range(200):  # until the exec is done
            try:
                if Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(SECRET.encode()):
                    break
            except OSError:
                pass
            import time
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def probe(view: View, pid: int) -> dict:
    r = view.run([SYSTEM_PYTHON, "-c", PROBE, str(pid), SECRET, ",".join(HIDDEN)])
    assert r.returncode == 0, show(r)
    assert SECRET not in r.stdout, f"a host process's argv or environment reached the sandbox:\n{show(r)}"
    return json.loads(r.stdout)


def test_a_host_process_is_neither_listed_nor_reachable_by_any_spelling(view: View, outsider) -> None:
    got = probe(view, outsider.pid)
    assert str(outsider.pid) not in got["listing"], got["listing"]
    assert "1" not in got["listing"], got["listing"]
    assert str(got["self"]) in got["listing"], got["listing"]
    assert set(got["listing"]) <= set(got["host"]["dirfd listing"]) | {str(got["self"])}
    for key in ("dirfd listing", "cwd listing"):
        assert str(outsider.pid) not in got["host"][key] and "1" not in got["host"][key], (key, got["host"][key])
    for key, value in got["host"].items():
        if key in ("dirfd listing", "cwd listing"):
            continue
        if key == "cwd self":
            assert value.startswith("Name:"), (key, value)  # control: /proc/self from cwd /proc
            continue
        if key.startswith("access "):
            assert value == "OK False", f"{key}: {value!r} (access F_OK of a host process)"
            continue
        assert value == "ENOENT", f"{key}: {value!r} (a host process must not exist for the sandbox)"


def test_pid_1_is_neither_listed_nor_readable(view: View) -> None:
    got = probe(view, 1)
    assert "1" not in got["listing"], got["listing"]
    for key in ("/proc/1/cmdline", "/proc/1/environ", "/proc/1/status", "/proc/1/exe", "/proc/1", "chdir /proc/1"):
        assert got["host"][key] == "ENOENT", (key, got["host"][key])


def test_host_wide_files_are_hidden_and_boot_id_is_per_run(view: View, outsider) -> None:
    got = probe(view, outsider.pid)
    for name in HIDDEN:
        assert got["hidden"][name] == "ENOENT", (name, got["hidden"][name][:200])
        assert got["hidden_stat"][name] == "ENOENT", (name, got["hidden_stat"][name])
        assert name.split("/")[0] not in got["listing_names"], name
    host_boot_id = Path("/proc/sys/kernel/random/boot_id").read_text()
    assert len(got["boot_id"].strip()) == 36 and got["boot_id"] != host_boot_id, got["boot_id"]
    assert got["boot_id"] == got["boot_id_again"], "boot_id changed within one run"
    again = probe(view, outsider.pid)
    assert again["boot_id"] != got["boot_id"], "boot_id is the same in two runs"


def test_proc_net_unix_shows_no_host_socket(view: View, scratch: Path, outsider) -> None:
    name = f"sock-{SECRET}-{uuid.uuid4().hex[:6]}"
    listener = Greeter(scratch, name, b"hi\n")
    try:
        assert name.encode() in Path("/proc/net/unix").read_bytes(), "control: the host lists the socket"
        got = probe(view, outsider.pid)
        for key in ("/proc/net/unix", "/proc/self/net/unix", "/proc/PID/net/unix"):
            assert got[key].startswith("Num"), (key, got[key][:200])
            assert name not in got[key] and len(got[key].splitlines()) == 1, (key, got[key][:400])
    finally:
        listener.close()


def _mount_points(text: str, field: int) -> List[str]:
    assert text and text == text.strip() + "\n", f"not a mount table: {text[:200]!r}"
    return [line.split()[field] for line in text.splitlines()]


def test_mountinfo_lists_only_what_the_command_can_reach(view: View, outsider) -> None:
    got = probe(view, outsider.pid)
    host_points = _mount_points(Path("/proc/self/mountinfo").read_text(), 4)
    for key, field in (("/proc/self/mountinfo", 4), ("/proc/PID/mountinfo", 4), ("/proc/thread-self/mountinfo", 4),
                       ("/proc/self/mounts", 1), ("/proc/mounts", 1)):
        points = _mount_points(got[key], field)
        assert "/" in points and "/proc" in points, (key, got[key][:400])
        assert not any(p.startswith("/proc/") for p in points), (key, points)
        if view.mode == "host":
            # the default view: /usr, /etc, ... and the directories above them;
            # a host mount elsewhere (/sys, /run, /tmp ...) is not shown
            assert "/sys" not in points and "/run" not in points, (key, points)
            assert set(points) <= set(host_points), (key, points)
        if view.mode == "slash":
            assert "/sys" in points or "/sys" not in host_points, (key, points)  # control: -r / reaches /sys


def test_the_sandboxs_own_proc_works(view: View) -> None:
    got = probe(view, 1)
    assert got["self_status"].startswith("Name:"), got["self_status"]
    assert got["self_maps"] > 3, got
    assert "python3" in got["self_exe"], got["self_exe"]
    assert {"0", "1", "2"} <= set(got["self_fd"]), got["self_fd"]
    for name in ("cpuinfo", "meminfo", "stat", "uptime", "loadavg"):
        assert not isinstance(got[name], str) and got[name] > 0, (name, got[name])
    assert "self" in got["listing_names"] and "meminfo" in got["listing_names"], got["listing_names"]


def test_the_sandboxs_own_processes_are_listed_and_readable(view: View) -> None:
    r = view.run(["sh", "-c", "sleep 2 & p=$!; ls /proc; echo PID=$$ CHILD=$p; tr '\\0' ' ' < /proc/$p/cmdline; echo"])
    assert r.returncode == 0, show(r)
    lines = r.stdout.split()
    shell = next(w[4:] for w in lines if w.startswith("PID="))
    child = next(w[6:] for w in lines if w.startswith("CHILD="))
    listed = [w for w in lines if w.isdigit()]
    assert shell in listed and child in listed, show(r)
    assert "sleep 2" in r.stdout, show(r)
    assert "1" not in listed and str(os.getpid()) not in listed, show(r)


def test_ps_and_top_show_only_the_sandbox(view: View) -> None:
    r = view.run(["ps", "-e", "-o", "pid=,comm="])
    assert r.returncode == 0, show(r)
    assert [line.split()[1] for line in r.stdout.splitlines()] == ["ps"], show(r)
    r = view.run(["top", "-bn1"], "--env", "TERM=dumb")
    assert r.returncode == 0, show(r)
    table = r.stdout.split(" COMMAND\n", 1)[1]
    assert [line.split()[-1] for line in table.splitlines() if line.strip()] == ["top"], show(r)


# --- the racing thread --------------------------------------------------------------------------

def _flip_paths(allowed: str, forbidden: str) -> List[str]:
    """Pad the shorter of two /proc paths with slashes after /proc/ (the kernel ignores them)."""
    diff = len(forbidden) - len(allowed)
    if diff > 0:
        allowed = "/proc/" + "/" * diff + allowed[len("/proc/"):]
    elif diff < 0:
        forbidden = "/proc/" + "/" * -diff + forbidden[len("/proc/"):]
    return [allowed, forbidden]


def _race(view: View, secprogs: SecProgs, forbidden: str, control: bool) -> subprocess.CompletedProcess:
    allowed, forbidden = _flip_paths("/proc/self/status", forbidden)
    command = ["race_flip", "open", allowed, forbidden, SECRET, "0:0", "10000", "8", "1" if control else "0"]
    extra: List[str] = []
    if view.mode == "root":  # the static build, mounted into the Debian root
        extra = ["--fs-mount", f"/probe:{secprogs.musl_dir}:ro"]
        command[0] = "/probe/race_flip"
    else:
        command[0] = str(secprogs.host("race_flip"))
        if view.mode == "host":  # the default view, written out (/proc included), plus the racer
            extra = [*SYSTEM_READ, "-r", "/proc", "-r", str(secprogs.host_dir)]
    if control:  # the racer's own environment starts with SECRET: /proc/self/environ is allowed
        command = ["env", "-i", f"{SECRET}=1", *command]
    return view.run(command, *extra)


def test_a_racing_thread_never_reads_a_host_proc_file(view: View, secprogs: SecProgs, outsider) -> None:
    r = _race(view, secprogs, f"/proc/{outsider.pid}/cmdline", control=False)
    print("\n".join(line for line in r.stdout.splitlines() if line.startswith(("RESULT", "ESCAPED"))))
    assert r.returncode == 0, show(r)
    assert "ESCAPED" not in r.stdout and SECRET not in r.stdout, f"ESCAPE through /proc:\n{show(r)}"
    assert "leaked=0" in r.stdout and "allowed=0" not in r.stdout and "failed=0" not in r.stdout, show(r)


def test_the_racer_reaches_a_proc_file_of_the_sandbox(view: View, secprogs: SecProgs) -> None:
    """Control: the same racer flipping to /proc/self/environ, which starts with SECRET."""
    r = _race(view, secprogs, "/proc/self/environ", control=True)
    assert r.returncode == 0, show(r)
    assert "ESCAPED" in r.stdout, f"the control racer never read the allowed twin:\n{show(r)}"
