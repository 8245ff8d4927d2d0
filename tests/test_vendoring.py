"""Installing and vendoring are safe (README "Installing and vendoring").

sandlock.py is the package of the _*.py modules beside it: they load only as
sandlock._name (or pkg._vendor.sandlock._name), so a user's own _table.py
never shadows ours nor ours theirs, a copy under a package's _vendor/ works,
pip installs the one top-level name `sandlock`, and no module is ever
loaded twice under two names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import List

import pytest

from conftest import REPO, SYSTEM_PATH, SYSTEM_PYTHON, build_fixture

PRODUCT = ["sandlock.py", *sorted(p.name for p in REPO.glob("_*.py"))]
# Modules a user may well have beside their script (the names the old flat install clashed on)
USER_MODULES = ("_table", "_errors", "_structs", "_policy")


def copy_product(dest: Path) -> Path:
    """sandlock.py and _*.py copied flat into dest (made if missing), readable by everyone."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PRODUCT:
        shutil.copyfile(REPO / name, dest / name)
        (dest / name).chmod(0o644)
    return dest


def make_tree(base: Path, files: dict) -> None:
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for d in [path.parent, *path.parent.parents]:
            if d == base.parent:
                break
            d.chmod(0o755)
        path.write_text(text)
        path.chmod(0o644)


def show(r: subprocess.CompletedProcess) -> str:
    out, err = r.stdout, r.stderr
    return f"rc={r.returncode}\nstdout: {out!r}\nstderr: {err!r}"


@pytest.fixture
def busybox(scratch: Path) -> Path:
    """A private copy of the busybox root (tests/rootfs.py), readable by both identities."""
    import rootfs
    shared = build_fixture(rootfs.busybox_rootfs)
    subprocess.run(["cp", "-a", str(shared), str(scratch / "bbroot")], check=True)
    return scratch / "bbroot"


# --- a fresh venv ------------------------------------------------------------------------------

def _site_packages(venv: Path) -> Path:
    paths = sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})
    return Path(paths["purelib"])


