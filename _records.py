"""NamedTuple for sandlock's records, without typing's or collections' cost at import.

``class Stat(NamedTuple): ...`` with typing.NamedTuple checks every field's
annotation: under ``from __future__ import annotations`` each one is a
string, which typing compiles into a ForwardRef, about 0.1 ms a class; and
collections.namedtuple, which both build on, compiles each class's
``__new__`` from source (eval), about 0.05 ms more.  The CLI's start defines
some 20 of them (README "Start-up").  This NamedTuple makes the same kind of
class without compiling anything: a tuple subclass with the fields as
C-level getters, ``_fields``, ``_field_defaults``, ``__match_args__``, the
class body's methods, docstring and other attributes, and a ``__new__`` that
is the precompiled one of its number of fields below, with the field names
as its parameters (so keywords, defaults and the errors for a missing or
unexpected argument are a plain function's).  ``_make``, ``_replace``,
``_asdict``, ``__repr__`` and pickling come from one base class, _Record.
A field without a default may not follow one with a default; field names
may not start with '_'; the names typing's NamedTuple
refuses in a class body (``_replace``, ``__new__``, ...) are refused alike;
annotations are kept as written, unevaluated.  Generic named tuples are not
supported (sandlock has none).  mypy sees typing.NamedTuple itself.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")

if TYPE_CHECKING:
    from typing import Any

    def _tuplegetter(index: int, doc: str) -> Any: ...
else:
    try:
        from _collections import _tuplegetter  # the C accessor of collections.namedtuple's fields
    except ImportError:  # an interpreter without it
        from operator import itemgetter as _itemgetter

        def _tuplegetter(index, doc):
            return property(_itemgetter(index), doc=doc)

# the names typing.NamedTuple refuses in a class body, and those it does not copy onto the class
_PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
                         "_make", "_replace", "_asdict", "_source"})
_SPECIAL = frozenset({"__module__", "__name__", "__qualname__", "__annotations__"})
_tuple_new = tuple.__new__


# The __new__ of a record of N fields, compiled with this module; a class's is a copy with
# its fields' names (CodeType.replace).  Past 20 fields one is compiled when first needed.
def _new0(_cls): return _tuple_new(_cls, ())  # noqa: E704
def _new1(_cls, _0): return _tuple_new(_cls, (_0,))  # noqa: E704
def _new2(_cls, _0, _1): return _tuple_new(_cls, (_0, _1))  # noqa: E704
def _new3(_cls, _0, _1, _2): return _tuple_new(_cls, (_0, _1, _2))  # noqa: E704
def _new4(_cls, _0, _1, _2, _3): return _tuple_new(_cls, (_0, _1, _2, _3))  # noqa: E704
def _new5(_cls, _0, _1, _2, _3, _4): return _tuple_new(_cls, (_0, _1, _2, _3, _4))  # noqa: E704
def _new6(_cls, _0, _1, _2, _3, _4, _5): return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5))  # noqa: E704
def _new7(_cls, _0, _1, _2, _3, _4, _5, _6): return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6))  # noqa: E704
def _new8(_cls, _0, _1, _2, _3, _4, _5, _6, _7): return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7))  # noqa: E704,E501
def _new9(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8): return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8))  # noqa: E704,E501
def _new10(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9))
def _new11(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10))
def _new12(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11))
def _new13(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12))
def _new14(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13))
def _new15(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14))
def _new16(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15))
def _new17(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16))
def _new18(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17))
def _new19(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18):  # noqa: E302
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18))
def _new20(_cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19):  # noqa: E302,E501
    return _tuple_new(_cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19))  # noqa: E501


_NEW = {count: globals()[f"_new{count}"].__code__ for count in range(21)}
_FUNCTION: "Any" = type(_new0)  # types.FunctionType


def _new_code(count: int):  # type: ignore[no-untyped-def]
    code = _NEW.get(count)
    if code is None:  # more fields than any sandlock record has today
        names = "".join(f"_{i}, " for i in range(count))
        scope: dict = {}
        exec(f"def _new(_cls, {names}): return _tuple_new(_cls, ({names}))", globals(), scope)
        code = _NEW[count] = scope["_new"].__code__
    return code


class _Record(tuple):
    """What every record has: collections.namedtuple's methods, from the class's _fields."""

    __slots__ = ()
    _fields: tuple = ()

    @classmethod
    def _make(cls, iterable):  # type: ignore[no-untyped-def]
        result = _tuple_new(cls, iterable)
        if len(result) != len(cls._fields):
            raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(result)}")
        return result

    def _replace(self, **changes):  # type: ignore[no-untyped-def]
        result = self._make(map(changes.pop, self._fields, self))
        if changes:
            raise ValueError(f"Got unexpected field names: {list(changes)!r}")
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in zip(self._fields, self))})"

    def _asdict(self) -> dict:
        return dict(zip(self._fields, self))

    def __getnewargs__(self) -> tuple:
        return tuple(self)


def _make_class(typename: str, fields: tuple, defaults: tuple, ns: dict) -> type:
    """The record class `typename`, its __new__ taking `fields` (the last ones with `defaults`)."""
    for name in fields:  # annotated names: identifiers, once each
        if name.startswith("_"):
            raise ValueError(f"Field names cannot start with an underscore: {name!r}")
    code = _new_code(len(fields)).replace(co_varnames=("_cls",) + fields, co_name="__new__")
    if sys.version_info >= (3, 11):
        code = code.replace(co_qualname=f"{typename}.__new__")
    new = _FUNCTION(code, {"_tuple_new": _tuple_new, "__builtins__": {}}, "__new__", defaults or None)
    new.__qualname__ = f"{typename}.__new__"
    new.__doc__ = f"Create new instance of {typename}({', '.join(fields)})"
    namespace = {"__doc__": f"{typename}({', '.join(fields)})", "__slots__": (), "_fields": fields,
                 "_field_defaults": dict(zip(fields[len(fields) - len(defaults):], defaults)),
                 "__new__": new, "__match_args__": fields, "__module__": ns["__module__"]}
    for index, name in enumerate(fields):
        namespace[name] = _tuplegetter(index, f"Alias for field number {index}")
    cls = type(typename, (_Record,), namespace)
    cls.__qualname__ = ns.get("__qualname__", typename)
    return cls


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
        cls = _make_class(typename, tuple(types), tuple(ns[n] for n in default_names), ns)
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
