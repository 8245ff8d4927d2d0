"""_supervisor.Poller: the part of selectors.EpollSelector Watch uses, without importing
selectors at start-up (README "Start-up"), held equal to EpollSelector on the same events."""

from __future__ import annotations

import os
import selectors
import socket
import time

import pytest

from sandlock import _supervisor


def both():  # type: ignore[no-untyped-def]
    return _supervisor.Poller(), selectors.EpollSelector()


def seen(poller, timeout=0):  # type: ignore[no-untyped-def]
    return sorted((key.fd, key.data, events) for key, events in poller.select(timeout))


def test_the_constants_are_selectors_own() -> None:
    assert (_supervisor.EVENT_READ, _supervisor.EVENT_WRITE) == (selectors.EVENT_READ, selectors.EVENT_WRITE)


def test_reads_writes_and_hang_ups_are_reported_as_epoll_selector_reports_them() -> None:
    r, w = os.pipe()
    a, b = socket.socketpair()
    try:
        mine, theirs = both()
        for poller in (mine, theirs):
            poller.register(r, selectors.EVENT_READ, "r")
            poller.register(w, selectors.EVENT_WRITE, "w")
            poller.register(a.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE, "a")
        assert seen(mine) == seen(theirs) == [(w, "w", 2), (a.fileno(), "a", 2)]
        os.write(w, b"x")
        b.send(b"y")
        assert seen(mine) == seen(theirs) == [(r, "r", 1), (w, "w", 2), (a.fileno(), "a", 3)]
        b.close()  # a hang-up: ready to read (the EOF)
        os.close(w)
        mine.unregister(w)
        theirs.unregister(w)  # closed before its unregister: forgotten quietly
        assert seen(mine) == seen(theirs)
        assert (r, "r", 1) in seen(mine)
        for poller in (mine, theirs):
            poller.close()
    finally:
        os.close(r)
        a.close()


def test_the_map_follows_register_and_unregister_and_a_fd_is_registered_once() -> None:
    r, w = os.pipe()
    try:
        poller = _supervisor.Poller()
        live = poller.get_map()
        poller.register(r, selectors.EVENT_READ, "r")
        assert r in live and poller.get_key(r).data == "r"
        with pytest.raises(KeyError):
            poller.register(r, selectors.EVENT_READ, "again")
        assert poller.unregister(r).data == "r" and r not in live
        with pytest.raises(KeyError):
            poller.unregister(r)
        poller.close()
    finally:
        os.close(r)
        os.close(w)


def test_a_timeout_waits_at_least_that_long_and_none_waits_for_an_event() -> None:
    r, w = os.pipe()
    try:
        poller = _supervisor.Poller()
        poller.register(r, selectors.EVENT_READ, "r")
        start = time.monotonic()
        assert poller.select(0.0105) == []
        assert time.monotonic() - start >= 0.0105
        os.write(w, b"x")
        assert [key.data for key, _ in poller.select(None)] == ["r"]
        poller.close()
    finally:
        os.close(r)
        os.close(w)
