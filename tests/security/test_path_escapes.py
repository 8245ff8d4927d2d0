"""Path escapes and TOCTOU races against the filesystem policy (docs/design.md "Security rules",
"Filesystem policy", "Emulated root").

Every probe runs INSIDE a sandbox, as root and as the unprivileged user (the
`who` fixture), without `--root` ("host": the canary is outside every -r/-w
rule) and with `--root` ("root": the canary is a host file outside the root).
The probes are C programs (tests/security/progs): gcc builds for the host,
static musl builds copied into a private busybox root.

Layout, in the per-test scratch directory (names of the same length, so a
racer can flip one path into the other in place):

    w/   the writable directory (-w); planted symlinks and allowed files
    o/   the canary's directory: o/canary holds SECRET; outside every rule
    w/CANARY, w/SAY, w/SOCK (controls of the races): the allowed twins of
         o/canary, o/say, o/sock, names of the same length for the racer

With `--root` the guest path of w/ is the same string as the host
path, made inside the root; o/ does not exist inside the root, so a probe
that reads SECRET through the host path of the canary has escaped.

A probe prints "ESCAPED <how>" or "HELD <errno>" per attempt.  Each test
asserts no ESCAPED line and an unchanged o/ (content, mode, owner, times,
entries).  Each probe class has a control run in which the same probe must
report ESCAPED, because what it targets is allowed: the canary made readable
with `-r o` (host), a twin at the canary's path inside the root (root), or
for the races the same racer against the allowed twins in w/ (the same
directory as the allowed side).  A control that cannot see an escape would
make the real run meaningless.

Budget: every racer stops at RACE_ATTEMPTS attempts or RACE_SECONDS seconds;
SANDLOCK_SECURITY_RACE_SECONDS raises the time bound for a longer soak.
Exec is raced twice: "exec" forks and runs the program the kernel picked
(proof that a program ran; a sandboxed fork+exec costs ~6 ms here, so ~1000
attempts in the budget), and "exec_inplace" execs in place without a fork:
the allowed program is kept open for writing (ETXTBSY once the kernel opened
it) and the forbidden one is garbage (ENOEXEC once the kernel opened it), so
every attempt fails and the errno names the file; it makes the 10^4 attempts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import pytest

from conftest import SYSTEM_READ, tree_snapshot

from .conftest import SECRET, Greeter, Guest, SecProgs

RACE_ATTEMPTS = 10_000
RACE_SECONDS = float(os.environ.get("SANDLOCK_SECURITY_RACE_SECONDS", "6"))
RUN_TIMEOUT = 60

# Probe classes of escape_probe (the first word after ESCAPED/HELD).
CLASSES = ("direct", "dotdot", "symlink", "dirfd", "proc_self", "proc_fd", "openat2", "fdpass")
RACES = ("open", "stat", "rename", "rename_dst", "exec", "exec_inplace", "connect", "symswap")


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def devino(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


class Env(Guest):
    """One sandbox configuration: host (no --root) or root (a private busybox root)."""

    def __init__(self, mode: str, who, scratch: Path, progs: SecProgs,  # type: ignore[no-untyped-def]
                 guest: Optional[Path]) -> None:
        super().__init__(who, scratch, progs, guest, ("escape_probe", "race_flip", "race_symswap"))
        self.mode = mode
        self.w, self.o = scratch / "w", scratch / "o"
        self.canary = who.make_file(who.make_dir(self.o) / "canary", SECRET + "\n", 0o644)
        who.make_dir(self.host(self.w))
        self.listeners: List[Greeter] = []

    def binary(self, name: str) -> Path:
        """A helper built for where it runs: gcc on the host, static musl in a busybox root."""
        return self.progs.host(name) if self.guest is None else self.progs.musl(name)

    def prog(self, name: str) -> str:
        return str(self.progs.host(name)) if self.guest is None else f"/probe/{name}"

    def rules(self, *extra: str) -> List[str]:
        if self.guest is None:
            return [*SYSTEM_READ, "-r", str(self.progs.host_dir), "-r", "/proc", "-w", str(self.w), *extra]
        return ["--root", str(self.guest), "-w", str(self.w), *extra]

    def run(self, command: Sequence[str], *extra: str) -> subprocess.CompletedProcess:
        return self.who.run([*self.rules(*extra), "--", *command], timeout=RUN_TIMEOUT)

    def twin(self) -> Path:
        """The allowed twin of o/ for the controls of the races: w/CANARY holds SECRET."""
        w = self.host(self.w)
        self.who.make_file(w / "CANARY", SECRET + "\n", 0o644)
        return w

    def listen(self, directory: Path, name: str = "sock") -> Greeter:
        listener = Greeter(directory, name, SECRET.encode() + b"\n")
        self.listeners.append(listener)
        return listener

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()


@pytest.fixture(params=["host", "root"])
def env(request: pytest.FixtureRequest, who, scratch: Path, secprogs: SecProgs) -> Iterator[Env]:  # type: ignore[no-untyped-def]
    guest = request.getfixturevalue("busybox_root") if request.param == "root" else None
    e = Env(request.param, who, scratch, secprogs, guest)
    try:
        yield e
    finally:
        e.close()


def verdicts(r: subprocess.CompletedProcess) -> List[List[str]]:
    return [line.split() for line in r.stdout.splitlines() if line.startswith(("ESCAPED ", "HELD "))]


def escaped_lines(r: subprocess.CompletedProcess) -> List[str]:
    return [line for line in r.stdout.splitlines() if line.startswith("ESCAPED")]


# --- 1. path escapes ------------------------------------------------------------------------------

def plant_symlinks(env: Env) -> None:
    w = env.host(env.w)
    os.symlink(str(env.canary), w / "abs")  # absolute: the canary's host path
    os.symlink(f"../{env.o.name}/canary", w / "rel")  # relative: w/ and o/ are siblings
    os.symlink("/", w / "root")
    os.symlink("../" * 12, w / "up")
    for name in ("abs", "rel", "root", "up"):
        env.who.own(w / name)


def run_escape_probe(env: Env, target: Path, *extra: str) -> subprocess.CompletedProcess:
    plant_symlinks(env)
    return env.run([env.prog("escape_probe"), "paths", SECRET, devino(target), str(env.w), str(env.o), "canary"],
                   *extra)


def test_no_path_spelling_reaches_the_canary(env: Env) -> None:
    before = tree_snapshot(env.o)
    r = run_escape_probe(env, env.canary)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    assert not escaped_lines(r), f"ESCAPE: the sandbox let a probe reach the host canary:\n{show(r)}"
    assert SECRET not in r.stdout + r.stderr, show(r)
    assert tree_snapshot(env.o) == before, "the canary's directory changed"
    seen = {v[1] for v in verdicts(r)}
    assert seen >= set(CLASSES), f"probe classes missing from the output: {set(CLASSES) - seen}\n{show(r)}"
    summary = re.search(r"^SUMMARY proc_pid pids=(\d+) escaped=(\d+)", r.stdout, re.M)
    assert summary and int(summary.group(1)) >= 1 and summary.group(2) == "0", show(r)


def test_the_escape_probes_see_a_canary_the_policy_allows(env: Env) -> None:
    """Control: the same probes, with the canary readable; each class must report ESCAPED."""
    if env.guest is None:
        target, extra = env.canary, ("-r", str(env.o))
    else:  # a twin at the canary's path inside the root
        target, extra = env.who.make_file(env.host(env.o) / "canary", SECRET + "\n", 0o644), ()
        env.who.own(target.parent)
    r = run_escape_probe(env, target, *extra)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    escaped = escaped_lines(r)
    for cls in CLASSES:
        assert any(line.split()[1:3] == [cls, "read"] for line in escaped), f"{cls} read never escaped:\n{show(r)}"
        if cls != "openat2":
            assert any(line.split()[1:3] == [cls, "stat"] for line in escaped), \
                f"{cls} stat never escaped:\n{show(r)}"
    assert any(line.startswith("ESCAPED proc_pid read /proc/PID/root") for line in escaped), show(r)
    assert any(line.startswith("ESCAPED proc_pid read /proc/PID/cwd") for line in escaped), show(r)
    for label in (f"{env.w}/abs", f"{env.w}/rel", f"{env.w}/pabs", f"{env.w}/prel"):
        assert f"ESCAPED symlink read {label}" in escaped, f"{label}:\n{show(r)}"


MOVES = ("link", "link_follow", "exchange", "rename")


def run_moves(env: Env, target: Path, *extra: str) -> subprocess.CompletedProcess:
    plant_symlinks(env)
    return env.run([env.prog("escape_probe"), "moves", SECRET, devino(target), str(env.w), str(env.o), "canary"],
                   *extra)


def test_no_link_or_rename_brings_the_canary_into_a_writable_directory(env: Env) -> None:
    """Hard links (also through a planted symlink, AT_SYMLINK_FOLLOW), rename and
    RENAME_EXCHANGE of the canary into w/, then read and stat it there."""
    before = tree_snapshot(env.o)
    r = run_moves(env, env.canary)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    assert not escaped_lines(r), f"ESCAPE: the canary was brought into w/:\n{show(r)}"
    assert SECRET not in r.stdout + r.stderr, show(r)
    assert tree_snapshot(env.o) == before, f"the canary's directory changed:\n{show(r)}"
    held = {(v[2], v[3]) for v in verdicts(r) if v[0] == "HELD" and v[1] == "move"}
    assert held == {(op, way) for op in ("read", "stat") for way in MOVES}, show(r)


def test_the_move_probes_bring_in_a_canary_the_policy_lets_them_move(env: Env) -> None:
    """Control: o/ writable (host: -w o; root: a twin at the canary's path inside the root)."""
    if env.guest is None:
        target, extra = env.canary, ("-w", str(env.o))
    else:
        target, extra = env.who.make_file(env.host(env.o) / "canary", SECRET + "\n", 0o644), ()
        env.who.own(target.parent)
        extra = ("-w", str(env.o))
    r = run_moves(env, target, *extra)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    escaped = {(v[2], v[3]) for v in verdicts(r) if v[0] == "ESCAPED" and v[1] == "move"}
    assert escaped == {(op, way) for op in ("read", "stat") for way in MOVES}, show(r)


def test_open_by_handle_at_the_shocker_pattern_is_refused(env: Env) -> None:
    r = env.run([env.prog("escape_probe"), "shocker", SECRET, str(env.canary)])
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    assert not escaped_lines(r), f"ESCAPE: open_by_handle_at opened a file:\n{show(r)}"
    assert "GOT " not in r.stdout, f"name_to_handle_at worked in the sandbox:\n{show(r)}"
    for line in ("HELD shocker name_to_handle_at / EPERM", f"HELD shocker name_to_handle_at {env.canary} EPERM",
                 "HELD shocker open_by_handle_at forged-ino2 EPERM"):
        assert line in r.stdout.splitlines(), show(r)


def test_the_shocker_probe_gets_handles_outside_a_sandbox(test_user, secprogs: SecProgs, scratch: Path) -> None:
    """Control, unsandboxed and only as the unprivileged user (never as root outside a sandbox)."""
    canary = scratch / "canary"
    canary.write_text(SECRET + "\n")
    canary.chmod(0o644)
    r = subprocess.run(test_user.wrap([str(secprogs.host("escape_probe")), "shocker", SECRET, str(canary)]),
                       capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd="/")
    lines = r.stdout.splitlines()
    assert r.returncode == 0, show(r)
    assert any(line.startswith("GOT shocker name_to_handle_at / ") for line in lines), show(r)
    assert any(line.startswith(f"GOT shocker name_to_handle_at {canary} ") for line in lines), show(r)
    # Without CAP_DAC_READ_SEARCH the kernel refuses the open itself.
    assert "HELD shocker open_by_handle_at / EPERM" in lines, show(r)


# --- 2. TOCTOU races ------------------------------------------------------------------------------

def forbidden_path(env: Env, name: str, control: bool) -> Path:
    """The forbidden side of a race: o/NAME, or for a control its allowed twin w/NAME-IN-CAPITALS."""
    return env.w / name.upper() if control else env.o / name


def race_command(env: Env, op: str, control: bool) -> List[str]:
    """The racer for op: allowed side in w/, forbidden side in o/ (or, for a control, the twin in w/)."""
    w = env.host(env.w)
    env.who.make_file(w / "canary", "ALLOWED\n", 0o644)
    target = env.host(forbidden_path(env, "canary", control)) if control else env.canary
    flags = [str(RACE_ATTEMPTS), str(RACE_SECONDS), "1" if control else "0"]
    if op == "symswap":
        relative = "CANARY" if control else f"../{env.o.name}/canary"
        return [env.prog("race_symswap"), str(env.w), str(env.w / "canary"),
                str(forbidden_path(env, "canary", control)), relative, SECRET, devino(target), *flags]
    name = {"exec": "say", "exec_inplace": "run", "connect": "sock"}.get(op, "canary")
    if op == "exec":
        bad = forbidden_path(env, "say", control)
        for path, prog in ((w / "say", "say_ok"), (env.host(bad) if control else bad, "say_secret")):
            shutil.copy(env.binary(prog), path)
            env.who.own(path).chmod(0o755)
    if op == "exec_inplace":  # the allowed program (kept busy by the racer) and garbage to execute
        shutil.copy(env.binary("say_ok"), w / "run")
        env.who.own(w / "run").chmod(0o755)
        bad = forbidden_path(env, "run", control)
        env.who.make_file(env.host(bad) if control else bad, "JUNK\n\x01\x02\x03\n", 0o755)
    allowed, forbidden = env.w / name, forbidden_path(env, name, control)
    assert len(str(allowed)) == len(str(forbidden))
    return [env.prog("race_flip"), op, str(allowed), str(forbidden), SECRET, devino(target), *flags]


RESULT = re.compile(r"^RESULT (\S+) attempts=(\d+) allowed=(\d+) leaked=(\d+) failed=(\d+) top=(\d+)", re.M)


def results(r: subprocess.CompletedProcess) -> Dict[str, Dict[str, int]]:
    return {m.group(1): dict(attempts=int(m.group(2)), allowed=int(m.group(3)), leaked=int(m.group(4)),
                             failed=int(m.group(5)), top=int(m.group(6))) for m in RESULT.finditer(r.stdout)}


def race_names(op: str) -> List[str]:
    return ["symswap-open", "symswap-stat"] if op == "symswap" else [f"race-{op}"]


@pytest.mark.parametrize("op", RACES)
def test_a_racing_thread_cannot_reach_the_canary(env: Env, op: str) -> None:
    listener = env.listen(env.o, "sock") if op == "connect" else None
    command = race_command(env, op, control=False)
    before = tree_snapshot(env.o)
    r = env.run(command)
    print("".join(line + "\n" for line in r.stdout.splitlines() if line.startswith(("RESULT", "ESCAPED"))))
    assert r.returncode == 0, show(r)
    assert not escaped_lines(r), f"ESCAPE: a racing thread reached the host canary ({op}):\n{show(r)}"
    assert SECRET not in r.stdout + r.stderr, show(r)
    found = results(r)
    for name in race_names(op):
        assert name in found, show(r)
        assert found[name]["leaked"] == 0, f"ESCAPE ({name}):\n{show(r)}"
        assert found[name]["allowed"] > 0, f"{name}: the racer never reached the allowed side:\n{show(r)}"
        assert found[name]["failed"] > 0, f"{name}: the racer never tried the forbidden side:\n{show(r)}"
    if listener is not None:
        listener.close()
        assert listener.accepted == 0, f"ESCAPE: the host socket was connected {listener.accepted} times:\n{show(r)}"
    assert tree_snapshot(env.o) == before, f"the canary's directory changed:\n{show(r)}"


@pytest.mark.parametrize("op", RACES)
def test_the_racer_reaches_a_twin_the_policy_allows(env: Env, op: str) -> None:
    """Control: the same racer against w/t/, an allowed twin of o/; it must reach both sides."""
    twin = env.twin()
    listener = env.listen(twin, "SOCK") if op == "connect" else None
    r = env.run(race_command(env, op, control=True))
    assert r.returncode == 0, show(r)
    found = results(r)
    for name in race_names(op):
        assert name in found, show(r)
        assert found[name]["leaked"] > 0, f"{name}: the control never reached the twin:\n{show(r)}"
        assert found[name]["allowed"] > 0, f"{name}: the control never reached the allowed side:\n{show(r)}"
    if listener is not None:
        assert listener.accepted > 0, show(r)
