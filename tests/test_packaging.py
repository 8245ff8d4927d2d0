"""The distribution ships every module of the design card, and nothing imports sandlock."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pyproject_lists_every_flat_module():
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    listed = set(re.findall(r'"(_?[a-z]+)"', text.split("py-modules", 1)[1].split("]", 1)[0]))
    present = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "*.py"))}
    assert listed == present


def test_helper_modules_never_import_sandlock_and_ctypes_stays_in_two_files():
    for path in glob.glob(os.path.join(ROOT, "_*.py")):
        source = open(path).read()
        assert not re.search(r"^\s*(import sandlock|from sandlock import)", source, re.M), path
        if os.path.basename(path) not in ("_structs.py", "_syscalls.py"):
            assert not re.search(r"^\s*(import ctypes|from ctypes)", source, re.M), path
