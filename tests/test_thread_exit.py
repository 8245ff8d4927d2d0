"""A thread confined by sandlock that ends through pthread_exit (as CPython's
daemon threads do at exit) does not abort the process: the C library's
unwinder, which glibc loads on the first pthread_exit, is loaded before
Landlock confines the thread (before: `libgcc_s.so.1 must be installed for
pthread_exit to work`, exit 134, even after the command had finished)."""

from __future__ import annotations

SCRIPT = """
import ctypes, os, threading, time
import sandlock
confined = threading.Event()
def worker():
    sandlock.confine(fs_readable=["/tmp"], default_view=False)
    confined.set()
    ctypes.CDLL(None).pthread_exit(None)
threading.Thread(target=worker, daemon=True).start()
confined.wait()
time.sleep(0.5)
print("alive", flush=True)
os._exit(0)
"""


def test_a_confined_thread_that_ends_through_pthread_exit_does_not_abort_the_process(who) -> None:
    r = who.python(SCRIPT)
    assert (r.returncode, r.stdout.decode()) == (0, "alive\n"), r.stderr.decode()[-2000:]
