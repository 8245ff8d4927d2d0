"""NamedTuple for sandlock's records, without typing's cost at import.

``class Stat(NamedTuple): ...`` with typing.NamedTuple checks every field's
annotation: under ``from __future__ import annotations`` each one is a
string, which typing compiles into a ForwardRef, about 0.1 ms a class, and
the CLI's start defines some 25 of them (README "Start-up").  This
NamedTuple makes the same class, with collections.namedtuple: the fields,
their defaults (a field without one may not follow a field with one), the
methods, docstring and other attributes of the class body, the names
typing's forbids (``_replace``, ``__new__``, ...) refused alike; the
annotations are kept as written, unevaluated.  Generic named tuples are not
supported (sandlock has none).  mypy sees typing.NamedTuple itself.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")

# the names typing.NamedTuple refuses in a class body, and those it does not copy onto the class
_PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
                         "_make", "_replace", "_asdict", "_source"})
_SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})


class _NamedTupleMeta(type):
    def __new__(mcls, typename, bases, ns):  # type: ignore[no-untyped-def]
        if bases != (_NamedTuple,):
            raise TypeError("can only inherit from NamedTuple")
        types = ns.get("__annotations__", {})
        default_names = []
        for name in types:
            if name in ns:
                default_names.append(name)
            elif default_names:
                raise TypeError(f"Non-default namedtuple field {name} cannot follow default field"
                                f"{'s' if len(default_names) > 1 else ''} {', '.join(default_names)}")
        cls = collections.namedtuple(typename, list(types), defaults=[ns[n] for n in default_names],
                                     module=ns["__module__"])
        cls.__annotations__ = cls.__new__.__annotations__ = dict(types)
        for key in ns:
            if key in _PROHIBITED:
                raise AttributeError("Cannot overwrite NamedTuple attribute " + key)
            if key not in _SPECIAL and key not in cls._fields:
                setattr(cls, key, ns[key])
        return cls


_NamedTuple = type.__new__(_NamedTupleMeta, "NamedTuple", (), {})

if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:
    def NamedTuple(*args, **kwargs):
        """Only as the base of a class: ``class Point(NamedTuple): x: int``."""
        raise TypeError("sandlock's NamedTuple is only a base class (class X(NamedTuple): ...)")

    NamedTuple.__mro_entries__ = lambda bases: (_NamedTuple,)
