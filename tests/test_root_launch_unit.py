"""Per-run costs of a launch, cut without changing what the run sees: the signal
mask of the notifier's threads, the removal of a run's scratch directories and
the reads of /proc done for the exec of the first program in a root.
In-process (no sandbox)."""

import os
import signal
import threading

from sandlock import _notif


def _in_a_new_thread(work):
    """The result of work() run in a thread of its own (which starts with no signal blocked)."""
    out = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join(10)
    return out[0]


def test_a_notifier_thread_blocks_every_valid_signal_on_every_call_and_gets_back_what_it_replaced() -> None:
    every = {int(sig) for sig in signal.valid_signals()} - {signal.SIGKILL, signal.SIGSTOP}  # never blocked

    def block_then_read():
        before = _notif.block_signals()
        now = {int(sig) for sig in signal.pthread_sigmask(signal.SIG_BLOCK, ())}
        return {int(sig) for sig in before}, now

    for _ in range(2):  # the first call makes the set kept, the second uses it
        before, now = _in_a_new_thread(block_then_read)
        assert now == every
        assert before == {int(sig) for sig in signal.pthread_sigmask(signal.SIG_BLOCK, ())}
