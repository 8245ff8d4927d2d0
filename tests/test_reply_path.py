"""The one reply path (README "How it works", SECURITY.md "One reply path"), in process.

A handler returns its answer as a value and the notifier alone sends it: a
Later the pool refuses releases what it holds and is answered with its own
errno; a Then's step runs even when the send fails; a handler's error is its
errno, a bug EPERM.  Pre-dispatch steps come from the table, and no handler
module reads the raw arguments that `decode` owns.
"""

import errno
import pathlib
import re
import threading

from sandlock import _notif
from sandlock import _procops
from sandlock import _policy
from sandlock import _supervisor
from sandlock import _table
from sandlock._notif import CONTINUE, Call, Errno, Later, Then, Value, Workers

REPO = pathlib.Path(__file__).resolve().parent.parent


class _Tracees:
    """What the notifier needs of _notif.Tracees for a call whose caller is alive."""
    current = 0
    listener = -1

    def still_valid(self) -> bool:
        return True


def _notifier(op=None, before=()):
    failures = []
    handlers = {} if op is None else {1: _table.Handler(op, (), {})}
    notifier = _supervisor.Notifier(handlers, before, {1: "probe"}, failures.append)
    notifier.tracees = _Tracees()
    sent = []
    notifier.send = lambda call, reply: sent.append(reply)
    return notifier, sent, failures


def test_a_later_the_full_pool_refuses_is_released_and_answered_with_its_own_errno():
    notifier, sent, failures = _notifier()
    notifier.workers = Workers(notifier.answer_later, bound=0)  # every worker busy
    released, ran = [], []
    notifier.answer(Call(7, 1, 1, (0,) * 6),
                    Later(lambda: ran.append(1) or Value(0), lambda: released.append(1), errno.ENOLCK))
    assert (sent, released, ran, failures) == ([Errno(errno.ENOLCK)], [1], [], [])


def test_a_later_the_pool_takes_is_answered_by_its_worker_with_what_the_work_returns():
    notifier, sent, failures = _notifier()
    done = threading.Event()
    notifier.answer_later = lambda call, reply: (sent.append((call.id, reply)), done.set())
    notifier.workers = Workers(notifier.answer_later)
    notifier.answer(Call(8, 1, 1, (0,) * 6), Later(lambda: Value(42)))
    assert done.wait(5.0)
    notifier.workers.close()
    assert (sent, failures) == ([(8, Value(42))], [])


def test_a_then_step_runs_after_the_send_and_even_when_the_send_fails():
    notifier, _, failures = _notifier()
    order = []
    notifier.send = lambda call, reply: order.append(reply)
    notifier.answer(Call(9, 1, 1, (0,) * 6), Then(CONTINUE, lambda: order.append("after")))
    assert order == [CONTINUE, "after"]

    def fails(call, reply):
        raise OSError(errno.EBADF, "the listener is gone")
    notifier.send = fails
    order.clear()
    notifier.answer(Call(10, 1, 1, (0,) * 6), Then(CONTINUE, lambda: order.append("after")))
    assert order == ["after"]
    assert len(failures) == 1 and failures[0].startswith("cannot answer probe")


def test_a_handlers_oserror_is_its_errno_and_any_other_exception_eperm():
    def refuses(ctx, call):
        raise OSError(errno.EACCES, "no")

    def breaks(ctx, call):
        raise ValueError("a bug")
    for op, expected in ((refuses, Errno(errno.EACCES)), (breaks, Errno(errno.EPERM)),
                         (lambda ctx, call: Value(3), Value(3))):
        notifier, _, _ = _notifier(op)
        assert notifier.handle(Call(11, 1, 1, (0,) * 6)) == expected


def test_the_steps_the_table_declares_run_before_the_handler_in_order():
    seen = []
    notifier, _, _ = _notifier(lambda ctx, call: seen.append("handler") or Value(0),
                               before=(lambda ctx, call: seen.append("first"),
                                       lambda ctx, call: seen.append("second")))
    assert notifier.handle(Call(12, 1, 1, (0,) * 6)) == Value(0)
    assert seen == ["first", "second", "handler"]


