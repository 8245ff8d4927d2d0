"""Processes and pipelines of the API: Sandbox.popen() -> Process, Sandbox.cmd() -> Stage
(README "Processes", "Pipelines").

A Process is one _supervisor.Session run by a supervising thread of its own
(the thread confines itself: it is never the caller's), started the way
subprocess.Popen starts a child: popen() returns once the command's exec has
succeeded, or raises what made it fail.  The command's stdin, stdout and
stderr are what the caller gives, as subprocess takes them (PIPE, DEVNULL,
STDOUT, a file object, an fd, None to inherit): the caller's end of a PIPE is
a real pipe, read and written by the caller, never by the supervisor.

The sandbox is over when the supervising thread ends: it then writes a byte
into the Process's "over" pipe, which communicate() watches beside the
command's pipes.  Once every process of the sandbox is gone all they wrote is
in the pipes, so communicate() drains them and stops, without waiting for an
end of file that a process forked elsewhere in the caller could delay.

kill() and pause()/resume() act on the whole sandbox through the run's Watch
(the stub kills every process; every process but the stub is stopped or
continued through a pidfd); send_signal() and terminate() on the command's
first process, through a pidfd of it.  Each works from any thread and does
nothing once the run is over: no pid is used after its process was reaped.

A Pipeline starts its stages left to right, each a Process under its own
Sandbox, stdout of one to stdin of the next through a pipe, and collects them
as one: its returncode is that of the last stage that failed (bash's
`set -o pipefail`), 0 when all succeeded.
"""

from __future__ import annotations

import io
import locale
import os
import select
import selectors
import signal
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._errors import PolicyError, PolicyTypeError

if TYPE_CHECKING:
    from . import _supervisor

# The values of subprocess's constants, so that subprocess.PIPE works as well
PIPE = -1
STDOUT = -2
DEVNULL = -3
_NAMES = {0: "stdin", 1: "stdout", 2: "stderr"}
_CHUNK = 1 << 16
EXIT_GRACE = 0.05  # seconds the end of a with block gives an ending command (Process.__exit__)


class Streams:
    """The command's fds 0, 1, 2 (child: -1 inherits ours) and the caller's ends of its pipes."""

    def __init__(self) -> None:
        self.child = [-1, -1, -1]
        self.parent: Dict[int, int] = {}     # 0/1/2 -> our end of a PIPE
        self.close_after_start: List[int] = []  # the command's ends we made (pipes, /dev/null)

    def close(self) -> None:
        for fd in self.close_after_start + list(self.parent.values()):
            _close(fd)
        self.close_after_start, self.parent = [], {}


def streams(stdin: object, stdout: object, stderr: object) -> Streams:
    """Streams for subprocess-style arguments; PolicyTypeError names a wrong one."""
    out = Streams()
    try:
        for index, value in enumerate((stdin, stdout, stderr)):
            name = _NAMES[index]
            if value is None:
                continue
            if value == STDOUT and index == 2 and not isinstance(value, bool):
                out.child[2] = out.child[1] if out.child[1] >= 0 else 1
            elif value == PIPE and not isinstance(value, bool):
                r, w = os.pipe2(os.O_CLOEXEC)
                ours, theirs = (w, r) if index == 0 else (r, w)
                out.parent[index] = ours
                out.close_after_start.append(theirs)
                out.child[index] = theirs
            elif value == DEVNULL and not isinstance(value, bool):
                fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                out.close_after_start.append(fd)
                out.child[index] = fd
            else:
                out.child[index] = _fileno(name, value)
    except BaseException:
        out.close()
        raise
    return out


