"""How the CLI's process ends (sandlock.cli, README "Start-up").

Once main() has returned, the `sandlock` script and `python -m sandlock` end
with os._exit, skipping the interpreter's teardown of every module the
supervisor loaded, unless something is still to run: an atexit callback, a
live weakref.finalize, a thread.  Each test runs cli() in a program whose
module holds a witness that prints "teardown" when the interpreter tears the
module down (what os._exit skips), so the output shows which way it ended.
"""

from __future__ import annotations

import pytest

from rootcase import busybox_shared  # noqa: F401  (fixture)

WITNESS = (
    "import atexit, os, sys\n"
    "atexit._clear()\n"  # what the interpreter's own site registered (pyenv's does): only the run's matter here
    "class Witness:\n"
    "    def __del__(self):\n"
    "        os.write(2, b'teardown\\n')\n"
    "witness = Witness()\n"
    "import sandlock\n"
)


def ending(who, before_cli: str = "") -> tuple:  # type: ignore[no-untyped-def]
    r = who.python(WITNESS + before_cli + "sys.argv[1:] = ['--', '/bin/sh', '-c', 'exit 3']\nsandlock.cli()\n")
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def test_a_run_ends_the_process_without_teardown(who) -> None:  # type: ignore[no-untyped-def]
    # the run's resolver makes its handle on its first reopen (/bin/sh opens its libraries)
    assert ending(who) == (3, "", "")


def test_a_run_ends_without_teardown_though_weakref_finalize_registered_its_exit_function(who) -> None:  # type: ignore[no-untyped-def]
    # a finalizer of the program's, already called: weakref's exit function stays registered
    # with atexit, with nothing to call
    code = "import weakref\nclass Gone: pass\ngone = Gone()\nweakref.finalize(gone, int)()\n"
    assert ending(who, code) == (3, "", "")


def test_a_callback_the_program_registered_with_atexit_still_runs_at_the_end(who) -> None:  # type: ignore[no-untyped-def]
    code = "import atexit\natexit.register(lambda: os.write(1, b'callback\\n'))\n"
    status, out, err = ending(who, code)
    assert (status, out) == (3, "callback\n") and "teardown" in err, err


def test_a_live_weakref_finalizer_of_the_program_still_runs_at_the_end(who) -> None:  # type: ignore[no-untyped-def]
    code = "import weakref\nclass Kept: pass\nkept = Kept()\nweakref.finalize(kept, os.write, 1, b'finalized\\n')\n"
    status, out, err = ending(who, code)
    assert (status, out) == (3, "finalized\n") and "teardown" in err, err


def test_a_thread_of_the_program_still_running_is_waited_for(who) -> None:  # type: ignore[no-untyped-def]
    code = ("import threading, time\n"
            "threading.Thread(target=lambda: (time.sleep(0.5), os.write(1, b'thread\\n'))).start()\n")
    status, out, err = ending(who, code)
    assert (status, out) == (3, "thread\n") and "teardown" in err, err


def test_a_plain_run_s_start_imports_neither_re_nor_enum(who) -> None:  # type: ignore[no-untyped-def]
    """README "Start-up": re and enum (which signal, socket and re import) cost some 5 ms
    of a CLI start; the options a plain run takes need neither (before: both, every run),
    nor the termios and resource modules (a few constants, and the limits set by prlimit64),
    nor _policyfn (the API's policy callback), nor contextlib (runpy imports it for
    `python -m`, the installed script does not), nor selectors (Watch's loop is epoll's),
    nor weakref (a resolver closes its handle in __del__), nor threading, functools,
    collections or array (the supervisor's threads are _threads', on _thread; its caches
    its own; the array module imports collections: ~3 ms together)."""
    r = who.python("import sys\n"
                   "before = set(sys.modules)\n"
                   "import sandlock\n"
                   "code = sandlock.main(['-r', '/usr', '-w', '/tmp', '-t', '30', '-m', '512M',\n"
                   "                      '--deny-syscall', 'mount', '--', '/bin/sh', '-c', 'exit 3'])\n"
                   "print(code, sorted({'re', 'enum', 'typing', 'signal', 'socket', 'termios', 'resource',\n"
                   "                    'sandlock._policyfn', 'contextlib', 'selectors', 'weakref',\n"
                   "                    'threading', 'functools', 'collections', 'array', 'operator', 'reprlib'}\n"
                   "                   & (set(sys.modules) - before)))\n")
    assert r.stdout.decode() == "3 []\n", r.stderr.decode()[-3000:]


@pytest.mark.parametrize("mode", ["root", "workdir"])
def test_a_root_s_or_a_workdir_s_start_imports_no_more_of_the_library_than_a_plain_run(  # type: ignore[no-untyped-def]
        who, mode, busybox_shared, scratch) -> None:
    """README "Start-up": the modules of an emulated root and of a workdir (_rootfs,
    _rootexec, _cow, ...) import none of re, threading, queue, tempfile (with shutil, bz2,
    lzma, random), resource or contextlib either (before: 10 and 15 ms of the CLI's
    start), nor _policyfn without a callback, nor anything a plain run does not."""
    options = ["--root", str(busybox_shared)] if mode == "root" else ["--workdir", str(who.make_dir(scratch / "wd", 0o755))]
    r = who.python("import sys\n"
                   "before = set(sys.modules)\n"
                   "import sandlock\n"
                   f"code = sandlock.main({options!r} + ['--', '/bin/sh', '-c', 'exit 3'])\n"
                   "print(code, sorted({'re', 'enum', 'typing', 'threading', 'queue', '_queue', 'tempfile', 'shutil',\n"
                   "                    'random', 'bz2', 'lzma', 'resource', 'contextlib', 'collections', 'functools',\n"
                   "                    'weakref', 'selectors', 'sandlock._policyfn'} & (set(sys.modules) - before)))\n")
    assert r.stdout.decode() == "3 []\n", r.stderr.decode()[-3000:]


def test_only_a_deterministic_run_imports_the_determinism_handlers(who) -> None:  # type: ignore[no-untyped-def]
    """README "Start-up": _determinism (and hashlib) are imported by a policy with a seed,
    a start time or sorted listings only; such a run still works (its handlers preloaded)."""
    for options, code, imported in (([], 3, "False False"),
                                    (["--random-seed", "7", "--deterministic-dirs"], 4, "True True"),
                                    (["--deterministic-dirs"], 4, "True False")):
        r = who.python("import sys\n"
                       "import sandlock\n"
                       f"code = sandlock.main({options!r} + ['--', '/bin/sh', '-c', 'ls /usr >/dev/null && exit {code}'])\n"
                       "print(code, 'sandlock._determinism' in sys.modules, 'hashlib' in sys.modules)\n")
        assert r.stdout.decode() == f"{code} {imported}\n", (options, r.stderr.decode()[-3000:])