def test_the_table_declares_fork_settling_and_argv_fixing_only_where_they_apply(tmp_path):
    from sandlock import _rootexec
    plain = _table.traps_for(_policy.make_policy(), 7, "x86_64")
    limited = _table.traps_for(_policy.make_policy(max_processes=4), 7, "x86_64")
    rooted = _table.traps_for(_policy.make_policy(chroot=str(tmp_path)), 7, "x86_64")
    assert _table.steps_for(plain) == ()
    assert _table.steps_for(limited) == (_procops.settle,)
    assert _table.steps_for(rooted, root=True) == (_rootexec.fix_argv,)


def test_only_decode_reads_the_raw_arguments_of_a_call():
    readers = []
    for path in sorted(REPO.glob("_*.py")) + [REPO / "sandlock.py"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bcall\.args\b|\.args\[", line):
                readers.append(f"{path.name}:{number}: {line.strip()}")
    assert readers == ["_notif.py:%d: args, tid = call.args, call.tid" % _decode_line()], readers


def _decode_line() -> int:
    lines = (REPO / "_notif.py").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.strip() == "args, tid = call.args, call.tid")


def test_the_run_context_has_everything_the_handler_context_lists():
    members = {name for name in dir(_notif.Context) if not name.startswith("_")}
    members |= set(getattr(_notif.Context, "__annotations__", {}))
    missing = [name for name in sorted(members) if not hasattr(_supervisor.RunContext, name)
               and name not in _run_context_attributes()]
    assert not missing, missing


def _run_context_attributes():
    source = (REPO / "_supervisor.py").read_text()
    body = source[source.index("class RunContext"):source.index("class Notifier")]
    return set(re.findall(r"self\.([a-z_]+)\s*(?::[^=]+)?=", body))


# --- which thread receives (_notif.Receivers) ----------------------------------------------------

def test_an_operation_that_may_block_leaves_receiving_to_a_thread_already_receiving_else_the_spare_else_a_new_one():
    receivers = _notif.Receivers()
    started = []
    start = lambda: started.append(1) or True  # noqa: E731
    assert receivers.hand_over(start) and started == [1]          # alone: a new thread receives
    assert receivers.after_act() == "receive" and receivers.receiving == 2  # back: two receive
    assert receivers.hand_over(start) and started == [1]          # the other one receives: none started
    assert receivers.after_act() == "receive"
    assert receivers.fewer() == "park" and receivers.receiving == 1  # a call answered at once: one parks
    assert receivers.fewer() == "receive"                        # the last one never leaves
    assert receivers.hand_over(start) and started == [1]          # the spare is woken
    assert receivers.go_on("park") is True                       # ... its lock was released: it receives
    assert receivers.after_act() == "receive" and receivers.receiving == 2


def test_threads_beyond_two_receiving_and_one_spare_end_and_none_starts_when_the_pool_is_full():
    receivers = _notif.Receivers()
    receivers.receiving = 2
    assert receivers.after_act() == "park"   # a third: the spare
    assert receivers.after_act() == "end"    # a fourth: ends
    assert receivers.hand_over(lambda: False) is True   # two receive: the caller may leave
    assert receivers.hand_over(lambda: False) is True   # the spare takes over
    assert receivers.hand_over(lambda: False) is False  # none left, none can start: refused (Later.busy)


def test_the_spare_ends_once_no_thread_receives_any_more():
    receivers = _notif.Receivers()
    receivers.receiving = 2
    assert receivers.fewer() == "park"
    woke = []
    spare = threading.Thread(target=lambda: woke.append(receivers.go_on("park")))
    spare.start()
    receivers.stop()  # the last receiving thread found no process left
    spare.join(5.0)
    assert woke == [False] and receivers.over.is_set() and receivers.after_act() == "end"



def test_a_loop_started_before_its_listener_ends_when_the_run_stops_without_one():
    # Notifier.start_early (the direct launch): the thread waits for the listener start()
    # hands it; a launch that failed first hands it none, and stop() must end it at once
    # (with the receivers over, so that stop does not wait out its timeout)
    notifier, sent, failures = _notifier()
    notifier.start_early()
    thread = notifier._thread
    assert thread.is_alive()
    notifier.stop()
    assert thread.join(10)
    assert not thread.is_alive()
    assert notifier.receivers.over.is_set()
    assert (sent, failures) == ([], [])
