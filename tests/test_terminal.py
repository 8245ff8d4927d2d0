"""Job control in an interactive shell, on a real pseudo-terminal: a sandboxed
command started in the background (`sandlock -- cmd &`) stops on terminal
input as a bare `cmd &` does, `fg` brings it back and it reads the line, and
Ctrl-C ends it (README "Terminal")."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sys
import time

import pytest

from conftest import SYSTEM_PYTHON, default_signals


class Shell:
    """An interactive bash on a new pseudo-terminal (its controlling terminal)."""

    def __init__(self, who) -> None:  # type: ignore[no-untyped-def]
        cli = who._cli
        argv = ["/bin/bash", "--norc", "--noprofile", "-i"]
        if who.is_user:
            argv = cli.user.wrap(argv)
        env = cli.environment(who.is_user, {"PS1": "PROMPT$ ", "TERM": "dumb"})
        self.python = SYSTEM_PYTHON if who.is_user else sys.executable
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.chdir("/")
                default_signals()  # as from a terminal, whatever started pytest (conftest)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.seen = ""

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in the terminal after {timeout}s; it shows:\n{self.seen[-2000:]}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.fd, 4096).decode("utf-8", "replace")
                except OSError:
                    break
        found = re.search(pattern, self.seen)
        assert found, f"no {pattern!r}; the terminal shows:\n{self.seen[-2000:]}"
        self.seen = self.seen[found.end():]
        return found.group(0)

    def wait_stopped(self, timeout: float = 30) -> None:
        """Until `jobs` says job 1 is stopped (sandlock starts, then its command reads)."""
        deadline = time.monotonic() + timeout
        while True:
            self.send("jobs -l\n")
            line = self.expect(r"\[1\][^\n]*\n")
            if "Stopped" in line:
                self.expect("PROMPT\\$ ")
                return
            assert "Running" in line and time.monotonic() < deadline, \
                f"the job should stop on terminal input, as a bare one does: {line!r}"
            time.sleep(0.3)

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def shell(who):  # type: ignore[no-untyped-def]
    sh = Shell(who)
    sh.expect("PROMPT\\$ ")
    yield sh
    sh.close()


def test_a_backgrounded_sandbox_stops_on_terminal_input_and_fg_lets_it_read(shell: Shell) -> None:
    shell.send(f"{shell.python} -m sandlock -- sh -c 'read x; echo GOT-$x' &\n")
    shell.expect("PROMPT\\$ ")
    shell.wait_stopped()  # it starts and reads the terminal: stopped (tty input)
    shell.send("fg\n")
    time.sleep(0.5)
    shell.send("abc\n")
    shell.expect("GOT-abc")
    shell.send("echo rc=$?\n")
    shell.expect("rc=0")


def test_ctrl_c_ends_a_backgrounded_sandbox_brought_to_the_foreground(shell: Shell) -> None:
    shell.send(f"{shell.python} -m sandlock -- cat &\n")
    shell.expect("PROMPT\\$ ")
    shell.wait_stopped()
    shell.send("fg\n")
    time.sleep(0.5)
    shell.send("line-one\n")
    shell.expect("line-one\r?\n[^\n]*line-one")  # the terminal's echo, then cat's copy
    shell.send("\x03")
    shell.expect("PROMPT\\$ ")
    shell.send("echo rc=$?\n")
    shell.expect("rc=130")


def test_a_foreground_sandbox_reads_the_terminal_and_ctrl_z_fg_resume_it(shell: Shell) -> None:
    shell.send(f"{shell.python} -m sandlock -- sh -c 'echo READY; read x; echo GOT-$x; read y; echo GOT-$y'\n")
    shell.expect("\nREADY")
    shell.send("one\n")
    shell.expect("GOT-one")
    shell.send("\x1a")
    shell.expect("Stopped")
    shell.expect("PROMPT\\$ ")  # bash's readline flushes what is typed before its prompt
    shell.send("fg\n")
    time.sleep(0.5)
    shell.send("two\n")
    shell.expect("GOT-two")
    shell.send("echo rc=$?\n")
    shell.expect("rc=0")


# A command slow to stop on Ctrl-Z (as vim is: it handles SIGTSTP, then stops itself), with
# a read of the terminal under way meanwhile: whatever is typed before it stops is its.
SLOW_TO_STOP = r"""
import os, signal, sys
class Late(Exception): pass
def alarm(*_): raise Late()
def tstp(*_):
    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        print("STOLEN:" + os.read(0, 100).decode().strip(), flush=True)
    except Late:
        pass
    os.kill(os.getpid(), signal.SIGSTOP)
signal.signal(signal.SIGTSTP, tstp)
print("READY", flush=True)
print("GOT-" + sys.stdin.readline().strip(), flush=True)
"""


def test_ctrl_z_gives_the_prompt_back_only_once_the_command_has_stopped(shell: Shell) -> None:
    """What is typed at the prompt after Ctrl-Z goes to the shell, as with a bare command:
    sandlock, the shell's job, stops after the command, not before it (README "Terminal")."""
    shell.send(f"{shell.python} -m sandlock -- {SYSTEM_PYTHON} -c '{SLOW_TO_STOP}'\n")
    shell.expect("\nREADY")
    shell.send("\x1a")
    shell.expect("Stopped")
    shell.expect("PROMPT\\$ ")
    shell.send("echo MINE-$((6*7))\n")
    out = shell.expect("MINE-42|STOLEN:[^\n]*")
    assert out == "MINE-42", f"the command read what was typed at the shell's prompt: {out!r}"
    shell.expect("PROMPT\\$ ")
    shell.send("fg\n")
    time.sleep(0.5)
    shell.send("line\n")
    shell.expect("GOT-line")
