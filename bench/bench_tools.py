#!/usr/bin/env python3
"""Real package and build tools in the emulated root against a bare chroot and PRoot, in one run.

    python3 bench/bench_tools.py [--runs N] [--only WORKLOAD,...] [--dir DIR] [--keep]

Needs root (the chroot baseline, and a private copy of the root written to).
Every workload runs as root in a private ``cp -a`` copy of the Debian root of
tests/rootfs.py ``debian_tools_rootfs()`` (git, gcc, make, xz-utils, ...; built
with debootstrap and apt-get the first time, then cached), in a fresh work
directory per run (made and removed outside the timing).  Workloads (--only
takes the names):
  git    git init, add and commit 2000 small files in 40 directories, then
         git gc (the issue's "git on 2000 files")
  make   a 40-file C project (40 .c files, a header, a Makefile) built with
         make -j2 from clean
  tar    tar cJf of those 2000 files, then tar xf of the archive elsewhere
  apt    apt-get install -y ./hello.deb of a local package, then dpkg -r
         (sandlock: --fake-root; PRoot: -0; chroot: real root)
Runners (one that cannot run prints "n/a (reason)"; one failing never loses
the others):
  chroot   ``unshare --mount chroot COPY`` with /dev and /proc bind-mounted:
           the baseline of every ratio;
  proot    ``proot -r COPY -b /dev -b /proc`` (-0 for apt);
  sandlock this project's CLI: python3 -m sandlock --root COPY -w / -- CMD
           (run through runpy with the checkout on sys.path, bytecode caches
           allowed, as users have them);
  before   the same from another checkout (--before DIR, e.g. a `git archive`
           of the commit before a change): before/after in one run.
The copy goes to --dir (default /var/tmp; /dev/shm puts it on tmpfs, where the
disk of a shared machine does not drown what the runners themselves cost: on
this VM's ext4 the chroot's git run spread over 7-12 s).
Each run's output is checked (a workload that printed the wrong thing makes
its runner n/a), runs are interleaved (run i of every runner, then run i+1)
after one untimed warm-up each; medians and ratios to chroot are printed with
the machine's load.  Not a test: timings never fail anything.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # rootfs.py: the cached Debian roots

TIMEOUT = 600  # seconds, one run
GUEST_ENV = ["/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME=/root", "LANG=C.UTF-8", "TZ=UTC", "DEBIAN_FRONTEND=noninteractive"]

GIT = r"""
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=A GIT_AUTHOR_EMAIL=a@example.org GIT_COMMITTER_NAME=C GIT_COMMITTER_EMAIL=c@example.org
git init -q -b main repo && cd repo
cp -a /srv/in/files/. .
git add -A && git commit -q -m one && git gc -q --prune=now
git count-objects -v | sed -n 's/^in-pack: //p'
"""
MAKE = r"""
cp -a /srv/in/cproj/. . && make -s -j2 && ./prog
"""
TAR = r"""
tar cJf a.tar.xz -C /srv/in files && mkdir x && tar xf a.tar.xz -C x && find x -type f | wc -l
"""
APT = r"""
apt-get install -y -q /srv/in/hello.deb >/dev/null && sandlock-hello && dpkg -r sandlock-hello >/dev/null
"""
# name -> (script, what its last line of output must be)
WORKLOADS = {
    "git": (GIT, "2001"),  # 2000 blobs + trees + the commit in the pack: checked below as > 2000
    "make": (MAKE, "sum 780"),
    "tar": (TAR, "2000"),
    "apt": (APT, "hello from the package"),
}
RUNNERS = ["chroot", "proot", "sandlock", "before"]


def stage_inputs(copy):
    """/srv/in of the copy: 2000 files in 40 directories, a 40-file C project, a local .deb."""
    base = os.path.join(copy, "srv", "in")
    for d in range(40):
        sub = os.path.join(base, "files", f"d{d:02}")
        os.makedirs(sub)
        for f in range(50):
            with open(os.path.join(sub, f"f{f:02}.txt"), "w") as out:
                out.write(f"file {d} {f}\n" * (1 + (d * f) % 20))
    proj = os.path.join(base, "cproj")
    os.makedirs(proj)
    with open(os.path.join(proj, "p.h"), "w") as out:
        out.write("".join(f"int f{i}(void);\n" for i in range(40)))
    for i in range(40):
        with open(os.path.join(proj, f"f{i}.c"), "w") as out:
            main = ("#include <stdio.h>\nint main(void){int s=0;\n"
                    + "".join(f"s+=f{j}();\n" for j in range(40)) + 'printf("sum %d\\n", s);return 0;}\n'
                    if i == 0 else "")
            out.write(f'#include "p.h"\nint f{i}(void){{return {i};}}\n' + main)
    with open(os.path.join(proj, "Makefile"), "w") as out:
        objs = " ".join(f"f{i}.o" for i in range(40))
        out.write(f"prog: {objs}\n\tcc -o $@ $^\n%.o: %.c p.h\n\tcc -O1 -c $<\n")
    pkg = os.path.join(tempfile.mkdtemp(prefix="bench-deb-"), "hello")
    os.makedirs(os.path.join(pkg, "DEBIAN"))
    os.makedirs(os.path.join(pkg, "usr", "bin"))
    with open(os.path.join(pkg, "DEBIAN", "control"), "w") as out:
        out.write("Package: sandlock-hello\nVersion: 1.0\nArchitecture: all\n"
                  "Maintainer: bench <bench@example.org>\nDescription: a benchmark package\n")
    exe = os.path.join(pkg, "usr", "bin", "sandlock-hello")
    with open(exe, "w") as out:
        out.write("#!/bin/sh\necho hello from the package\n")
    os.chmod(exe, 0o755)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", pkg, os.path.join(base, "hello.deb")],
                   check=True, capture_output=True)
    shutil.rmtree(os.path.dirname(pkg))
    subprocess.run(["chmod", "-R", "a+rX", base], check=True)


class Skip(Exception):
    pass


def tail(text, n=200):
    return " ".join((text or "").strip()[-n:].split())


class Runner:
    def __init__(self, name, copy, checkout=ROOT):
        self.name, self.copy = name, copy
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        if name == "chroot":
            self.prefix = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                           'mount --rbind /dev "$0/dev" && mount --bind /proc "$0/proc" && exec chroot "$0" "$@"',
                           copy]
        elif name == "proot":
            exe = shutil.which("proot")
            if not exe:
                raise Skip("proot not installed (apt-get install -y proot)")
            self.prefix = [exe, "-r", copy, "-b", "/dev", "-b", "/proc"]
        else:
            if not os.path.isfile(os.path.join(checkout, "sandlock.py")):
                raise Skip(f"no sandlock.py in {checkout}")
            boot = ("import runpy, sys; sys.path.insert(0, %r); "
                    "runpy.run_module('sandlock', run_name='__main__', alter_sys=True)" % checkout)
            self.env.pop("PYTHONDONTWRITEBYTECODE", None)
            subprocess.run([sys.executable, "-m", "compileall", "-q", checkout], env=self.env, capture_output=True)
            self.prefix = [sys.executable, "-c", boot, "--root", copy, "-w", "/"]

    def argv(self, workload, work):
        script = f"set -e\ncd {work}\n" + WORKLOADS[workload][0]
        prefix = list(self.prefix)
        if workload == "apt":
            if self.name == "proot":
                prefix[1:1] = ["-0"]
            elif self.name in ("sandlock", "before"):
                prefix.append("--fake-root")
        if self.name in ("sandlock", "before"):
            prefix.append("--")
        return prefix + GUEST_ENV + ["/bin/sh", "-c", script]

    def run(self, workload, i):
        work = f"/srv/work/{self.name}-{workload}-{i}"
        host_work = self.copy + work
        os.makedirs(host_work)
        try:
            t = time.perf_counter()
            p = subprocess.run(self.argv(workload, work), stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, errors="replace", env=self.env, cwd="/", timeout=TIMEOUT)
            ms = (time.perf_counter() - t) * 1000
        except subprocess.TimeoutExpired:
            raise Skip(f"{workload}: timed out after {TIMEOUT} s")
        finally:
            shutil.rmtree(host_work, ignore_errors=True)
        last = (p.stdout.strip().splitlines() or [""])[-1]
        want = WORKLOADS[workload][1]
        ok = (last.isdigit() and int(last) >= 2000) if workload == "git" else last == want
        if p.returncode != 0 or not ok:
            raise Skip(f"{workload}: exit {p.returncode}, last line {last!r} (want {want!r}): {tail(p.stderr)}")
        return ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per runner and workload (default 5)")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    ap.add_argument("--runners", default="chroot,proot,sandlock", help="runners, comma-separated (chroot, proot, "
                    "sandlock, before)")
    ap.add_argument("--before", default=None, metavar="DIR", help="another checkout of sandlock: runner 'before'")
    ap.add_argument("--dir", default="/var/tmp", help="where the copy of the root goes (default /var/tmp; "
                    "/dev/shm: tmpfs)")
    ap.add_argument("--keep", action="store_true", help="keep the copy of the root (its path is printed)")
    args = ap.parse_args()
    names = [w for w in args.only.split(",") if w]
    bad = [w for w in names if w not in WORKLOADS] + [r for r in args.runners.split(",") if r not in RUNNERS]
    if bad:
        sys.exit(f"bench_tools: unknown workload or runner {', '.join(bad)}")
    if os.geteuid() != 0:
        sys.exit("bench_tools: needs root (the chroot baseline and the copy of the root)")
    import rootfs
    print("# getting the Debian tools root (tests/rootfs.py; debootstrap + apt-get the first time)...", flush=True)
    base = str(rootfs.debian_tools_rootfs())
    copy = tempfile.mkdtemp(prefix="bench-tools-", dir=args.dir)
    os.chmod(copy, 0o755)
    try:
        subprocess.run(["cp", "-a", f"{base}/.", copy], check=True)
        stage_inputs(copy)
        os.makedirs(os.path.join(copy, "srv", "work"), exist_ok=True)
        load = os.getloadavg()
        print(f"# {os.uname().release}, {os.cpu_count()} CPUs, load {load[0]:.1f} {load[1]:.1f}; "
              f"root {base} copied to {copy}; runs {args.runs}", flush=True)
        runners = {}
        for name in args.runners.split(","):
            try:
                if name == "before" and not args.before:
                    raise Skip("--before DIR not given")
                runners[name] = Runner(name, copy, args.before if name == "before" else ROOT)
            except Skip as e:
                runners[name] = f"n/a ({e})"
        for workload in names:
            times = {n: [] for n, r in runners.items() if not isinstance(r, str)}
            failed = {n: r for n, r in runners.items() if isinstance(r, str)}
            for i in range(args.runs + 1):  # run 0: the untimed warm-up
                for name in list(times):
                    try:
                        ms = runners[name].run(workload, i)
                    except Skip as e:
                        failed[name] = f"n/a ({e})"
                        del times[name]
                        continue
                    if i:
                        times[name].append(ms)
            base_ms = statistics.median(times["chroot"]) if times.get("chroot") else None
            print(f"\n{workload}:")
            for name in runners:
                if name in failed:
                    print(f"  {name:9} {failed[name]}")
                    continue
                med = statistics.median(times[name])
                ratio = f"{med / base_ms:5.2f}x chroot" if base_ms else ""
                spread = f"[{min(times[name]):.0f}-{max(times[name]):.0f}]"
                print(f"  {name:9} {med:8.0f} ms {spread:15} {ratio}", flush=True)
        load = os.getloadavg()
        print(f"\n# load at the end {load[0]:.1f} {load[1]:.1f}")
    finally:
        if args.keep:
            print(f"# kept {copy}")
        else:
            subprocess.run(["rm", "-rf", "--one-file-system", copy], check=False)


if __name__ == "__main__":
    main()
