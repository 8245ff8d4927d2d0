"""The supervisor's threads on _thread alone (sandlock._threads, README "Start-up"): what
the notifier, its workers and the CLI use of threading, with threading's behaviour."""

import time

from sandlock import _threads


def test_a_started_thread_runs_is_listed_with_its_name_and_is_joined_when_done() -> None:
    gate = _threads.Lock()
    gate.acquire()
    seen = []

    def work(a, b):
        seen.append((a, b, _threads.current_name(), _threads.get_ident()))
        gate.acquire()

    t = _threads.start(work, (1, 2), "sandlock-probe")
    assert t.name == "sandlock-probe" and t in _threads.running()
    assert not t.join(0.05) and t.is_alive()
    gate.release()
    assert t.join(10) and not t.is_alive()
    assert t not in _threads.running()
    assert seen[0][:3] == (1, 2, "sandlock-probe") and seen[0][3] != _threads.get_ident()
    assert _threads.current_name() == ""  # this thread was not started by _threads


def test_a_thread_whose_function_raises_still_ends_and_leaves_the_list() -> None:
    def fails():
        raise OSError("probe")

    import sys
    hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None  # _thread reports it there
    try:
        t = _threads.start(fails, (), "sandlock-fails")
        assert t.join(10)
    finally:
        sys.unraisablehook = hook
    assert t not in _threads.running()


def test_an_event_wakes_every_waiter_and_a_wait_times_out_without_it() -> None:
    event = _threads.Event()
    assert not event.is_set()
    start = time.monotonic()
    assert event.wait(0.05) is False
    assert time.monotonic() - start >= 0.04
    woken = []
    waiters = [_threads.start(lambda: woken.append(event.wait(10)), (), "w") for _ in range(3)]
    time.sleep(0.05)
    event.set()
    assert all(w.join(10) for w in waiters)
    assert woken == [True, True, True] and event.is_set() and event.wait(0) is True
    event.clear()
    assert not event.is_set() and event.wait(0) is False


def test_a_condition_notifies_one_or_all_waiters_and_takes_its_lock_again() -> None:
    cond = _threads.Condition()
    got = []
    ready = []

    def waiter(i):
        with cond:
            ready.append(i)
            notified = cond.wait(10)
            got.append((i, notified, cond._lock.locked()))

    waiters = [_threads.start(waiter, (i,), "w") for i in range(3)]
    deadline = time.monotonic() + 10
    while True:  # every waiter in wait(): it registered under the lock, which wait released
        with cond:
            if len(cond._waiters) == 3:
                break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with cond:
        cond.notify()
    first = waiters[ready[0]]  # the longest waiting, as threading's
    assert first.join(10)
    time.sleep(0.05)
    assert got == [(ready[0], True, True)]
    with cond:
        cond.notify_all()
    assert all(w.join(10) for w in waiters)
    assert sorted(i for i, _, _ in got) == [0, 1, 2] and all(n and held for _, n, held in got)
    with cond:
        assert cond.wait(0.02) is False and cond._waiters == []  # a timeout leaves no waiter behind


def test_a_queue_hands_items_in_order_waits_for_one_and_times_out_empty() -> None:
    """MemoryWriter's and the vfork holder's requests (queue.SimpleQueue's put and get)."""
    q = _threads.Queue()
    for item in (1, None, "three"):
        q.put(item)
    assert [q.get(), q.get(), q.get(timeout=0)] == [1, None, "three"]
    t = time.monotonic()
    try:
        q.get(timeout=0.05)
        raise AssertionError("an empty queue gave an item")
    except _threads.Empty:
        pass
    assert time.monotonic() - t >= 0.04
    got = []
    takers = [_threads.start(lambda: got.append(q.get()), (), "sandlock-taker") for _ in range(3)]
    time.sleep(0.05)
    assert got == [] and all(t.is_alive() for t in takers)
    for item in "abc":
        q.put(item)
    assert all(t.join(10) for t in takers)
    assert sorted(got) == ["a", "b", "c"]  # each taker one item, none lost or given twice
    late = _threads.start(lambda: got.append(q.get(timeout=10)), (), "sandlock-taker")
    q.put("d")
    assert late.join(10) and got[-1] == "d"
