"""Real tools in a Debian root give under `sandlock --root` what they give in a bare chroot.

Each workload below is one shell script run in the Debian root of
``rootfs.debian_tools_rootfs()`` (git, gcc, make, libc6-dev, xz-utils, python3-venv)
twice, in two private copies of that root:

- in a bare ``chroot COPY`` (tests/chrootcase.py: /dev and /proc bind-mounted,
  private mount and UTS namespaces; as the unprivileged user through setpriv
  inside the chroot);
- under ``sandlock --root COPY -w /`` as root, ``--root COPY -w /tmp`` as the
  unprivileged user (who then works in /tmp); no ``--net-allow``: no network.

Exit status, stdout and stderr must be the same byte for byte; a difference fails
with a diff of the two.  The scripts fix what would differ between any two runs
(author and committer dates, archive mtimes, the environment: ``env -i`` with a fixed
PATH, HOME, LANG and TZ) and print no timestamps they cannot fix; they print digests
of what the tools built (objects, archives, binaries), so a tool that produced other
bytes under sandlock is a difference too.

The two copies are made once for the module (a 520 MB ``cp -a`` costs seconds) and
each workload works in its own directory in them, per identity.  Needs root for the
chroot baseline.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import io
import subprocess
import zipfile
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Tuple

import pytest

import rootfs
from chrootcase import chroot_run, copy_root, remove_root
from conftest import IS_ROOT, Who, build_fixture

TIMEOUT = 120  # per run; each takes seconds
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def inner(who: Who, script: str) -> List[str]:
    """The command in the root: the script under `env -i` with a fixed environment, in W
    (the workload's directory: /tmp/... as the user, who may write only there; /srv/... as root)."""
    home = "/tmp" if who.is_user else "/root"
    work = "/tmp/work" if who.is_user else "/srv/work"
    return ["/usr/bin/env", "-i", f"PATH={GUEST_PATH}", f"HOME={home}", "LANG=C.UTF-8", "TZ=UTC",
            f"W={work}", "/bin/sh", "-c", "set -e\n" + script]


# --- the copies ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tools_root() -> Path:
    return build_fixture(rootfs.debian_tools_rootfs)


class Copies:
    """One copy of the root for the chroot and one for sandlock, made on first use.

    Both identities use them: root works under /srv/work, the user under /tmp/work."""

    def __init__(self, base: Path, where: Path) -> None:
        self.base = base
        self.where = where
        self.made: Optional[Tuple[Path, Path]] = None

    def get(self) -> Tuple[Path, Path]:
        if self.made is None:
            self.made = (copy_root(self.base, self.where), copy_root(self.base, self.where))
        return self.made

    def remove(self) -> None:
        for copy in self.made or ():
            remove_root(copy)


@pytest.fixture(scope="module")
def copies(tools_root: Path, session_dir: Path) -> Iterator[Copies]:
    made = Copies(tools_root, session_dir)
    yield made
    made.remove()


def stage(copy: Path, name: str, files: Mapping[str, bytes]) -> None:
    """Input files of a workload at /tmp/in-NAME of the copy, root-owned and world-readable."""
    base = copy / "tmp" / f"in-{name}"
    for rel, data in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    for d in [base, *base.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)


def compare(who: Who, copies: Copies, name: str, script: str, files: Optional[Mapping[str, bytes]] = None) -> None:
    """Run the script in the chroot and under sandlock as who; any difference fails with a diff."""
    if not IS_ROOT:
        pytest.skip("the chroot baseline needs root (chroot, mount)")
    chroot_copy, sandlock_copy = copies.get()
    for copy in (chroot_copy, sandlock_copy):
        stage(copy, name, files or {})
    script = f'W="$W/{name}"; mkdir -p "$W"; cd "$W"\n' + script
    command = inner(who, script)
    base = chroot_run(chroot_copy, command, who, timeout=TIMEOUT, errors="surrogateescape")
    assert base.returncode == 0, f"the chroot baseline itself failed:\n{show(base)}"
    write = "/tmp" if who.is_user else "/"
    got = who.run(["--root", str(sandlock_copy), "-w", write, "--", *command], timeout=TIMEOUT)
    if (got.returncode, got.stdout, got.stderr) != (base.returncode, base.stdout, base.stderr):
        report = [f"as {who.name}, {name}: sandlock --root differs from chroot",
                  f"exit status: chroot {base.returncode}, sandlock {got.returncode}"]
        for stream in ("stdout", "stderr"):
            report += difflib.unified_diff(getattr(base, stream).splitlines(), getattr(got, stream).splitlines(),
                                           f"chroot {stream}", f"sandlock {stream}", lineterm="")
        pytest.fail("\n".join(report), pytrace=False)


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


# --- git -----------------------------------------------------------------------------------------

GIT = r"""
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME='A U Thor' GIT_AUTHOR_EMAIL=author@example.org
export GIT_COMMITTER_NAME='C O Mitter' GIT_COMMITTER_EMAIL=committer@example.org
export GIT_AUTHOR_DATE='2005-04-07T22:13:13+00:00' GIT_COMMITTER_DATE='2005-04-07T22:13:13+00:00'
git init -q -b main repo
cd repo
mkdir -p src/deep/er docs
i=0
while [ $i -lt 60 ]; do printf 'file %s\nline two\n' $i > src/f$i.c; i=$((i + 1)); done
printf 'deep\n' > src/deep/er/leaf.txt
printf '#!/bin/sh\necho run\n' > run.sh
chmod 755 run.sh
ln -s src/f1.c link.c
printf '*.o\n' > .gitignore
printf 'ignored\n' > junk.o
git add -A
git commit -q -m 'first commit'
export GIT_COMMITTER_DATE='2005-04-08T10:00:00+00:00'
printf 'changed\n' >> src/f2.c
git rm -q src/f3.c
git mv src/f4.c docs/moved.c
git commit -q -am 'second commit'
git tag -a -m 'version one' v1
git checkout -q -b side HEAD~1
printf 'side\n' > side.txt
git add side.txt
git commit -q -m 'side commit'
git checkout -q main
git merge -q --no-ff -m 'merge side' side
git log --format='%H %P %an %ae %aI %cI %s' --graph --all
# the index's cached stat data (ctime, mtime, dev, ino) differs between any two checkouts: size and flags only
git ls-files -s --debug | grep -v -e ctime: -e mtime: -e dev: -e uid:
git cat-file -p v1
git gc -q --prune=now
git count-objects -v
ls .git/objects/pack
git verify-pack -v .git/objects/pack/*.idx | sort
git fsck --strict --no-progress --no-dangling
cd ..
git clone -q repo clone
cd clone
git log --format=%H
git status --porcelain
printf 'new\n' > new.txt
printf 'more\n' >> src/f5.c
rm src/f6.c
git status --porcelain
git diff --stat
git rev-parse HEAD HEAD^{tree} v1^{commit}
git archive --format=tar HEAD | sha256sum
git stash -q -u
git status --porcelain
git stash list
git stash pop -q
git status --porcelain
git checkout -q -- . && git clean -q -fd
chmod 755 src/f7.c
touch src/f8.c
git -c core.untrackedCache=true status --porcelain
git update-index --refresh >/dev/null || true
git diff --summary
git checkout -q -- src/f7.c
printf '#!/bin/sh\necho pre-commit hook ran in "$(pwd)"\n' > .git/hooks/pre-commit
chmod 755 .git/hooks/pre-commit
printf 'x\n' > hooked.txt
git add hooked.txt
git commit -q -m 'with a hook'
git worktree add -q ../wt v1
git worktree list --porcelain | sed -n 's/^HEAD //p'
git -C ../wt status --porcelain --branch
git fsck --strict --no-progress --no-dangling
"""


def test_git_init_commit_gc_fsck_clone_and_status_give_what_they_give_in_a_chroot(who: Who, copies: Copies) -> None:
    compare(who, copies, "git", GIT)


# --- gcc and make --------------------------------------------------------------------------------

C_PROJECT = {
    "greet.h": b"const char *greet(const char *who);\nint plugin_call(const char *path, int x);\n",
    "greet.c": b"""#include <stdio.h>
#include "greet.h"
static char buf[128];
const char *greet(const char *who) { snprintf(buf, sizeof buf, "hello, %s", who); return buf; }
""",
    "plugin.c": b"int plugin_twice(int x) { return 2 * x + 1; }\n",
    "main.c": b"""#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include "greet.h"
int plugin_call(const char *path, int x) {
    void *h = dlopen(path, RTLD_NOW);
    if (!h) { fprintf(stderr, "dlopen: %s\\n", dlerror()); exit(3); }
    int (*f)(int) = (int (*)(int))dlsym(h, "plugin_twice");
    if (!f) { fprintf(stderr, "dlsym: %s\\n", dlerror()); exit(4); }
    int r = f(x);
    dlclose(h);
    return r;
}
int main(int argc, char **argv) {
    printf("%s\\n", greet(argc > 1 ? argv[1] : "world"));
    printf("plugin says %d\\n", plugin_call("./plugins/plugin.so", 20));
    return 0;
}
""",
    "static.c": b"""#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
int plugin_twice(int x);
int main(void) {
    struct utsname u;
    char cwd[256];
    if (uname(&u) != 0 || getcwd(cwd, sizeof cwd) == NULL) return 1;
    FILE *f = fopen("static.out", "w");
    if (!f) return 2;
    fprintf(f, "static %s %d\\n", u.sysname, plugin_twice(4));
    fclose(f);
    printf("static binary in %s, %s\\n", cwd, u.sysname);
    return 0;
}
""",
    "Makefile": b"""CFLAGS = -O2 -Wall -Werror
all: main static plugins/plugin.so
lib/libgreet.so: greet.c greet.h
\tmkdir -p lib
\t$(CC) $(CFLAGS) -fPIC -shared -Wl,-soname,libgreet.so.1 -o lib/libgreet.so.1 greet.c
\tln -sf libgreet.so.1 $@
plugins/plugin.so: plugin.c
\tmkdir -p plugins
\t$(CC) $(CFLAGS) -fPIC -shared -o $@ plugin.c
main.o: main.c greet.h
\t$(CC) $(CFLAGS) -c -o $@ main.c
main: main.o lib/libgreet.so
\t$(CC) -o $@ main.o -Llib -lgreet -ldl -Wl,-rpath,'$$ORIGIN/lib'
static: static.c libtwice.a
\t$(CC) $(CFLAGS) -static -o $@ static.c -L. -ltwice
libtwice.a: plugin.c
\t$(CC) $(CFLAGS) -MMD -c -o twice.o plugin.c
\tar rcs $@ twice.o
clean:
\trm -rf main main.o static lib plugins static.out libtwice.a twice.o twice.d
.PHONY: all clean
""",
}

GCC_MAKE = r"""
cp -r /tmp/in-gcc src
cd src
make -s -j2
./main
./main sandlock
./static
cat static.out
readelf -d main | grep -E 'NEEDED|RUNPATH|RPATH'
readelf -h static | grep Type
readelf -l static | grep -c INTERP || true
sha256sum main.o main static lib/libgreet.so.1 plugins/plugin.so libtwice.a twice.o
cat twice.d
ar t libtwice.a
strip -o main.stripped main && ./main.stripped stripped && sha256sum main.stripped
find lib plugins -printf '%y %M %p %l\n' | sort
make -s -j2
make -q all && echo up to date
touch greet.h
make -q all || echo out of date after touch
make -s clean
ls
"""


def test_gcc_and_make_build_a_shared_library_rpath_dlopen_and_static_project_as_in_a_chroot(
        who: Who, copies: Copies) -> None:
    compare(who, copies, "gcc", GCC_MAKE, C_PROJECT)


# --- tar and xz ----------------------------------------------------------------------------------

TAR = r"""
mkdir -p tree/sub/deeper tree/empty
printf 'hello\n' > tree/a.txt
head -c 100000 /usr/bin/env > tree/sub/binary
printf 'exec\n' > tree/sub/run
chmod 750 tree/sub/run
chmod 600 tree/a.txt
chmod 711 tree/sub/deeper
ln tree/a.txt tree/sub/hard
ln -s ../a.txt tree/sub/sym
head -c 5000 /dev/zero | tr '\0' x > tree/sub/deeper/long
truncate -s 4M tree/sub/sparse
printf 'end' >> tree/sub/sparse
python3 -c 'import os; os.setxattr("tree/a.txt", "user.note", b"kept")'
find tree -exec touch -h -d '2001-09-09 01:46:40' {} +
tar --sort=name --owner=0 --group=0 --numeric-owner --sparse -cJf tree.tar.xz tree
# xattrs need a pax archive: its headers record each file's ctime (no call can set it) unless told not
# to, and a sparse member's name there holds tar's pid, so the xattrs go into an archive of their own
tar --owner=0 --group=0 --numeric-owner --xattrs --pax-option=delete=ctime,delete=atime -cf attr.tar tree/a.txt
xz -t tree.tar.xz && echo xz ok
sha256sum tree.tar.xz attr.tar
tar -tvJf tree.tar.xz
mkdir out
mkdir attr
tar --xattrs -xpf attr.tar -C attr
python3 -c 'import os; print(os.getxattr("attr/tree/a.txt", "user.note"))'
tar -xpJf tree.tar.xz -C out
cd out
du -k tree/sub/sparse | cut -f1
find tree -printf '%y %M %n %U:%G %s %T@ %p %l\n' | sort -k7
find tree -type f -exec sha256sum {} + | sort -k2
tar -cJf - tree | xz -dc | tar -t | sort
"""


def test_tar_creates_and_extracts_xz_archives_as_in_a_chroot(who: Who, copies: Copies) -> None:
    compare(who, copies, "tar", TAR)


# --- venv and pip --------------------------------------------------------------------------------

def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def tiny_wheel() -> Tuple[str, bytes]:
    """A pure-Python wheel (a module and a console script), made here with zipfile, fixed dates."""
    files = {
        "tinypkg/__init__.py": b'VERSION = "1.0"\n\ndef main():\n    print("tinypkg", VERSION, __file__)\n',
        "tinypkg/data.txt": b"some data\n",
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n"
                                          b"Summary: a wheel built by tests/test_root_tools.py\n",
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test_root_tools\n"
                                       b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        "tinypkg-1.0.dist-info/entry_points.txt": b"[console_scripts]\ntinypkg-hello = tinypkg:main\n",
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    record += "tinypkg-1.0.dist-info/RECORD,,\n"
    files["tinypkg-1.0.dist-info/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 5))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return "tinypkg-1.0-py3-none-any.whl", buf.getvalue()


VENV_PIP = r"""
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
python3 -m venv venv
venv/bin/python -c 'import sys; print(sys.prefix, sys.base_prefix, sys.executable)'
venv/bin/pip install --no-index /tmp/in-venv/tinypkg-1.0-py3-none-any.whl
venv/bin/tinypkg-hello
venv/bin/python -c 'import importlib.resources as r, tinypkg; print(r.files(tinypkg).joinpath("data.txt").read_text(), end="")'
venv/bin/pip list --format=freeze
venv/bin/pip check
venv/bin/pip show -f tinypkg
sort venv/lib/python3.11/site-packages/tinypkg-1.0.dist-info/RECORD
head -1 venv/bin/tinypkg-hello
venv/bin/pip uninstall -y tinypkg
venv/bin/python -c 'import tinypkg' 2>&1 | tail -1
ls venv/bin | sort
python3 -m venv --copies --without-pip copies
cmp copies/bin/python3 /usr/bin/python3.11 && echo copied
find copies -printf '%y %M %p %l\n' | sort -k3
copies/bin/python -c 'import sys; print(sys.prefix, sys.flags.isolated)'
"""


def test_a_venv_and_pip_install_of_a_local_wheel_give_what_they_give_in_a_chroot(who: Who, copies: Copies) -> None:
    name, data = tiny_wheel()
    compare(who, copies, "venv", VENV_PIP, {name: data})
