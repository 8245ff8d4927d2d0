"""sandlock's build backend (PEP 517 and PEP 660), in the standard library only.

pyproject.toml names it, so `pip install .` needs nothing from the network
(no setuptools, no wheel) and leaves nothing in the source tree (no build/,
no *.egg-info).  It reads the [project] table of pyproject.toml (the simple
form this project writes: strings, one list of modules, one script) and
ships the flat modules it lists as one package (README "Installing and
vendoring"), README.md as the description and LICENSE.
"""

import base64
import csv
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # 1980-01-01: zip's earliest date


def _project():
    text = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()

    def table(name):
        found = re.search(r"^\[" + re.escape(name) + r"\][^\n]*\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        return found.group(1) if found else ""

    def string(body, key):
        found = re.search(r"^" + re.escape(key) + r'\s*=\s*"([^"]*)"', body, re.M)
        return found.group(1) if found else ""

    project = table("project")
    modules = re.search(r"^py-modules\s*=\s*\[(.*?)\]", table("tool.sandlock_build"), re.M | re.S)
    scripts = re.findall(r'^(\S+)\s*=\s*"([^"]+)"', table("project.scripts"), re.M)
    return {
        "name": string(project, "name"), "version": string(project, "version"),
        "summary": string(project, "description"), "requires_python": string(project, "requires-python"),
        "license": (re.search(r'^license\s*=\s*\{\s*text\s*=\s*"([^"]*)"', project, re.M) or [None, ""])[1],
        "package": string(table("tool.sandlock_build"), "package"),
        "modules": re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', modules.group(1)) if modules else [],
        "scripts": scripts,
    }


# python -m sandlock, installed (runpy runs a package's __main__ module)
_MAIN = '''"""python -m {name}: the command line of the installed package."""

import sys

from . import main

sys.exit(main())
'''

# A [project.scripts] command, shipped as the wheel's own script (pip writes the
# interpreter's path over "#!python"): the wrapper pip writes for an entry point
# imports re (and re imports enum), about 3 ms of every start (README "Start-up")
_SCRIPT = '''#!python
"""The {module} command: {module}.{function}() (README "Start-up")."""
from {module} import {function}

if __name__ == "__main__":
    raise SystemExit({function}())
'''

# The one line of the editable install's .pth (site.py runs lines that start with
# "import"): a finder, last on sys.meta_path, that knows the one name {name}
_EDITABLE = ("import sys, importlib.machinery as m; sys.meta_path.append(type('EditableFinder', (), "
             "{{'find_spec': staticmethod(lambda name, path=None, target=None, finder=m.PathFinder: "
             "finder.find_spec(name, [{root!r}]) if name == {name!r} else None)}}))\n")


def _dist(p):
    return re.sub(r"[-_.]+", "_", p["name"]).lower() + "-" + p["version"]


def _metadata(p):
    lines = ["Metadata-Version: 2.1", "Name: " + p["name"], "Version: " + p["version"],
             "Summary: " + p["summary"], "License: " + p["license"], "Requires-Python: " + p["requires_python"],
             "Classifier: Operating System :: POSIX :: Linux", "Classifier: Programming Language :: Python :: 3",
             "Description-Content-Type: text/markdown", "", ""]
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return ("\n".join(lines) + readme).encode("utf-8")


class _Wheel:
    def __init__(self, path):
        self.zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
        self.record = []

    def add(self, name, data, mode=0o644):
        info = zipfile.ZipInfo(name, time.gmtime(_EPOCH)[:6])
        info.external_attr = mode << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.record.append((name, "sha256=" + digest, str(len(data))))

    def close(self, dist_info):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(self.record + [(dist_info + "/RECORD", "", "")])
        self.add_raw(dist_info + "/RECORD", out.getvalue().encode())
        self.zip.close()

    def add_raw(self, name, data):
        info = zipfile.ZipInfo(name, time.gmtime(_EPOCH)[:6])
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)


def _build(wheel_directory, editable):
    p = _project()
    dist = _dist(p)
    name = dist + "-py3-none-any.whl"
    wheel = _Wheel(os.path.join(wheel_directory, name))
    package = p["package"]
    if editable:  # PEP 660: a finder of the one name `package`, in the checkout (not the checkout on sys.path)
        wheel.add("__editable__." + dist + ".pth", _EDITABLE.format(name=package, root=ROOT).encode())
    else:  # the package: sandlock.py is its __init__.py, the _*.py beside it are its modules
        for module in p["modules"]:
            data = open(os.path.join(ROOT, module + ".py"), "rb").read()
            wheel.add(package + "/" + ("__init__" if module == package else module) + ".py", data)
        wheel.add(package + "/__main__.py", _MAIN.format(name=package).encode())
        wheel.add(package + "/py.typed", b"")
    info = dist + ".dist-info"
    wheel.add(info + "/METADATA", _metadata(p))
    wheel.add(info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: sandlock_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    for script, target in p["scripts"]:  # a script of the wheel's, not an entry point (see _SCRIPT)
        module, _, function = target.partition(":")
        wheel.add(dist + ".data/scripts/" + script, _SCRIPT.format(module=module, function=function).encode(),
                  mode=0o100755)  # a regular file, executable: pip keeps the x bits of such an entry
    wheel.add(info + "/LICENSE", open(os.path.join(ROOT, "LICENSE"), "rb").read())
    wheel.close(info)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, editable=False)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, editable=True)


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    dist = _dist(p)
    name = dist + ".tar.gz"
    skip = {".git", "__pycache__", ".pytest_cache", "build", "dist"}
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        def add(rel, data):
            info = tarfile.TarInfo(dist + "/" + rel)
            info.size, info.mtime, info.mode = len(data), _EPOCH, 0o644
            tar.addfile(info, io.BytesIO(data))
        for top, dirs, files in os.walk(ROOT):
            dirs[:] = sorted(d for d in dirs if d not in skip and not d.endswith(".egg-info"))
            for f in sorted(files):
                if f.endswith((".pyc", ".whl")):
                    continue
                path = os.path.join(top, f)
                add(os.path.relpath(path, ROOT), open(path, "rb").read())
        add("PKG-INFO", _metadata(p))
    return name
