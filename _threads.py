"""The supervisor's threads, locks and events, on Python's _thread module alone.

`import threading` costs about 3 ms of a process's start here: threading
imports functools, which imports collections (with operator, keyword,
reprlib) and types; and it registers an at-fork handler that costs every
process forked afterwards (the stub) ~100 copy-on-write faults.  The
modules the CLI loads use this instead (README "Start-up"); the API's own
modules (sandlock, _forkserver, _process, _policyfn) keep threading, which
a program with threads of its own has loaded anyway.

What it has is what the supervisor uses: `start` a daemon thread (named,
joinable; those still running are `running()`, for tests), `Lock`,
`get_ident`, and an `Event` and a `Condition` with the behaviour of
threading's (wait with a timeout, notify, notify_all), built on _thread's
locks as threading builds its own; and a `Queue` with queue.SimpleQueue's
put and get (the queue module imports threading).
"""

from __future__ import annotations

import _thread
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")

Lock = _thread.allocate_lock
get_ident = _thread.get_ident

# each thread `start` started, until its function has returned -> its thread id (0 until it runs)
_running: "Dict[Started, int]" = {}


class Started:
    """A thread `start` started: join() waits for its end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._done = Lock()
        self._done.acquire()  # released when the thread's function has returned

    def join(self, timeout: "Optional[float]" = None) -> bool:
        """Wait for the thread's end (at most timeout seconds); True if it has ended."""
        if self._done.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            self._done.release()
            return True
        return False

    def is_alive(self) -> bool:
        if self._done.acquire(False):
            self._done.release()
            return False
        return True


def start(target: "Callable[..., object]", args: "Tuple[Any, ...]" = (), name: str = "sandlock") -> Started:
    """Run target(*args) in a new thread, which the interpreter does not wait for at exit
    (a daemon thread).  An exception that escapes target is reported by sys.unraisablehook
    (the supervisor's threads catch their own: they fail closed).  Raises RuntimeError if
    no thread can be started, as threading does."""
    started = Started(name)

    def run() -> None:
        _running[started] = _thread.get_ident()
        try:
            target(*args)
        finally:
            _running.pop(started, None)
            started._done.release()

    _running[started] = 0
    try:
        _thread.start_new_thread(run, ())
    except BaseException:
        _running.pop(started, None)
        raise
    return started


def running() -> "List[Started]":
    """The threads `start` started whose function has not returned yet (their .name)."""
    return list(_running)


def current_name() -> str:
    """The calling thread's name, if `start` started it ("" if not)."""
    me = _thread.get_ident()
    return next((started.name for started, ident in list(_running.items()) if ident == me), "")


class Condition:
    """threading.Condition over a Lock: wait(timeout), notify(n), notify_all()."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._waiters: "List[Any]" = []  # a held lock per waiting thread, released to wake it

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: "Any") -> None:
        self._lock.release()

    def wait(self, timeout: "Optional[float]" = None) -> bool:
        """Release the lock, wait for a notify (or timeout seconds), take the lock again.
        Called with the lock held.  True if notified."""
        waiter = Lock()
        waiter.acquire()
        self._waiters.append(waiter)
        self._lock.release()
        try:
            return waiter.acquire(True, -1 if timeout is None else max(0.0, timeout))
        finally:
            self._lock.acquire()
            try:
                self._waiters.remove(waiter)  # timed out: not notified (a notify takes it out)
            except ValueError:
                pass

    def notify(self, n: int = 1) -> None:
        """Wake up to n threads waiting (called with the lock held)."""
        for waiter in self._waiters[:n]:
            self._waiters.remove(waiter)
            waiter.release()

    def notify_all(self) -> None:
        self.notify(len(self._waiters))


class Event:
    """threading.Event: set(), is_set(), clear(), wait(timeout)."""

    def __init__(self) -> None:
        self._cond = Condition()
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._flag = False

    def wait(self, timeout: "Optional[float]" = None) -> bool:
        """True once the flag is set; False if timeout seconds passed first."""
        with self._cond:
            if not self._flag:
                self._cond.wait(timeout)
            return self._flag


class Empty(Exception):
    """Queue.get's timeout passed with nothing put (queue.Empty's part)."""


class Queue:
    """queue.SimpleQueue's put and get: first in, first out, unbounded, get with a timeout."""

    def __init__(self) -> None:
        self._items: "List[Any]" = []
        self._put = Condition()

    def put(self, item: "Any") -> None:
        with self._put:
            self._items.append(item)
            self._put.notify()

    def get(self, timeout: "Optional[float]" = None) -> "Any":
        """The oldest item, waiting for one; Empty if timeout seconds pass first."""
        with self._put:
            end = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise Empty
                self._put.wait(left)
            return self._items.pop(0)
