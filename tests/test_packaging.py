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


def test_pip_installs_offline_ships_every_module_and_the_license_and_leaves_the_source_tree_as_it_was(tmp_path):
    """pyproject.toml's backend (build_backend/sandlock_build.py) is the standard library:
    pip needs no network and writes nothing into the source tree (README "Packaging")."""
    import shutil
    import subprocess
    import sys
    import zipfile
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache"))

    def tree():
        return sorted(str(p.relative_to(source)) for p in source.rglob("*"))
    before = tree()
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-index", "--no-deps", "-q",
                        "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert tree() == before
    (wheel,) = (tmp_path / "dist").glob("sandlock_py-*-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {"sandlock/" + os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "_*.py"))}
    shipped = {n for n in names if not n.startswith("sandlock_py-")}
    assert shipped == modules | {"sandlock/__init__.py", "sandlock/__main__.py", "sandlock/py.typed"}
    assert zipfile.ZipFile(wheel).read("sandlock/__init__.py") == open(os.path.join(ROOT, "sandlock.py"), "rb").read()
    assert "build_backend/sandlock_build.py" not in names and not any(n.startswith("tests/") for n in names)
    info = [n for n in names if n.endswith(".dist-info/LICENSE")]
    assert info and b"Apache License" in zipfile.ZipFile(wheel).read(info[0])
    # the command is the wheel's own script, not an entry point: pip's wrapper of one imports re
    assert not [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    script = zipfile.ZipFile(wheel).getinfo("sandlock_py-0.1.0.data/scripts/sandlock")
    text = zipfile.ZipFile(wheel).read(script).decode()
    assert text.startswith("#!python\n") and "from sandlock import cli" in text and "import re" not in text
    assert script.external_attr >> 16 & 0o777 == 0o755


def test_the_installed_script_names_itself_sandlock_in_its_messages(tmp_path):
    import subprocess
    import sys
    link = tmp_path / "sandlock"
    link.symlink_to(os.path.join(ROOT, "sandlock.py"))
    r = subprocess.run([sys.executable, str(link), "--bogus"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert (r.returncode, r.stderr) == (125, "sandlock: --bogus: unknown option (see sandlock --help)\n")
    r = subprocess.run([sys.executable, "-m", "sandlock", "--bogus"], capture_output=True, text=True, timeout=60,
                       cwd=ROOT)
    assert r.stderr == "sandlock: --bogus: unknown option (see python -m sandlock --help)\n"


# Files that make up the project: what they cite must be in the repository.
def _project_files():
    for pattern in ("*.py", "bench/*.py", "bench/*.c", "tests/*.py", "tests/security/*.py", "tests/progs/*.c",
                    "tests/security/progs/*.c", "*.md", "docs/*.md", "build_backend/*.py"):
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            if os.path.abspath(path) != os.path.abspath(__file__):
                yield path, open(path, encoding="utf-8", errors="replace").read()


def test_no_file_cites_a_behaviour_document_outside_the_repository():
    """The contract lives in docs/design.md; nothing cites "SPEC section N" of a
    document that is not shipped, nor a path outside the repository."""
    outside = re.compile(r"\bSPEC\s*(sections?\b|§|\d)|§\s*\d|/work/shared|\bSPEC\.md")
    for path, text in _project_files():
        for number, line in enumerate(text.splitlines(), 1):
            assert not outside.search(line), f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}"


def test_every_heading_cited_in_docs_design_exists():
    design = open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8").read()
    headings = {line.lstrip("#").strip() for line in design.splitlines() if line.startswith("#")}
    citation = re.compile(r'docs/design\.md:?((?:[\s#*]*(?:,|with|to|and)?[\s#*]*"[^"\n]+")+)')
    cited = 0
    for path, text in _project_files():
        for match in citation.finditer(text):
            for name in re.findall(r'"([^"\n]+)"', match.group(1)):
                cited += 1
                assert name in headings, f"{os.path.relpath(path, ROOT)}: {name!r} is not a heading of docs/design.md"
    assert cited > 40  # the citations are really found (code, tests, README)


def test_the_readme_module_map_names_every_module():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    start = readme.index("The modules, one job each")
    the_map = readme[start:readme.index("docs/design.md", start)]
    for path in glob.glob(os.path.join(ROOT, "*.py")):
        name = os.path.basename(path)
        assert re.search(rf"^\s*- `{re.escape(name)}`: ", the_map, re.M), f"README's module map lacks {name}"
