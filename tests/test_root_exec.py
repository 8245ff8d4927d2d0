"""The emulated root, `--root DIR`: exec.  PATH search, argv[0], ELF interpreters and #!
scripts of the root, failed execs, the exec fd, a racing thread, fexecve, spawning
again and again.  Fixtures and the idea of these tests: tests/rootcase.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict

import rootfs
from rootcase import SECRET, PY, copy_root, show, in_root, assert_no_host_path, guest_file
from rootcase import deb_shared, deb, busybox_shared, musl, bb, work, canary  # noqa: F401  (fixtures)


# --- 5. exec ------------------------------------------------------------------------------------------

def test_path_search_happens_inside_the_root(who, deb: Path, scratch: Path) -> None:
    r = in_root(who, deb, ["sh", "-c", "command -v ls; ls / >/dev/null && echo ran"])
    assert (r.returncode, r.stdout) == (0, "/usr/bin/ls\nran\n"), show(r)
    # candidates that exist only on the host, or nowhere, are skipped (ENOENT), not run
    hostbin = scratch / "hostbin"
    hostbin.mkdir()
    (hostbin / "ls").write_text("#!/bin/sh\necho HOST-LS\n")
    (hostbin / "ls").chmod(0o755)
    hostbin.chmod(0o755)
    r = in_root(who, deb, ["ls", "/usr"], "--env", f"PATH={hostbin}:/nonexistent:/usr/bin")
    assert r.returncode == 0, show(r)
    assert "HOST-LS" not in r.stdout and r.stdout.split() == sorted(os.listdir(deb / "usr")), show(r)
    r = in_root(who, deb, ["sh", "-c", "command -v ls; ls /usr >/dev/null && echo ran"],
                "--env", f"PATH={hostbin}:/nonexistent:/usr/bin")
    assert (r.returncode, r.stdout) == (0, "/usr/bin/ls\nran\n"), show(r)


def test_argv0_is_what_the_caller_passed(who, deb: Path, bb: Path) -> None:
    inner = 'import sys; print(sys.orig_argv[0] if hasattr(sys, "orig_argv") else sys.argv[0])'
    r = in_root(who, deb, [PY, "-c", f'import os; os.execv("/usr/bin/python3", ["custom0", "-c", {inner!r}])'])
    assert (r.returncode, r.stdout) == (0, "custom0\n"), show(r)
    # busybox picks its applet from argv[0]: each symlink name must reach it unchanged
    r = in_root(who, bb, ["sh", "-c", "/bin/echo via-echo; basename /a/b/c; exec -a echo /bin/busybox via-a"])
    assert (r.returncode, r.stdout) == (0, "via-echo\nc\nvia-a\n"), show(r)


def musl_root(src: Path, dest: Path, musl: Dict[str, Path], with_loader: bool) -> Path:
    """A busybox copy with hello-dynamic at /bin/hello and at /bin/hello-opt (interpreter /opt/ld-musl...).

    With the loader: /lib/ld-musl-x86_64.so.1 is an absolute symlink to musl's libc at its real path
    (as on the host), and /opt/ld-musl-x86_64.so.1, a path the host does not have, is a copy of it.
    """
    root = copy_root(src, dest)
    hello = musl["hello-dynamic"].read_bytes()
    interp = rootfs.elf_interpreter(musl["hello-dynamic"])
    assert interp == "/lib/ld-musl-x86_64.so.1"
    patched = hello.replace(b"/lib/ld-musl-x86_64.so.1\0", b"/opt/ld-musl-x86_64.so.1\0", 1)
    for name, data in (("hello", hello), ("hello-opt", patched)):
        (root / "bin" / name).write_bytes(data)
        (root / "bin" / name).chmod(0o755)
    assert rootfs.elf_interpreter(root / "bin/hello-opt") == "/opt/ld-musl-x86_64.so.1"
    if with_loader:
        libc = rootfs.libc_musl()
        real = root / str(libc).lstrip("/")
        real.parent.mkdir(parents=True)
        shutil.copy(libc, real)
        (root / "lib").mkdir()
        os.symlink(str(libc), root / "lib/ld-musl-x86_64.so.1")
        (root / "opt").mkdir()
        shutil.copy(libc, root / "opt/ld-musl-x86_64.so.1")
        for d in (root / "lib", root / "opt", *[p for p in real.parents if str(p).startswith(str(root) + "/")]):
            d.chmod(0o755)
    return root


def test_a_dynamic_musl_binary_runs_with_the_roots_own_interpreter(who, busybox_shared: Path, scratch: Path,
                                                                    musl: Dict[str, Path]) -> None:
    assert not Path("/opt/ld-musl-x86_64.so.1").exists(), "the host must not have the patched interpreter"
    root = musl_root(busybox_shared, scratch / "with", musl, with_loader=True)
    for prog in ("/bin/hello", "/bin/hello-opt"):
        r = in_root(who, root, [prog])
        assert (r.returncode, r.stdout) == (0, "hello from musl\n"), f"{prog}:\n{show(r)}"


def test_a_dynamic_binary_fails_when_the_root_lacks_its_interpreter(who, busybox_shared: Path, scratch: Path,
                                                                    musl: Dict[str, Path]) -> None:
    assert rootfs.musl_loader().exists()  # the host has it: the root's view must not borrow it
    root = musl_root(busybox_shared, scratch / "without", musl, with_loader=False)
    r = in_root(who, root, ["/bin/hello"])
    assert r.returncode == 127, show(r)
    assert "hello from musl" not in r.stdout
    r = in_root(who, root, ["sh", "-c", "/bin/hello; echo rc=$?"])
    assert r.stdout == "rc=127\n" and "hello from musl" not in r.stdout, show(r)
    assert_no_host_path(r, root)


def test_shebang_scripts_run_the_roots_interpreter(who, bb: Path) -> None:
    assert not Path("/opt/bin/sh").exists(), "the host must not have /opt/bin/sh"
    (bb / "opt/bin").mkdir(parents=True)
    shutil.copy(bb / "bin/busybox", bb / "opt/bin/sh")  # busybox runs its "sh" applet by that name
    for d in (bb / "opt", bb / "opt/bin"):
        d.chmod(0o755)
    body = 'echo script "$0" "$1"; readlink /proc/$$/exe\n'
    for name, interp in (("s1", "/bin/sh"), ("s2", "/opt/bin/sh")):
        (bb / "bin" / name).write_text(f"#!{interp}\n{body}")
        (bb / "bin" / name).chmod(0o755)
    r = in_root(who, bb, ["/bin/s1", "a1"])
    assert (r.returncode, r.stdout) == (0, "script /bin/s1 a1\n/bin/busybox\n"), show(r)
    r = in_root(who, bb, ["/bin/s2", "a2"])
    assert (r.returncode, r.stdout) == (0, "script /bin/s2 a2\n/opt/bin/sh\n"), show(r)
    r = in_root(who, bb, ["sh", "-c", "s2 a3"])  # found through PATH, inside the root
    assert (r.returncode, r.stdout) == (0, "script /bin/s2 a3\n/opt/bin/sh\n"), show(r)
    assert_no_host_path(r, bb)


FAILED_EXEC_CODE = r'''
import errno, os
for path in ("/nonexistent", "/etc/debian_version", "/etc", "/usr/bin/nosuch", "/etc/debian_version/x"):
    try:
        os.execv(path, [path, "arg"])
    except OSError as e:
        print(path, errno.errorcode[e.errno])
data = {i: str(i) for i in range(100000)}
print("alive", sum(data), len("".join(data.values())), os.getcwd())
'''


def test_a_failed_exec_leaves_the_caller_intact(who, deb: Path) -> None:
    r = in_root(who, deb, ["sh", "-c", "nosuch; echo still-here"])
    assert (r.returncode, r.stdout) == (0, "still-here\n"), show(r)
    assert "nosuch: not found" in r.stderr, show(r)
    r = in_root(who, deb, [PY, "-c", FAILED_EXEC_CODE])
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["/nonexistent ENOENT", "/etc/debian_version EACCES", "/etc EACCES",
                                     "/usr/bin/nosuch ENOENT", "/etc/debian_version/x ENOTDIR",
                                     "alive 4999950000 488890 /"], show(r)


def test_the_exec_fd_does_not_stay_open_in_the_new_program(who, deb: Path) -> None:
    code = 'import os; print(sorted(os.listdir("/proc/self/fd"), key=int))'
    r = in_root(who, deb, [PY, "-c", code])
    assert (r.returncode, r.stdout) == (0, "['0', '1', '2', '3']\n"), show(r)
    # an exec made inside the sandbox, from Python and from a shell
    r = in_root(who, deb, [PY, "-c", 'import os; os.execv("/usr/bin/ls", ["ls", "/proc/self/fd"])'])
    assert (r.returncode, r.stdout) == (0, "0\n1\n2\n3\n"), show(r)
    r = in_root(who, deb, ["sh", "-c", "ls /proc/self/fd; exec ls /proc/self/fd"])
    assert (r.returncode, r.stdout) == (0, "0\n1\n2\n3\n" * 2), show(r)


EXEC_RACE_CODE = r'''
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
host, guest = sys.argv[1].encode(), b"/usr/bin/true"
size = max(len(host), len(guest)) + 1
for attempt in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:
        path = ctypes.create_string_buffer(size)
        a, b = ctypes.create_string_buffer(host, size), ctypes.create_string_buffer(guest, size)
        def flip():
            while True:
                ctypes.memmove(path, a, size)
                ctypes.memmove(path, b, size)
        threading.Thread(target=flip, daemon=True).start()
        argv = (ctypes.c_char_p * 2)(b"racer", None)
        envp = (ctypes.c_char_p * 1)(None)
        for i in range(20):
            libc.execve(path, argv, envp)
        os._exit(0)
    os.waitpid(pid, 0)
print("done")
'''


def test_a_thread_rewriting_the_exec_path_cannot_run_a_host_program(who, deb: Path, scratch: Path) -> None:
    # the host program exists only outside the root; /usr/bin/true exists in both
    hostprog = who.make_file(scratch / "outside" / "hostprog", f"#!/bin/sh\necho {SECRET}\n", 0o755)
    (scratch / "outside").chmod(0o755)
    r = in_root(who, deb, [PY, "-c", EXEC_RACE_CODE, str(hostprog), "100"], timeout=120)
    assert (r.returncode, r.stdout) == (0, "done\n"), show(r)
    assert SECRET not in r.stdout + r.stderr, show(r)


def test_fexecve_of_an_fd_opened_in_the_root_runs_it(who, deb: Path) -> None:
    code = ('import os; fd = os.open("/usr/bin/echo", os.O_RDONLY); '
            'os.execve(fd, ["echo", "fexecve-ok"], {})')
    r = in_root(who, deb, [PY, "-c", code])
    assert (r.returncode, r.stdout) == (0, "fexecve-ok\n"), show(r)


SPAWN_CODE = r'''
import os, subprocess
shown = [os.system("echo sys") for i in range(3)] + [subprocess.run(["echo", "x"]).returncode for i in range(3)]
# a spawn right after the previous one: the parent's memory must already be as it was
system = [i for i in range(300) if os.system(":") != 0]
run = [i for i in range(100) if subprocess.run(["true"]).returncode != 0]
# the path string the parent handed to posix_spawn (an immutable bytes object) stays as it was
path = b"/usr/bin/true"
spawned = []
for i in range(5):
    try:
        spawned.append(os.waitpid(os.posix_spawn(path, [b"true"], {}), 0)[1])
    except (OSError, ValueError) as e:
        spawned.append(type(e).__name__)
intact = path == b"/usr/bin/" + b"true"
out = subprocess.run(["cat", "/etc/debian_version"], capture_output=True, text=True).stdout.strip()
print("shown", shown, "failed", system, run, "posix_spawn", spawned, intact, "out", out)
'''


def test_system_and_subprocess_work_again_and_again_in_one_process(who, deb: Path) -> None:
    # posix_spawn and subprocess use vfork: the child's exec must not change the parent's memory
    r = in_root(who, deb, [PY, "-c", SPAWN_CODE])
    assert r.returncode == 0, show(r)
    version = guest_file(deb, "/etc/debian_version").strip()
    last = f"shown {[0] * 6} failed [] [] posix_spawn {[0] * 5} True out {version}"
    assert r.stdout.splitlines() == ["sys"] * 3 + ["x"] * 3 + [last], show(r)


SPAWN_FROM_THREAD_CODE = r'''
import os, threading
path = b"/usr/bin/true"
spawned = []
def spawn():
    for i in range(5):
        spawned.append(os.waitpid(os.posix_spawn(path, [b"true"], {}), 0)[1])
t = threading.Thread(target=spawn)
t.start()
t.join()
print("spawned", spawned, path == b"/usr/bin/" + b"true")
'''


def test_posix_spawn_from_a_thread_other_than_the_main_one_holds_that_thread(who, deb: Path) -> None:
    """The vfork parent's waiting thread is looked for in the main thread first, then in
    the listing of its threads: here it is another thread, whose path bytes must be put
    back as the main thread's are (_rootexec._vfork_thread)."""
    r = in_root(who, deb, [PY, "-c", SPAWN_FROM_THREAD_CODE])
    assert (r.returncode, r.stdout) == (0, f"spawned {[0] * 5} True\n"), show(r)


