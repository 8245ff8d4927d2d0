"""sandlock's NamedTuple (_records, README "Start-up") makes the records typing.NamedTuple
makes, without compiling anything at import: the same construction (positional, keyword,
defaults, the errors of a missing or an unexpected argument), fields, methods, repr,
pickling and copying, class attributes, and the same refusals in a class body."""

from __future__ import annotations

import copy
import pickle
import typing

import pytest

from sandlock._records import NamedTuple


BODY = '''
    """A record of ours."""
    code: int
    name: str
    more: object = None
    last: int = 7

    def double(self) -> int:
        return self.code * 2

    LIMIT = 3
'''
_made: dict = {"NamedTuple": NamedTuple, "typing": typing, "__name__": __name__}
exec("class Ours(NamedTuple):" + BODY + "\nclass Theirs(typing.NamedTuple):" + BODY, _made)
Ours, Theirs = _made["Ours"], _made["Theirs"]  # one class body, each NamedTuple's class of it


class Wide(NamedTuple):  # past the precompiled __new__ (20 fields): one compiled when first needed
    f0: int = 0; f1: int = 1; f2: int = 2; f3: int = 3; f4: int = 4; f5: int = 5; f6: int = 6  # noqa: E702
    f7: int = 7; f8: int = 8; f9: int = 9; f10: int = 10; f11: int = 11; f12: int = 12; f13: int = 13  # noqa: E702
    f14: int = 14; f15: int = 15; f16: int = 16; f17: int = 17; f18: int = 18; f19: int = 19; f20: int = 20  # noqa: E702


def _outcome(make):  # type: ignore[no-untyped-def]
    try:
        return ("ok", tuple(make()))
    except Exception as exc:  # the type and message a caller would see
        return (type(exc).__name__, str(exc).replace("Theirs", "X").replace("Ours", "X"))


@pytest.mark.parametrize("args, kwargs", [
    ((1, "a"), {}), ((1, "a", 2), {}), ((1, "a", 2, 3), {}), ((), {"code": 1, "name": "b"}),
    ((1,), {"name": "b", "last": 0}), ((1,), {}), ((), {}), ((1, "a", 2, 3, 4), {}), ((1, "a"), {"nope": 1}),
    ((1, "a"), {"code": 2}), ((1,), {"more": 2})])
def test_construction_gives_what_typing_s_gives(args, kwargs) -> None:  # type: ignore[no-untyped-def]
    assert _outcome(lambda: Ours(*args, **kwargs)) == _outcome(lambda: Theirs(*args, **kwargs))


def test_fields_methods_and_class_attributes_are_typing_s() -> None:
    ours, theirs = Ours(1, "a"), Theirs(1, "a")
    assert tuple(ours) == tuple(theirs) == (1, "a", None, 7) and ours == theirs and hash(ours) == hash(theirs)
    assert (ours.code, ours.name, ours.more, ours.last) == (1, "a", None, 7)
    assert repr(ours) == repr(theirs).replace("Theirs", "Ours") == "Ours(code=1, name='a', more=None, last=7)"
    assert ours._replace(name="b", last=1) == Ours(1, "b", None, 1)
    assert _outcome(lambda: ours._replace(nope=1)) == _outcome(lambda: theirs._replace(nope=1))
    assert ours._asdict() == theirs._asdict() == {"code": 1, "name": "a", "more": None, "last": 7}
    assert Ours._make([2, "c", 3, 4]) == Ours(2, "c", 3, 4)
    assert _outcome(lambda: Ours._make([1])) == _outcome(lambda: Theirs._make([1]))
    for attr in ("_fields", "_field_defaults", "__match_args__", "__doc__", "__slots__", "LIMIT"):
        assert getattr(Ours, attr) == getattr(Theirs, attr), attr
    assert ours.double() == 2 and Ours.__module__ == __name__ and Ours.__qualname__ == "Ours"
    # the annotations as written (typing makes each a ForwardRef: what this NamedTuple spares)
    assert Ours.__annotations__ == {"code": "int", "name": "str", "more": "object", "last": "int"}
    assert isinstance(ours, tuple)
    assert Ours.code.__doc__ == Theirs.code.__doc__ == "Alias for field number 0"
    with pytest.raises(AttributeError):
        ours.code = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ours.other = 1  # type: ignore[attr-defined]


def test_records_pickle_and_copy_as_themselves() -> None:
    ours = Ours(1, "a", [1, 2])
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(ours, protocol))
        assert again == ours and type(again) is Ours
    assert copy.copy(ours) == ours and copy.deepcopy(ours) == ours and copy.deepcopy(ours).more is not ours.more


def test_a_record_wider_than_the_precompiled_ones_works_alike() -> None:
    assert tuple(Wide()) == tuple(range(21)) and Wide(f20=5).f20 == 5 and Wide(9).f0 == 9
    assert Wide()._replace(f3=0)[3] == 0 and len(Wide._fields) == 21


@pytest.mark.parametrize("body", [
    "a: int = 1\n    b: int",           # a field without a default after one with
    "_a: int",                           # a field name starting with '_'
    "a: int\n    def _replace(self): pass",  # a name NamedTuple keeps for itself
    "a: int\n    __slots__ = ('x',)",
])
def test_what_typing_refuses_in_a_class_body_is_refused(body: str) -> None:
    for base in ("NamedTuple", "typing.NamedTuple"):
        with pytest.raises((TypeError, ValueError, AttributeError)):
            exec(f"class X({base}):\n    {body}\n", {"NamedTuple": NamedTuple, "typing": typing})