def _fileno(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise PolicyTypeError(f"{name}: expected PIPE, DEVNULL, None, a file object or a file descriptor, "
                              f"got {value!r}")
    if isinstance(value, int):
        fd = value
    else:
        fileno = getattr(value, "fileno", None)
        if fileno is None:
            raise PolicyTypeError(f"{name}: expected PIPE, DEVNULL, None, a file object or a file descriptor, "
                                  f"got {type(value).__name__}")
        try:
            fd = fileno()
        except (OSError, ValueError) as exc:  # io.UnsupportedOperation: a BytesIO has no fd
            raise PolicyTypeError(f"{name}: {type(value).__name__} has no file descriptor ({exc})") from None
    if not isinstance(fd, int) or fd < 0:
        raise PolicyError(f"{name}: invalid file descriptor {fd!r}")
    try:
        os.fstat(fd)
    except OSError as exc:
        raise PolicyError(f"{name}: file descriptor {fd}: {exc.strerror}") from None
    return fd


class TextMode:
    """text=/encoding=/errors=/universal_newlines= as subprocess reads them."""

    def __init__(self, text: Optional[bool], encoding: Optional[str], errors: Optional[str],
                 universal_newlines: Optional[bool] = None) -> None:
        for name, flag in (("text", text), ("universal_newlines", universal_newlines)):
            if flag is not None and not isinstance(flag, bool):
                raise PolicyTypeError(f"{name}: expected True or False, got {flag!r}")
        for name, value in (("encoding", encoding), ("errors", errors)):
            if value is not None and not isinstance(value, str):
                raise PolicyTypeError(f"{name}: expected a string, got {value!r}")
        self.on = bool(text or universal_newlines or encoding or errors)
        self.encoding = encoding or (locale.getpreferredencoding(False) if self.on else None)
        self.errors = errors

    def decode(self, data: Optional[bytes]) -> Any:
        if data is None or not self.on:
            return data
        return data.decode(self.encoding or "utf-8", self.errors or "strict").replace("\r\n", "\n").replace("\r", "\n")

    def encode(self, data: Any) -> bytes:
        if self.on:
            if not isinstance(data, str):
                raise PolicyTypeError(f"input: expected str (text mode), got {type(data).__name__}")
            return data.encode(self.encoding or "utf-8", self.errors or "strict")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise PolicyTypeError(f"input: expected bytes, got {type(data).__name__}")
        return bytes(data)

    def wrap(self, fd: int, mode: str, bufsize: int) -> IO[Any]:
        raw = io.open(fd, mode + "b", bufsize)
        if not self.on:
            return raw
        if mode == "w":
            return io.TextIOWrapper(raw, encoding=self.encoding, errors=self.errors, write_through=True,  # type: ignore[arg-type]
                                    line_buffering=bufsize == 1)
        return io.TextIOWrapper(raw, encoding=self.encoding, errors=self.errors)  # type: ignore[arg-type]


MakeResult = Callable[[Sequence[object], Any], Any]   # (args, Outcome) -> sandlock.Result


class Process:
    """A command running in a sandbox (Sandbox.popen): subprocess.Popen's interface.

    Attributes:
        args: the argv given.
        pid: the command's first process.
        stdin, stdout, stderr: the caller's ends of PIPE streams (None otherwise),
            text streams with text=/encoding=/errors=.
        returncode: None while the sandbox runs; then as subprocess gives it
            (-N for a death by signal N; 124 on timeout).
    """

    def __init__(self, args: Sequence[object], make_result: MakeResult, text: TextMode,
                 on_end: Optional[Callable[["Process"], None]] = None) -> None:
        self.args = args
        self.pid = -1
        self.returncode: Optional[int] = None
        self.stdin: Optional[IO[Any]] = None
        self.stdout: Optional[IO[Any]] = None
        self.stderr: Optional[IO[Any]] = None
        self._make_result = make_result
        self._text = text
        self._on_end = on_end
        self._lock = threading.Lock()        # the pidfd, the watch and the end, against other threads
        self._launched = threading.Event()   # the exec's result is known, or the run ended
        self._over = threading.Event()       # the supervising thread is done
        self._over_r, self._over_w = os.pipe2(os.O_CLOEXEC)  # a byte is written there when it is
        self._session: Optional["_supervisor.Session"] = None
        self._watch: Optional["_supervisor.Watch"] = None
        self._pidfd = -1                     # the command's first process
        self._kill_asked = False
        self._thread: Optional[threading.Thread] = None
        self._outcome: Any = None
        self._error: Optional[BaseException] = None
        self._finished = False
        self._output: Dict[int, bytearray] = {}   # what communicate() collected, by 1/2
        self._input: Optional[memoryview] = None  # what communicate() has still to write

    # --- start ------------------------------------------------------------------------------

    def start(self, session: Callable[..., "_supervisor.Session"], io_: Streams, bufsize: int = -1) -> None:
        """Run the session in a supervising thread; return once the command runs (or raise)."""
        self._thread = threading.Thread(target=self._supervise, args=(session, tuple(io_.child)),
                                        name="sandlock-supervisor", daemon=True)
        try:
            self._thread.start()
            self._launched.wait()
        except BaseException:   # interrupted: the caller kills it (Sandbox.popen)
            io_.close()
            raise
        finally:
            for fd in io_.close_after_start:   # the stub has its copies (or never will)
                _close(fd)
            io_.close_after_start = []
        if not self._watch_set():
            self._thread.join()
            for fd in io_.parent.values():
                _close(fd)
            self._finished = True
            self._release()
            if self._error is not None:
                raise self._error
        for index, fd in io_.parent.items():
            setattr(self, _NAMES[index], self._text.wrap(fd, "w" if index == 0 else "r", bufsize))
        io_.parent = {}

    def _watch_set(self) -> bool:
        with self._lock:
            return self._watch is not None or (self._outcome is not None and self._error is None)

    def _supervise(self, session: Callable[..., "_supervisor.Session"], stdio: Tuple[int, int, int]) -> None:
        try:
            self._session = session(stdio=stdio, on_exec=self._started)
            self._outcome = self._session.run()
        except BaseException as exc:  # handed to the caller (start, wait)
            self._error = exc
        finally:
            os.write(self._over_w, b"x")
            self._over.set()
            self._launched.set()

    def _started(self, session: "_supervisor.Session", report: bytes) -> None:
        """In the supervising thread: the exec's result is known (b"": it succeeded)."""
        if report or session.watch is None:
            return  # the session raises the error once the sandbox is gone
        with self._lock:
            self.pid = session.command_pid
            if session.watch.command_pidfd >= 0:
                self._pidfd = os.dup(session.watch.command_pidfd)
            self._watch = session.watch
            if self._kill_asked:
                self._watch.cancel("killed")
        self._launched.set()

    # --- subprocess.Popen's interface -------------------------------------------------------

    def poll(self) -> Optional[int]:
        """The returncode once the sandbox is over, else None."""
        if self._over.is_set():
            self._finish()
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait until every process of the sandbox is gone; raise subprocess.TimeoutExpired
        after `timeout` seconds (the sandbox goes on)."""
        if not self._over.wait(timeout):
            import subprocess
            raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        self._finish()
        assert self.returncode is not None
        return self.returncode

    def communicate(self, input: Any = None, timeout: Optional[float] = None) -> Tuple[Any, Any]:
        """Send input to stdin (then close it), read stdout and stderr until the sandbox is
        over, and wait for it: (stdout, stderr), None for a stream that is not a PIPE.

        Raises subprocess.TimeoutExpired after `timeout` seconds; calling it again goes on
        where it stopped.
        """
        if input is not None and self._input is None:
            if self.stdin is None:
                raise PolicyError("input: needs stdin=PIPE")
            self._input = memoryview(self._text.encode(input))
        deadline = None if timeout is None else time.monotonic() + timeout
        pump = Pump()
        self._pump_into(pump)
        if not pump.run(deadline):
            import subprocess
            raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        self.wait()
        self._close_streams()
        return tuple(self._text.decode(bytes(self._output[i])) if i in self._output else None  # type: ignore[return-value]
                     for i in (1, 2))

    def _pump_into(self, pump: "Pump") -> None:
        ends = []
        if self.stdin is not None:
            _flush(self.stdin)
            if self._input is not None and len(self._input):
                pump.add_input(self.stdin.fileno(), self._input, self._input_done)
                ends.append(self.stdin.fileno())
            else:
                self._input_done()
        for index, stream in ((1, self.stdout), (2, self.stderr)):
            if stream is not None and not stream.closed:
                buffer = self._output.setdefault(index, bytearray())
                pump.add_output(stream.fileno(), buffer)
                ends.append(stream.fileno())
        if self._over_r >= 0:  # else waited for already: nothing more comes
            pump.add_end(self._over_r, ends)

    def _input_done(self) -> None:
        self._input = memoryview(b"")
        if self.stdin is not None and not self.stdin.closed:
            try:
                self.stdin.close()
            except BrokenPipeError:
                pass

    def result(self) -> Any:
        """The Result run() gives (stdout and stderr: what communicate() collected, else None)."""
        self.wait()
        out = tuple(self._text.decode(bytes(self._output[i])) if i in self._output else None for i in (1, 2))
        return self._make_result(self.args, self._outcome._replace(stdout=out[0], stderr=out[1]))

    def send_signal(self, signum: int) -> None:
        """Send signum to the command's first process (nothing once it is gone)."""
        with self._lock:
            if self._pidfd >= 0:
                try:
                    signal.pidfd_send_signal(self._pidfd, signum)
                except ProcessLookupError:
                    pass

    def terminate(self) -> None:
        """SIGTERM to the command's first process."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill every process of the sandbox (returncode -9, reason "killed"); from any thread."""
        with self._lock:
            self._kill_asked = True
            if self._watch is not None:
                self._watch.cancel("killed")

    def pause(self) -> int:
        """SIGSTOP to every process of the sandbox (the timeout still runs); how many."""
        watch = self._watch
        return watch.signal_all(signal.SIGSTOP) if watch is not None else 0

    def resume(self) -> int:
        """SIGCONT to every process of the sandbox; how many."""
        watch = self._watch
        return watch.signal_all(signal.SIGCONT) if watch is not None else 0

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the streams, kill the sandbox if its command still runs, reap.

        A command that is ending (it closed its stdout as it exited) is given
        EXIT_GRACE seconds to be gone, so a loop over its output that ran to
        the end leaves the returncode the command chose, not -9."""
        self._close_streams()
        if not self._over.is_set() and not self._command_ended(EXIT_GRACE):
            self.kill()
        self.wait()

    def _command_ended(self, grace: float) -> bool:
        """Has the command's first process ended (within `grace` seconds)?"""
        with self._lock:
            if self._pidfd < 0:
                return self._over.is_set()
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            return bool(poller.poll(int(grace * 1000)))

    def __del__(self) -> None:
        """A Process nobody waited for: its fds are closed (and its directories removed,
        unless the last reference went in its own supervising thread, which is confined:
        close_prepared removes them with the Sandbox)."""
        if self._thread is None or self._finished or not self._over.is_set():
            return
        self._on_end = None  # the Sandbox's weak set lets it go by itself (no lock taken in a finalizer)
        if threading.current_thread() is self._thread:
            self._finished = True
            self._session = None
            self._release()
            return
        try:
            self._finish()
        except BaseException:
            pass

    def __repr__(self) -> str:
        return f"<sandlock.Process: returncode: {self.returncode} args: {list(self.args)!r}>"

    # --- the end ----------------------------------------------------------------------------

    def _finish(self) -> None:
        """Once the supervising thread is done: its directories removed (here: this thread
        is not confined), our fds closed, returncode set; raises the run's error."""
        with self._lock:
            if self._finished:
                error = self._error
            else:
                self._finished = True
                if self._thread is not None:
                    self._thread.join()
                self._release()
                error = self._error
                if error is None:
                    self.returncode = self._make_result(self.args, self._outcome).returncode
                if self._on_end is not None:
                    self._on_end(self)
        if error is not None:
            raise error

    def _release(self) -> None:
        self._watch = None
        for fd in (self._pidfd, self._over_r, self._over_w):
            _close(fd)
        self._pidfd = self._over_r = self._over_w = -1
        if self._session is not None:
            self._session.clean_up()

    def _close_streams(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass


class Pump:
    """Feeds and drains the caller's ends of the pipes of one or more processes until each
    process is over (its "over" fd readable): then what is left in its pipes is read
    without blocking and they are let go (select.PIPE_BUF writes; reads after readiness)."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._ends: Dict[int, List[int]] = {}

    def add_input(self, fd: int, data: memoryview, done: Callable[[], None]) -> None:
        self._sel.register(fd, selectors.EVENT_WRITE, ("in", data, done))

    def add_output(self, fd: int, buffer: bytearray) -> None:
        self._sel.register(fd, selectors.EVENT_READ, ("out", buffer))

    def add_end(self, over_fd: int, fds: List[int]) -> None:
        self._ends[over_fd] = fds
        self._sel.register(over_fd, selectors.EVENT_READ, ("end", None))

    def run(self, deadline: Optional[float]) -> bool:
        """True once every process is over, False at the deadline."""
        try:
            while self._ends:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = self._sel.select(wait)
                if not events and deadline is not None and time.monotonic() >= deadline:
                    return False
                for key, _ in events:
                    if key.fd in self._sel.get_map():
                        self._event(key)
            return True
        finally:
            self._sel.close()

    def _event(self, key: selectors.SelectorKey) -> None:
        kind = key.data[0]
        if kind == "end":
            self._sel.unregister(key.fd)
            for fd in self._ends.pop(key.fd):
                if fd in self._sel.get_map():
                    data = self._sel.get_key(fd).data
                    self._sel.unregister(fd)
                    if data[0] == "out":
                        data[1].extend(_drain(fd))
                    else:
                        data[2]()  # the input's reader is gone
        elif kind == "out":
            chunk = os.read(key.fd, _CHUNK)
            if chunk:
                key.data[1].extend(chunk)
            else:
                self._sel.unregister(key.fd)
        else:
            self._write(key)

    def _write(self, key: selectors.SelectorKey) -> None:
        _, data, done = key.data
        try:
            written = os.write(key.fd, data[:select.PIPE_BUF])
        except BrokenPipeError:
            written = len(data)
        rest = data[written:]
        if len(rest):
            self._sel.modify(key.fd, selectors.EVENT_WRITE, ("in", rest, done))
        else:
            self._sel.unregister(key.fd)
            done()


# --- pipelines -----------------------------------------------------------------------------

class Stage:
    """One command of a pipeline under its Sandbox (Sandbox.cmd); `stage | stage` makes a Pipeline."""

    def __init__(self, sandbox: Any, argv: Sequence[object], options: Dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.argv = list(argv)
        self.options = options   # popen's cwd, env, timeout

    def __or__(self, other: Union["Stage", "Pipeline"]) -> "Pipeline":
        return Pipeline([self]) | other

    def run(self, **kwargs: Any) -> "PipelineResult":
        return Pipeline([self]).run(**kwargs)

    def __repr__(self) -> str:
        return f"<sandlock.Stage {self.argv!r}>"


class Pipeline:
    """Stages whose stdout feeds the next one's stdin, each under its own policy."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)

    def __or__(self, other: Union[Stage, "Pipeline"]) -> "Pipeline":
        if isinstance(other, Stage):
            return Pipeline(self.stages + [other])
        if isinstance(other, Pipeline):
            return Pipeline(self.stages + other.stages)
        return NotImplemented

    def __repr__(self) -> str:
        return "<sandlock.Pipeline " + " | ".join(repr(s.argv) for s in self.stages) + ">"

    def run(self, *, input: Any = None, timeout: Optional[float] = None, capture_output: bool = True,
            check: bool = False, text: Optional[bool] = None, encoding: Optional[str] = None,
            errors: Optional[str] = None) -> "PipelineResult":
        """Run the stages together; wait until every stage's sandbox is over.

        input goes to the first stage's stdin (else it inherits ours); with
        capture_output the last stage's stdout and every stage's stderr are
        collected (else inherited).  timeout: each stage's sandbox is killed
        after that many seconds.  check: raise SandboxCalledProcessError when
        the pipeline fails (pipefail: the last failing stage's status).
        """
        if not self.stages:
            raise PolicyError("pipeline: no stage")
        mode = TextMode(text, encoding, errors)
        data = mode.encode(input) if input is not None else None
        procs: List[Process] = []
        captured = PIPE if capture_output else None
        try:
            previous: Optional[int] = None   # read end of the pipe from the stage before
            for index, stage in enumerate(self.stages):
                last = index == len(self.stages) - 1
                if last:
                    stdout: object = captured
                    link = None
                else:
                    link = os.pipe2(os.O_CLOEXEC)
                    stdout = link[1]
                stdin: object = previous if previous is not None else (PIPE if data is not None else None)
                try:
                    procs.append(stage.sandbox.popen(stage.argv, stdin=stdin, stdout=stdout, stderr=captured,
                                                     timeout=_first(stage.options.get("timeout"), timeout),
                                                     cwd=stage.options.get("cwd"), env=stage.options.get("env")))
                finally:
                    if previous is not None:
                        _close(previous)
                    if link is not None:
                        _close(link[1])
                previous = link[0] if link is not None else None
            pump = Pump()
            for proc in procs:
                if proc is procs[0] and data is not None:
                    proc._input = memoryview(data)
                proc._pump_into(pump)
            pump.run(None)
        except BaseException:
            for proc in procs:
                proc.kill()
            raise
        finally:
            for proc in procs:
                proc._close_streams()
                try:
                    proc.wait()
                except BaseException:
                    pass
        results = []
        for proc in procs:
            proc._text = mode
            results.append(proc.result())
        outcome = PipelineResult(self, results)
        if check:
            outcome.check_returncode()
        return outcome


class PipelineResult:
    """The results of a pipeline's stages, in order, and the pipeline's status as bash's
    `set -o pipefail` gives it: the last failing stage's, 0 when every stage succeeded."""

    def __init__(self, pipeline: Pipeline, results: List[Any]) -> None:
        self.pipeline = pipeline
        self.results = results
        failed = [r for r in results if not r.success]
        self.failed = failed[-1] if failed else None   # the stage that gives the status
        decisive = self.failed or results[-1]
        self.returncode: int = decisive.returncode
        self.exit_code: int = decisive.exit_code
        self.stdout = results[-1].stdout

    @property
    def success(self) -> bool:
        return self.failed is None

    def check_returncode(self) -> None:
        if self.failed is not None:
            self.failed.check_returncode()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def __repr__(self) -> str:
        return f"PipelineResult(returncode={self.returncode}, stages={[r.returncode for r in self.results]})"


def _first(*values: Optional[float]) -> Optional[float]:
    return next((v for v in values if v is not None), None)


def _flush(stream: IO[Any]) -> None:
    try:
        stream.flush()
    except (BrokenPipeError, ValueError):
        pass


def _drain(fd: int) -> bytes:
    """What the pipe holds now, without blocking (its writers may live elsewhere)."""
    out = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while poller.poll(0):
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _close(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
