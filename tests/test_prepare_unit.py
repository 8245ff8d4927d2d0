"""prepare() releases what it made when a later step fails (_supervisor._Undo, the part of
contextlib.ExitStack it uses, without importing contextlib at start-up: README "Start-up")."""

from __future__ import annotations

import os
from typing import List

import pytest

from sandlock import _landlock, _policy, _scratch, _supervisor


def test_undo_releases_in_reverse_order_and_keeps_the_first_error() -> None:
    done: List[str] = []
    with pytest.raises(KeyError):
        with _supervisor._Undo() as undo:
            undo.callback(done.append, "first")
            undo.callback(done.append, "second")
            raise KeyError("the step that failed")
    assert done == ["second", "first"]


def test_undo_releases_nothing_once_made() -> None:
    done: List[str] = []
    with _supervisor._Undo() as undo:
        undo.callback(done.append, "made")
        undo.pop_all()
    assert done == []


def test_a_release_that_fails_does_not_stop_the_others_and_is_chained() -> None:
    done: List[str] = []

    def broken() -> None:
        raise OSError(5, "cannot release")
    with pytest.raises(OSError) as raised:
        with _supervisor._Undo() as undo:
            undo.callback(done.append, "first")
            undo.callback(broken)
            raise KeyError("the step that failed")
    assert done == ["first"]
    assert isinstance(raised.value.__context__, KeyError)


def test_a_prepare_that_fails_at_its_last_ruleset_leaves_no_fd_and_no_scratch(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    made: List[int] = []
    listings: List[str] = []
    real_ruleset, real_listings = _landlock.create_ruleset, _scratch.Listings

    def create_ruleset(plan):  # type: ignore[no-untyped-def]
        if len(made) == 2:
            raise OSError(28, "no room for the supervisor's ruleset")
        made.append(real_ruleset(plan))
        return made[-1]

    def new_listings():  # type: ignore[no-untyped-def]
        one = real_listings()
        listings.append(one.path)
        return one
    monkeypatch.setattr(_landlock, "create_ruleset", create_ruleset)
    monkeypatch.setattr(_scratch, "Listings", new_listings)
    if _landlock.check_kernel(_policy.make_policy()) == 0:
        pytest.skip("no Landlock: prepare makes no ruleset")
    with pytest.raises(OSError):
        _supervisor.prepare(_policy.make_policy())
    assert len(made) == 2 and len(listings) == 1
    for fd in made:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        assert "landlock" not in target, (fd, target)
    assert not os.path.exists(listings[0])