def test_pip_install_into_a_fresh_venv_adds_only_the_package_sandlock_and_both_commands_run(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = _site_packages(venv)
    before = set(os.listdir(site))
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps",
                        "-q", "--disable-pip-version-check", str(source)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, show(r)
    assert set(os.listdir(site)) - before == {"sandlock", "sandlock_py-0.1.0.dist-info"}
    assert sorted(p.name for p in (site / "sandlock").glob("*.py")) == sorted(
        ["__init__.py", "__main__.py", *(n for n in PRODUCT if n != "sandlock.py")])
    assert (site / "sandlock" / "py.typed").exists()
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": str(tmp_path)}  # no PYTHONPATH: the installed copy
    r = subprocess.run([str(venv / "bin" / "sandlock"), "--", "/bin/true"], capture_output=True, text=True,
                       timeout=120, cwd="/", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), show(r)
    r = subprocess.run([str(venv / "bin" / "sandlock"), "--", "sh", "-c", "exit 7"], capture_output=True,
                       text=True, timeout=120, cwd="/", env=env)
    assert r.returncode == 7, show(r)
    r = subprocess.run([str(python), "-m", "sandlock", "--", "echo", "hi"], capture_output=True, text=True,
                       timeout=120, cwd="/", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", ""), show(r)
    code = ("import sandlock, sys\n"
            "print(sandlock.__file__)\n"
            "print(sandlock.Sandbox().run(['echo', 'api']).stdout.decode(), end='')\n"
            "print(sorted(n for n in sys.modules if n + '.py' in sys.argv[1:]))\n")
    r = subprocess.run([str(python), "-c", code, *PRODUCT], capture_output=True, text=True, timeout=120, cwd="/",
                       env=env)
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == [str(site / "sandlock" / "__init__.py"), "api", "['sandlock']"], show(r)


def test_an_editable_install_adds_only_the_name_sandlock_and_runs_the_checkout(tmp_path: Path) -> None:
    source = copy_product(tmp_path / "src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copyfile(REPO / name, source / name)
    shutil.copytree(REPO / "build_backend", source / "build_backend",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True,
                   timeout=120)
    python = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps",
                        "-q", "--disable-pip-version-check", "-e", str(source)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, show(r)
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": str(tmp_path)}
    code = ("import sandlock\n"
            "print(sandlock.__file__)\n"
            "print(sandlock.Sandbox().run(['echo', 'editable']).stdout.decode(), end='')\n"
            "try:\n"
            "    import _table\n"
            "except ModuleNotFoundError as e:\n"
            "    print(e)\n")
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, cwd="/", env=env)
    assert (r.returncode, r.stdout.splitlines()) == (
        0, [str(source / "sandlock.py"), "editable", "No module named '_table'"]), show(r)
    r = subprocess.run([str(venv / "bin" / "sandlock"), "--", "echo", "hi"], capture_output=True, text=True,
                       timeout=120, cwd="/", env=env)
    assert (r.returncode, r.stdout) == (0, "hi\n"), show(r)


# --- a user's own _table.py -------------------------------------------------------------------

def _user_app(app: Path) -> None:
    make_tree(app, {m + ".py": f"MINE = \"the user's {m}\"\n" for m in USER_MODULES})


def test_a_script_directory_with_its_own_table_errors_structs_and_policy_runs_a_sandbox_and_keeps_its_modules(
        who, scratch: Path) -> None:
    app = scratch / "app"
    _user_app(app)
    # the user's modules are imported first (in sys.modules before sandlock), and again after the run
    code = ("import sys\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "import _table, _errors, _structs, _policy\n"
            "import sandlock\n"
            "r = sandlock.Sandbox().run(['echo', 'sandboxed'], capture_output=True)\n"
            "print(r.returncode, r.stdout.decode().strip())\n"
            "try:\n"
            "    sandlock.Sandbox(max_memory='lots')\n"
            "except sandlock.PolicyError as e:\n"
            "    print('PolicyError', type(e).__module__)\n"
            "import _table as t2, _errors as e2, _structs as s2, _policy as p2\n"
            "print(_table.MINE, _errors.MINE, _structs.MINE, _policy.MINE)\n"
            "print(t2 is _table, e2 is _errors, s2 is _structs, p2 is _policy)\n"
            "print(sorted(n for n in sys.modules if n.startswith('sandlock.'))[:3])\n")
    r = who.python(code, args=[str(app)], timeout=120)
    assert r.returncode == 0, show(r)
    assert r.stdout.decode().splitlines() == [
        "0 sandboxed",
        "PolicyError sandlock._errors",
        "the user's _table the user's _errors the user's _structs the user's _policy",
        "True True True True",
        # (sandlock._dns only for a policy with network rules, sandlock._determinism only for a
        # deterministic one: README "Start-up")
        "['sandlock._bpf', 'sandlock._errors', 'sandlock._filter']"], show(r)


def test_python_m_sandlock_runs_in_a_directory_holding_the_users_own_errors_and_table(who, scratch: Path) -> None:
    app = scratch / "app"
    _user_app(app)
    r = who.run(["--", "sh", "-c", "echo hi; exit 3"], cwd=app)  # cwd is sys.path[0] under python -m
    assert (r.returncode, r.stdout, r.stderr) == (3, "hi\n", ""), show(r)
    r = who.run(["--max-memory", "lots", "--", "true"], cwd=app)
    assert r.returncode == 125 and r.stderr.startswith("sandlock: --max-memory: "), show(r)


# --- a vendored copy ----------------------------------------------------------------------------

def _vendored(base: Path) -> Path:
    make_tree(base, {"pkg/__init__.py": "", "pkg/_vendor/__init__.py": ""})
    copy_product(base / "pkg" / "_vendor")
    return base


VENDORED_API = """
import sys
from pkg._vendor import sandlock
root = sys.argv[1]
r = sandlock.Sandbox().run(["echo", "host"], capture_output=True)
print(r.returncode, r.stdout.decode().strip())
r = sandlock.Sandbox(chroot=root).run(["sh", "-c", "echo root; ls /bin/busybox"], capture_output=True)
print(r.returncode, r.stdout.decode().split())
ours = sorted(n for n in sys.modules if n.startswith("pkg._vendor.sandlock."))
print(ours[0], len(ours) >= 10)
print([n for n in sys.modules if n == "sandlock" or n.startswith("sandlock.") or n in {m[:-3] for m in sys.argv[2:]}])
try:
    from pkg._vendor import _scratch
except ImportError as e:
    print(e)
"""


def test_a_copy_under_pkg_vendor_runs_sandboxes_on_the_host_and_in_a_root_without_a_top_level_name(
        who, scratch: Path, busybox: Path) -> None:
    base = _vendored(scratch / "vendored")
    modules = [n for n in PRODUCT if n != "sandlock.py"]
    r = who.python(VENDORED_API, args=[str(busybox), *modules], env={"PYTHONPATH": str(base)}, timeout=120)
    assert r.returncode == 0, show(r)
    assert r.stdout.decode().splitlines() == [
        "0 host",
        "0 ['root', '/bin/busybox']",
        "pkg._vendor.sandlock._bpf True",
        "[]",
        "pkg._vendor._scratch is part of sandlock: import sandlock, not pkg._vendor._scratch (one copy of each module)",
    ], show(r)


def test_the_vendored_copy_is_a_command_too_as_python_m_and_as_a_script(who, scratch: Path, busybox: Path) -> None:
    base = _vendored(scratch / "vendored")
    _user_app(base)  # the user's _errors.py and _table.py beside pkg/
    for argv in (["-m", "pkg._vendor.sandlock"], [str(base / "pkg" / "_vendor" / "sandlock.py")]):
        r = _run_python(who, argv + ["--root", str(busybox), "--", "sh", "-c", "echo in root; exit 4"], base)
        assert (r.returncode, r.stdout, r.stderr) == (4, "in root\n", ""), (argv, show(r))


def _run_python(who, argv: List[str], cwd: Path) -> subprocess.CompletedProcess:
    """python ARGV as this identity, in cwd, with nothing on PYTHONPATH (cwd is sys.path[0] for -m)."""
    python = SYSTEM_PYTHON if who.is_user else sys.executable
    command = [python, *argv]
    if who.is_user:
        command = who._cli.user.wrap(command)  # as Who.spawn_outside does
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": str(who.home)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=str(cwd), env=env,
                          stdin=subprocess.DEVNULL)


# --- a checkout ---------------------------------------------------------------------------------

ONE_COPY = """
import os, runpy, sys
sys.argv = ["sandlock", "--", "sh", "-c", "echo cli"]
try:
    runpy.run_module("sandlock", run_name="__main__", alter_sys=True)
except SystemExit as e:
    status = e.code
here = os.path.realpath(os.getcwd())
loaded = [(n, os.path.realpath(m.__file__)) for n, m in list(sys.modules.items())
          if os.path.dirname(os.path.realpath(getattr(m, "__file__", None) or "/")) == here]
files = [f for n, f in loaded]
print(status, len(files), len(set(files)), sorted({n.split(".")[0] for n, f in loaded}))
"""


def test_python_m_sandlock_from_a_checkout_runs_and_loads_each_module_once_under_sandlock(who, scratch: Path) -> None:
    checkout = copy_product(scratch / "checkout")
    r = _run_python(who, ["-m", "sandlock", "--", "echo", "hi"], checkout)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", ""), show(r)
    r = _run_python(who, ["sandlock.py", "--", "echo", "script"], checkout)
    assert (r.returncode, r.stdout, r.stderr) == (0, "script\n", ""), show(r)
    r = _run_python(who, ["-c", ONE_COPY], checkout)
    assert r.returncode == 0, show(r)
    status, count, distinct, names = r.stdout.splitlines()[-1].split(" ", 3)
    assert r.stdout.splitlines()[0] == "cli", show(r)
    assert (status, count == distinct, names) == ("0", True, "['sandlock']"), show(r)
    assert int(count) >= 10, show(r)


def test_no_module_of_the_checkout_imports_under_its_own_top_level_name() -> None:
    code = ("import sys\n"
            "for name in sys.argv[1:]:\n"
            "    try:\n"
            "        __import__(name)\n"
            "        print(name, 'imported')\n"
            "    except ImportError as e:\n"
            "        print(e)\n"
            "print(sorted(n for n in sys.modules if n.startswith('sandlock') or n in sys.argv[1:]))\n")
    modules = [n[:-3] for n in PRODUCT if n != "sandlock.py"]
    r = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=60,
                       cwd=str(REPO), env={"PATH": SYSTEM_PATH, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == [
        f"{m} is part of sandlock: import sandlock, not {m} (one copy of each module)" for m in modules] + ["[]"]
