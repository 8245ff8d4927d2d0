"""Every row of the handler table has an in-process unit test (tests/fakectx.py).

A unit test names the rows it drives with @pytest.mark.rows(...) (host rows, _table.ROWS)
or @pytest.mark.root_rows(...) (an emulated root's, _table.root_rows()); the `fake`
fixture fails a test that does not drive what it names.  A row added to the table
without a unit test fails here, naming it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Dict, Set

from fakectx import _table

# tests/test_handlers_*_unit.py, this file aside
UNIT_MODULES = tuple(sorted(p.stem for p in Path(__file__).parent.glob("test_handlers_*_unit.py")
                            if p.stem != Path(__file__).stem))


def declared() -> Dict[str, Set[str]]:
    """marker name ("rows", "root_rows") -> the rows the unit tests declare."""
    out: Dict[str, Set[str]] = {"rows": set(), "root_rows": set()}
    for name in UNIT_MODULES:
        module = importlib.import_module(name)
        for attr in dir(module):
            if not attr.startswith("test_"):
                continue
            for mark in getattr(getattr(module, attr), "pytestmark", []):
                if mark.name in out:
                    out[mark.name].update(mark.args)
    return out


def host_rows() -> Set[str]:
    """Every host row: _table.ROWS and the deterministic runs' (built on first use)."""
    return set(_table.ROWS) | set(_table.determinism_rows())


def test_every_row_of_the_handler_table_has_an_in_process_unit_test() -> None:
    missing = sorted(host_rows() - declared()["rows"])
    assert not missing, f"rows of _table.ROWS and determinism_rows() without a unit test: {missing}"


def test_every_row_of_the_emulated_root_has_an_in_process_unit_test() -> None:
    missing = sorted(set(_table.root_rows()) - declared()["root_rows"])
    assert not missing, f"rows of _table.root_rows() without a unit test: {missing}"


def test_the_unit_tests_name_only_rows_the_tables_have() -> None:
    found = declared()
    unknown = sorted(found["rows"] - host_rows())
    # in a root, a name without a root row of its own is served by the host row
    unknown += sorted("root:" + n for n in found["root_rows"] - set(_table.root_rows()) - host_rows())
    assert not unknown, f"unit tests name rows no table has: {unknown}"
