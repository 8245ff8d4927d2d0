"""Python 3.12 warns on fork() in a multi-threaded process; sandlock's forks from a
threaded caller (the stub, the fork server) are safe by construction and say so with a
warnings filter. The filter must match the modules' real names, whatever package they
are imported (or vendored) under, or a caller running with -W error would crash, and
must not hide the warning from anyone else's fork.  Before 3.12 fork() does not warn
and no filter is installed (filterwarnings would import re, and re enum: README
"Start-up"); the tests of the filter's patterns then run as 3.12 would (the script
says its version is 3.12 before it imports sandlock)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESSAGE = "This process (pid=123) is multi-threaded, use of fork() may lead to deadlocks in the child."
SCRIPT = """
import sys, warnings
if sys.version_info < (3, 12):
    sys.version_info = (3, 12, 0, "final", 0)
import sandlock._supervisor, sandlock._forkserver
warnings.warn_explicit({msg!r}, DeprecationWarning, "x.py", 1, module=sys.argv[1])
print("not raised")
"""


def _warn_as(module):
    return subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c",
                           SCRIPT.format(msg=MESSAGE), module],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module", ["sandlock._supervisor", "sandlock._forkserver",
                                    "myapp._vendor.sandlock._supervisor",
                                    "myapp._vendor.sandlock._forkserver"])
def test_the_fork_warning_is_ignored_where_sandlock_forks_under_any_package_name(module):
    done = _warn_as(module)
    assert (done.returncode, done.stdout) == (0, "not raised\n"), done.stderr


def test_the_same_warning_from_another_module_is_not_hidden():
    done = _warn_as("user_code")
    assert done.returncode == 1 and "multi-threaded" in done.stderr and done.stdout == ""


def test_a_python_whose_fork_does_not_warn_gets_no_filter_and_no_re():
    script = ("import sys, warnings\n"
              "before, had_re = list(warnings.filters), 're' in sys.modules\n"
              "import sandlock._supervisor, sandlock._forkserver\n"
              "print(len(warnings.filters) - len(before), 're' in sys.modules and not had_re)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    added, re_imported = done.stdout.split()
    if sys.version_info >= (3, 12):
        assert added == "2", done.stdout  # one for each module that forks
    else:
        assert (added, re_imported) == ("0", "False"), done.stdout