REWRITTEN_CODE = r'''
import os, subprocess
a, b = open("/work/a", "rb").read(), open("/work/b", "rb").read()
with open("/work/prog", "wb") as f:
    f.write(a)
os.chmod("/work/prog", 0o755)
st = os.stat("/work/prog")
first = subprocess.run(["/work/prog"]).returncode
with open("/work/prog", "r+b") as f:  # the same inode, the same size
    f.write(b)
os.utime("/work/prog", ns=(st.st_atime_ns, st.st_mtime_ns))  # and its mtime set back
again = os.stat("/work/prog")
print(first, subprocess.run(["/work/prog"]).returncode, (again.st_size, again.st_mtime_ns) == (st.st_size, st.st_mtime_ns))
'''


def test_a_dynamic_program_rewritten_with_its_size_and_mtime_set_back_runs_its_new_content(who, deb: Path,
                                                                                        work: Path) -> None:
    """The memfd copies of dynamic programs (PT_INTERP patched to the root's loader) are
    cached per file: by its ctime, which the rewrite changes, not its mtime, which
    utimensat sets back (before: the second run ran `true`'s cached copy, exit 0)."""
    true, false = ((deb / "usr/bin" / name).read_bytes() for name in ("true", "false"))
    size = max(len(true), len(false))
    who.make_file(work / "a", true.ljust(size, b"\0"))
    who.make_file(work / "b", false.ljust(size, b"\0"))
    r = in_root(who, deb, [PY, "-c", REWRITTEN_CODE], "--fs-mount", f"/work:{work}")
    assert (r.returncode, r.stdout) == (0, "0 1 True\n"), show(r)
