"""The emulated root's virtual cwd under every way a process changes or shares it: the
supervisor keeps each process's virtual cwd and caches, per thread, which process a
thread belongs to (_rootscratch.Cwd.of_thread); these show the cached answer is never
stale: chdir then getcwd, threads sharing their process's cwd, a fork after a chdir,
an exec (also from a thread other than the leader), many short-lived threads and
processes.  Fixtures: tests/rootcase.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from rootcase import PY, show, in_root, assert_no_host_path
from rootcase import deb_shared, deb  # noqa: F401  (fixtures)


CWD_CODE = r'''
import json, os, sys, threading
out = {}
out["start"] = os.getcwd()
for _ in range(50):                       # the same thread, answered again and again
    assert os.getcwd() == out["start"]
os.chdir("/usr/lib")
out["after_chdir"] = os.getcwd()
out["relative"] = open("../../etc/debian_version").read().strip() != ""
fd = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
os.fchdir(fd)
out["after_fchdir"] = os.getcwd()

# threads share their process's cwd: a chdir in one is seen by the others at once
seen = {}
def worker():
    seen["thread_before"] = os.getcwd()
    os.chdir("/usr/share")
    seen["thread_after"] = os.getcwd()
t = threading.Thread(target=worker); t.start(); t.join()
out.update(seen)
out["main_after_thread_chdir"] = os.getcwd()

# a fork after a chdir starts where its parent is; each goes its own way afterwards
os.chdir("/var")
r, w = os.pipe(); r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    first = os.getcwd()
    os.read(r, 1)                          # the parent has changed directory meanwhile
    second = os.getcwd()
    os.chdir("/tmp")
    os.write(w2, json.dumps([first, second, os.getcwd()]).encode())
    os._exit(0)
os.getcwd()
os.chdir("/usr/bin")
os.write(w, b"x")
os.waitpid(pid, 0)
out["child"] = json.loads(os.read(r2, 4096))
out["parent_after_fork"] = os.getcwd()

# many short-lived threads and processes, each asking where it is
names = []
def ask(i):
    names.append(os.getcwd())
for i in range(200):
    t = threading.Thread(target=ask, args=(i,)); t.start(); t.join()
out["threads"] = sorted(set(names))
kids = []
for d in ("/", "/etc", "/usr", "/usr/lib", "/var", "/tmp") * 5:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.chdir(d)
        os.write(w, os.getcwd().encode())
        os._exit(0)
    os.close(w)
    kids.append((d, os.read(r, 4096).decode()))
    os.waitpid(pid, 0)
out["kids_ok"] = all(d == got for d, got in kids)
out["parent_after_kids"] = os.getcwd()
print(json.dumps(out), flush=True)

# an exec keeps the cwd; from a thread other than the leader too (it takes the leader's id)
os.chdir("/usr/share")
def exec_from_thread():
    os.execv(sys.executable, [sys.executable, "-c", "import os; print(os.getcwd(), flush=True); "
             "os.chdir('/etc'); os.execv('/bin/sh', ['sh', '-c', 'pwd -P; cd /usr && exec /bin/pwd -P'])"])
threading.Thread(target=exec_from_thread).start()
threading.Event().wait(30)
'''


def test_getcwd_follows_chdir_threads_forks_and_execs(who, deb: Path) -> None:
    r = in_root(who, deb, [PY, "-c", CWD_CODE], "--cwd", "/home")
    assert r.returncode == 0, show(r)
    lines = r.stdout.splitlines()
    assert len(lines) == 4, show(r)
    out = json.loads(lines[0])
    assert out == {
        "start": "/home", "after_chdir": "/usr/lib", "relative": True, "after_fchdir": "/etc",
        "thread_before": "/etc", "thread_after": "/usr/share", "main_after_thread_chdir": "/usr/share",
        "child": ["/var", "/var", "/tmp"], "parent_after_fork": "/usr/bin",
        "threads": ["/usr/bin"], "kids_ok": True, "parent_after_kids": "/usr/bin",
    }, show(r)
    assert lines[1:] == ["/usr/share", "/etc", "/usr"], show(r)
    assert_no_host_path(r, deb)
