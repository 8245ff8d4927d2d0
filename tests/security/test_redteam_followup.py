"""Red-team follow-up of issue 10: channels the fixes left open.

sandlock's scratch (an emulated root's anchors, private /dev and /dev/shm,
the /proc listings) lives in the user's base `/var/tmp/.sandlock-<euid>`
(README "Where sandlock keeps its own files").  The base is verified against
other users (owner, mode 0700, lstat), but the sandboxed command runs as that
same user, so every rule that covers the base (`-r /`, `-w /var/tmp`, `-w`
naming the base) is cut around it.  The probes attack the base through each
of those grants: one sandbox reading and writing another run's private
/dev/shm and planting files, a command writing its own run's scratch, and a
sandbox swapping the anchor links another --root run's exec follows.  The
controls show the same commands write where their policy allows (a directory
of /var/tmp under `-w /var/tmp`, $TMPDIR under `-w $TMPDIR`).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

from conftest import SYSTEM_READ

SECRET = "B-SECRET-4f1d"
VAR_TMP = Path("/var/tmp")


def base_of(who) -> Path:  # type: ignore[no-untyped-def]
    """Where sandlock keeps the scratch of who's runs (README "Where sandlock keeps its own files")."""
    return VAR_TMP / f".sandlock-{who.uid}"


@pytest.fixture
def control_dir(who) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A directory of who's in /var/tmp, made before the run: where the controls write."""
    path = who.make_dir(VAR_TMP / f"sandlock-test-ctl-{uuid.uuid4().hex[:12]}", 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def grant(kind: str, who, tmp: Path) -> List[str]:  # type: ignore[no-untyped-def]
    """The rules of an attacker whose grant covers sandlock's base (or $TMPDIR, the old place)."""
    return {"-r /": ["-r", "/"], "-w /var/tmp": ["-w", str(VAR_TMP)],
            "-w base": ["-w", str(base_of(who))], "-w $TMPDIR": ["-w", str(tmp)]}[kind]


GRANTS = ["-r /", "-w /var/tmp", "-w base", "-w $TMPDIR"]

# The attacker: a host-mode sandbox looks for the other run's private /dev/shm file
# under sandlock's base of its user (and tries the path the test found), reads it and
# writes over it, plants files in the base and in the scratch directories there; and
# writes a control file where its policy allows it.
ATTACKER = r"""
import glob, os, sys
controls, base, known = sys.argv[1].split(":"), sys.argv[2], sys.argv[3]
for c in controls:
    open(os.path.join(c, "control"), "w").write("control\n")
found = sorted(set([known] + glob.glob(os.path.join(base, "**", "secret"), recursive=True)))
for path in found:
    try:
        print("READ", open(path).read().strip())
    except OSError as e:
        print("read refused", e.errno)
    try:
        open(path, "w").write("WRITTEN-BY-ANOTHER-SANDBOX\n")
        print("WROTE", path)
    except OSError as e:
        print("write refused", e.errno)
for c in [base, os.path.dirname(os.path.dirname(os.path.dirname(known)))] + glob.glob(os.path.join(base, "*")):
    try:
        open(os.path.join(c, "planted"), "w").write("x")
        print("PLANTED", c)
    except OSError as e:
        print("plant refused", e.errno)
print("found", len(found))
"""


@pytest.mark.parametrize("kind", GRANTS)
def test_a_sandbox_with_write_over_tmpdir_cannot_reach_another_runs_private_dev_shm(
        who, scratch: Path, busybox_root: Path, control_dir: Path, kind: str) -> None:
    tmp = who.make_dir(scratch / "tmp", 0o1777)
    env = {"TMPDIR": str(tmp)}
    victim = who.popen(["--root", str(busybox_root), "--", "/bin/sh", "-c",
                        f"echo {SECRET} > /dev/shm/secret; sleep 6; cat /dev/shm/secret"], env=env)
    try:
        deadline = time.monotonic() + 20
        pattern = "root-*/shm/*/secret"
        while time.monotonic() < deadline and not list(base_of(who).glob(pattern)):
            time.sleep(0.1)
        secrets = list(base_of(who).glob(pattern))
        assert secrets, "the victim run never made its /dev/shm file in sandlock's base"
        attacker = who.run([*SYSTEM_READ, *grant(kind, who, tmp), "-w", str(control_dir), "-w", str(tmp), "--",
                            "/usr/bin/python3", "-c", ATTACKER, f"{control_dir}:{tmp}", str(base_of(who)),
                            str(secrets[0])], env=env)
        out, err = victim.communicate(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert attacker.returncode == 0, attacker.stderr
    # control: the attacker writes a directory of /var/tmp and $TMPDIR where its policy allows it
    assert (control_dir / "control").read_text() == "control\n"
    assert (tmp / "control").read_text() == "control\n"
    assert SECRET not in attacker.stdout, f"another sandbox read the victim's /dev/shm:\n{attacker.stdout}"
    assert "WROTE" not in attacker.stdout, f"another sandbox wrote the victim's /dev/shm:\n{attacker.stdout}"
    assert "PLANTED" not in attacker.stdout, f"a sandbox wrote in sandlock's base:\n{attacker.stdout}"
    assert victim.returncode == 0 and out.strip() == SECRET, (victim.returncode, out, err)


@pytest.mark.parametrize("kind", GRANTS)
def test_a_command_with_write_over_tmpdir_cannot_write_in_its_own_runs_scratch(
        who, scratch: Path, control_dir: Path, kind: str) -> None:
    tmp = who.make_dir(scratch / "tmp", 0o1777)
    probe = r"""
import os, sys
controls, base = sys.argv[1].split(":"), sys.argv[2]
for c in controls:
    open(os.path.join(c, "control"), "w").write("control\n")
fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)   # the run's /proc listing, in its scratch
where = os.readlink("/proc/self/fd/%d" % fd)
print("listing at", where)
for path in (where, os.path.dirname(where.rstrip("/.")), os.path.join(where, "..", ".."), base):
    try:
        open(os.path.join(path, "planted"), "w").write("x")
        print("PLANTED", path)
    except OSError as e:
        print("refused", path, e.errno)
try:
    print("LISTED", os.listdir(base))
except OSError as e:
    print("list refused", e.errno)
"""
    r = who.run(["-r", "/", *grant(kind, who, tmp), "-w", str(control_dir), "-w", str(tmp), "--",
                 "/usr/bin/python3", "-c", probe, f"{control_dir}:{tmp}", str(base_of(who))],
                env={"TMPDIR": str(tmp)})
    assert r.returncode == 0, r.stderr
    assert (control_dir / "control").read_text() == "control\n"
    assert (tmp / "control").read_text() == "control\n"
    assert f"listing at {base_of(who)}/proc-" in r.stdout, r.stdout   # the probe aims at the real scratch
    assert "PLANTED" not in r.stdout, f"the command wrote in sandlock's own scratch:\n{r.stdout}"
    assert "LISTED" not in r.stdout, f"the command listed sandlock's base:\n{r.stdout}"


def test_a_denied_workdir_cannot_be_written_through_the_hard_links_of_a_kept_layer(who, scratch: Path) -> None:
    """A kept (or live) layer's farm holds hard links to the workdir's own inodes: a
    sandbox with -w over the workdir's parent and --fs-deny on the workdir must not
    change the workdir through them, wherever under that parent the layer is (it is
    in the workdir: tests/security/test_layer_reach.py has the live layer and reads)."""
    parent = who.make_dir(scratch / "parent", 0o755)
    work = who.make_dir(parent / "proj", 0o755)
    who.make_file(work / "f", "ORIGINAL\n")
    who.make_dir(parent / "other", 0o755)
    kept = who.run(["--workdir", str(work), "--on-exit", "keep", "--", "/bin/true"])
    assert kept.returncode == 0, kept.stderr
    probe = r"""
import os, sys
parent, work = sys.argv[1], sys.argv[2]
open(os.path.join(parent, "other", "control"), "w").write("control\n")
try:
    open(os.path.join(work, "f"), "r+").write("DIRECT")
    print("DIRECT WRITE")
except OSError as e:
    print("direct refused", e.errno)
layers = [os.path.join(d, "f") for d, _, names in os.walk(parent) if d.endswith("/tree") and "f" in names]
for path in layers:
    try:
        open(path, "r+").write("THROUGH-THE-LAYER")
        print("WROTE", path)
    except OSError as e:
        print("refused", path, e.errno)
"""
    r = who.run(["-r", "/", "-w", str(parent), "--fs-deny", str(work), "--",
                 "/usr/bin/python3", "-c", probe, str(parent), str(work)])
    assert r.returncode == 0, r.stderr
    assert (parent / "other" / "control").read_text() == "control\n"   # control: -w parent works
    assert "direct refused 13" in r.stdout, r.stdout          # control: the deny holds for the path
    assert (work / "f").read_text() == "ORIGINAL\n", f"the denied workdir changed:\n{r.stdout}"


# Memfds written one at a time, each under the limit while an fd holds it, then
# passed over SCM_RIGHTS into a socket of the command's own and closed: the memory
# stays held by the messages in flight, in no fd table and no mapping.
MEMFD_IN_FLIGHT = r"""
import array, os, socket, sys, time
mode, chunks = sys.argv[1], int(sys.argv[2])
size = 24 << 20
block = b"\x01" * (1 << 20)
a, b = socket.socketpair()
held = []
for k in range(chunks):
    fd = os.memfd_create("c%d" % k)
    for _ in range(size >> 20):
        os.write(fd, block)
    if mode == "flight":
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        os.close(fd)
    else:
        held.append(fd)
time.sleep(2)
print("ALIVE", chunks * size >> 20, "MiB")
"""


def test_memfds_passed_into_a_socket_and_closed_still_count_against_the_memory_limit(who) -> None:
    # control: the same memory held by fds is counted and the run is killed
    held = who.run(["-r", "/", "-m", "64M", "--", "/usr/bin/python3", "-c", MEMFD_IN_FLIGHT, "held", "16"])
    assert held.returncode != 0 and "memory limit exceeded" in held.stderr, (held.returncode, held.stderr)
    # control: a small amount in flight is fine
    small = who.run(["-r", "/", "-m", "64M", "--", "/usr/bin/python3", "-c", MEMFD_IN_FLIGHT, "flight", "1"])
    assert small.returncode == 0 and "ALIVE 24 MiB" in small.stdout, (small.returncode, small.stderr)
    probe = who.run(["-r", "/", "-m", "64M", "--", "/usr/bin/python3", "-c", MEMFD_IN_FLIGHT, "flight", "16"])
    assert "ALIVE" not in probe.stdout, f"384 MiB of memfds held under -m 64M:\n{probe.stdout}{probe.stderr}"
    assert "memory limit exceeded" in probe.stderr, probe.stderr
    # without -m nothing is counted and nothing changes
    free = who.run(["-r", "/", "--", "/usr/bin/python3", "-c", MEMFD_IN_FLIGHT, "flight", "16"])
    assert free.returncode == 0 and "ALIVE 384 MiB" in free.stdout, (free.returncode, free.stderr)


# A memfd passed to another process of the sandbox: sent `copies` times, received
# once by the child, which holds it (the other copies stay queued), then the sender
# closes its fd; or, with "cycle", one memfd after another received and closed by
# the child, which answers each, and the next one sent only after the answer.
MEMFD_PASSED = r"""
import array, os, socket, sys, time
mode, chunks, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
block = b"\x01" * (1 << 20)
a, b = socket.socketpair()
def memfd(k):
    fd = os.memfd_create("p%d" % k)
    for _ in range(size >> 20):
        os.write(fd, block)
    return fd
def send(fd):
    a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
def receive():
    fds = array.array("i")
    msg, anc, flags, addr = b.recvmsg(1, socket.CMSG_LEN(fds.itemsize))
    fds.frombytes(anc[0][2])
    return fds[0]
if os.fork() == 0:
    a.close()
    if mode == "hold":
        fd = receive()
        time.sleep(3)
        print("CHILD HOLDS", os.fstat(fd).st_size >> 20, "MiB", flush=True)
    else:
        for _ in range(chunks):
            os.close(receive())
            b.send(b"k")
    os._exit(0)
if mode == "hold":
    fd = memfd(0)
    for _ in range(chunks):
        send(fd)
    os.close(fd)
else:
    for k in range(chunks):
        fd = memfd(k)
        send(fd)
        os.close(fd)
        assert a.recv(1) == b"k"
os.wait()
time.sleep(1)
print("ALIVE", mode)
"""


def test_a_memfd_passed_to_another_process_of_the_sandbox_is_counted_once(who) -> None:
    # 48 MiB held by the child and still queued twice: once is within -m 100M, twice is not
    r = who.run(["-r", "/", "-m", "100M", "--", "/usr/bin/python3", "-c", MEMFD_PASSED, "hold", "3", "48"])
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert "CHILD HOLDS 48 MiB" in r.stdout and "ALIVE hold" in r.stdout, r.stdout
    # control: the same memory in two memfds is over the limit
    r = who.run(["-r", "/", "-m", "100M", "--", "/usr/bin/python3", "-c",
                 MEMFD_IN_FLIGHT.replace("size = 24 << 20", "size = 48 << 20"), "held", "2"])
    assert r.returncode != 0 and "memory limit exceeded" in r.stderr, (r.returncode, r.stderr)


def test_memfds_received_and_closed_by_another_process_of_the_sandbox_stop_counting(who) -> None:
    # 16 memfds of 24 MiB, one at a time: never more than one held at once
    r = who.run(["-r", "/", "-m", "64M", "--", "/usr/bin/python3", "-c", MEMFD_PASSED, "cycle", "16", "24"])
    assert r.returncode == 0 and "ALIVE cycle" in r.stdout, (r.returncode, r.stdout, r.stderr)


# Other ways into a queue: "nested" sends memfds into socket b, then passes b itself
# through another socket and closes it (the memory sits in a queue in a queue);
# "sendmmsg" sends each with sendmmsg(2), in two messages; "many" sends 300 empty
# memfds, 100 per message, and says how each send went.
MEMFD_WAYS = r"""
import array, ctypes, errno, os, socket, sys, time
mode, chunks = sys.argv[1], int(sys.argv[2])
block = b"\x01" * (1 << 20)
a, b = socket.socketpair()
def memfd(k, mib):
    fd = os.memfd_create("w%d" % k)
    for _ in range(mib):
        os.write(fd, block)
    return fd
def rights(fds):
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
if mode == "nested":
    c, d = socket.socketpair()
    for k in range(chunks):
        fd = memfd(k, 24)
        a.sendmsg([b"x"], rights([fd]))
        os.close(fd)
    c.sendmsg([b"y"], rights([b.fileno()]))
    b.close()
    a.close()
elif mode == "sendmmsg":
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    class msghdr(ctypes.Structure):
        _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint), ("iov", ctypes.POINTER(iovec)),
                    ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                    ("flags", ctypes.c_int)]
    class mmsghdr(ctypes.Structure):
        _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
    libc = ctypes.CDLL(None, use_errno=True)
    data = ctypes.create_string_buffer(b"x")
    iov = iovec(ctypes.cast(data, ctypes.c_void_p), 1)
    for k in range(chunks):  # each memfd in two messages of one call, then closed
        fd = memfd(k, 24)
        control = ctypes.create_string_buffer(socket.CMSG_SPACE(4))
        ctypes.memmove(control, array.array("Q", [socket.CMSG_LEN(4)]).tobytes()
                       + array.array("i", [socket.SOL_SOCKET, socket.SCM_RIGHTS, fd]).tobytes(), 20)
        messages = (mmsghdr * 2)()
        for m in messages:
            m.hdr = msghdr(None, 0, ctypes.pointer(iov), 1, ctypes.cast(control, ctypes.c_void_p),
                           socket.CMSG_SPACE(4), 0)
        assert libc.sendmmsg(a.fileno(), messages, 2, 0) == 2, ctypes.get_errno()
        os.close(fd)
else:
    fds = [memfd(k, 0) for k in range(300)]
    for k in range(3):
        try:
            a.sendmsg([b"x"], rights(fds[k * 100:(k + 1) * 100]))
            print("send", k, "ok")
        except OSError as e:
            print("send", k, "refused", errno.errorcode[e.errno])
time.sleep(2)
print("ALIVE", mode)
"""


@pytest.mark.parametrize("way", ["nested", "sendmmsg"])
def test_memfds_in_a_queue_count_against_the_memory_limit_however_they_got_there(who, way: str) -> None:
    probe = who.run(["-r", "/", "-m", "64M", "--", "/usr/bin/python3", "-c", MEMFD_WAYS, way, "16"])
    assert "ALIVE" not in probe.stdout, f"384 MiB in a queue under -m 64M:\n{probe.stdout}{probe.stderr}"
    assert "memory limit exceeded" in probe.stderr, probe.stderr
    # controls: within the limit, and without -m
    small = who.run(["-r", "/", "-m", "64M", "--", "/usr/bin/python3", "-c", MEMFD_WAYS, way, "1"])
    assert small.returncode == 0 and f"ALIVE {way}" in small.stdout, (small.returncode, small.stderr)
    free = who.run(["-r", "/", "--", "/usr/bin/python3", "-c", MEMFD_WAYS, way, "16"])
    assert free.returncode == 0 and f"ALIVE {way}" in free.stdout, (free.returncode, free.stderr)


def test_memory_files_in_flight_are_capped_with_etoomanyrefs_under_the_memory_limit(who) -> None:
    r = who.run(["-r", "/", "-m", "64M", "--", "/usr/bin/python3", "-c", MEMFD_WAYS, "many", "0"])
    assert r.returncode == 0, r.stderr
    assert "send 0 ok\nsend 1 ok\nsend 2 refused ETOOMANYREFS\n" in r.stdout, r.stdout
    # control: without -m nothing is held by sandlock and nothing is refused
    r = who.run(["-r", "/", "--", "/usr/bin/python3", "-c", MEMFD_WAYS, "many", "0"])
    assert r.returncode == 0 and "send 0 ok\nsend 1 ok\nsend 2 ok\n" in r.stdout, (r.stdout, r.stderr)


def test_write_over_tmp_still_creates_files_in_tmp_itself_while_a_root_run_is_live(
        who, busybox_root: Path) -> None:
    """sandlock's base is not in /tmp, so no cut takes /tmp's own create right (README
    "Where sandlock keeps its own files"): -w /tmp makes, renames and removes files in /tmp."""
    name = f"/tmp/sandlock-test-{uuid.uuid4().hex[:12]}"
    victim = who.popen(["--root", str(busybox_root), "--", "/bin/sh", "-c", "sleep 3"])
    try:
        r = who.run([*SYSTEM_READ, "-w", "/tmp", "--", "/bin/sh", "-c",
                     f"echo made > {name}.a && mv {name}.a {name} && mkdir {name}.d && rmdir {name}.d && cat {name}"])
    finally:
        victim.wait(timeout=60)
        if os.path.exists(name):
            os.unlink(name)
    assert r.returncode == 0 and r.stdout == "made\n", (r.returncode, r.stdout, r.stderr)


# The attacker of the exec race: copies its program into every --root run's private
# /dev/shm it finds in sandlock's base of its user (and in the victim's scratch
# directory, whose path the test found), then keeps replacing the one-byte anchor
# links that run's supervisor points at the program it is about to exec (README
# "Emulated root": the kernel resolves the rewritten exec path through them).
SWAPPER = r"""
import glob, os, shutil, sys, time
base, victim, payload, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
try:
    print("LISTED", os.listdir(victim))
except OSError as e:
    print("list refused", e.errno)
end = time.time() + seconds
planted, n = {}, 0
while time.time() < end:
    for shm in set(glob.glob(base + "/root-*/shm/*/") + glob.glob(victim + "/shm/*/")):
        if shm not in planted:
            try:
                shutil.copy(payload, shm + "p")
                os.chmod(shm + "p", 0o755)
                planted[shm] = shm + "p"
            except OSError:
                pass
    for shm, program in planted.items():
        for d in glob.glob(shm.split("/shm/")[0] + "/cwd/*/*/"):
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                if name.startswith(".x"):
                    continue
                n += 1
                try:
                    os.symlink(program, d + ".x%d" % n)
                    os.rename(d + ".x%d" % n, d + name)
                except OSError:
                    pass
print("planted", len(planted), "swaps", n)
"""


@pytest.mark.parametrize("kind", ["-w /var/tmp", "-w base"])
def test_another_sandbox_cannot_make_a_root_run_execute_its_program(
        who, scratch: Path, busybox_root: Path, secprogs, kind: str) -> None:  # type: ignore[no-untyped-def]
    tmp = who.make_dir(scratch / "tmp", 0o1777)
    payload = who.make_file(scratch / "payload", secprogs.musl("say_secret").read_bytes(), 0o755)
    env = {"TMPDIR": str(tmp)}
    victim = who.popen(["--root", str(busybox_root), "--", "/bin/sh", "-c",
                        "i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done; echo done"], env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not list(base_of(who).glob("root-*/shm/*")):
            time.sleep(0.05)
        runs = list(base_of(who).glob("root-*/shm/*"))
        assert runs, "the victim run never made its scratch in sandlock's base"
        attacker = who.run(["-r", "/", *grant(kind, who, tmp), "--", "/usr/bin/python3", "-c", SWAPPER,
                            str(base_of(who)), str(runs[0].parent.parent), str(payload), "8"], env=env)
        out, err = victim.communicate(timeout=120)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert attacker.returncode == 0, attacker.stderr
    assert out.strip().endswith("done"), (out, err)   # control: the victim's loop ran to its end
    assert "LISTED" not in attacker.stdout, f"another sandbox listed the victim's scratch:\n{attacker.stdout}"
    assert "planted 0 swaps 0" in attacker.stdout, attacker.stdout
    from .conftest import SECRET as WORD
    assert WORD not in out, (f"a sandbox made another run execute its program "
                             f"({out.count(WORD)} times; attacker: {attacker.stdout.strip()})")


MEMFD_MAPPED = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
chunks, close = int(sys.argv[1]), sys.argv[2] == "close"
size = 24 << 20
block = b"\x01" * (1 << 20)
held = []
for k in range(chunks):
    fd = os.memfd_create("m%d" % k)
    for _ in range(size >> 20):
        os.write(fd, block)
    addr = libc.mmap(None, size, 1, 1, fd, 0)   # PROT_READ, MAP_SHARED; never touched
    assert addr not in (None, ctypes.c_void_p(-1).value)
    if close:
        os.close(fd)
    else:
        held.append(fd)
time.sleep(2)
print("ALIVE", chunks * size >> 20, "MiB")
"""


def test_memfds_mapped_and_closed_still_count_against_the_memory_limit(who) -> None:
    # control: mapped and still held by their fds, they are counted and the run is killed
    held = who.run(["-r", "/", "-m", "64M", "--", "/usr/bin/python3", "-c", MEMFD_MAPPED, "16", "keep"])
    assert held.returncode != 0 and "memory limit exceeded" in held.stderr, (held.returncode, held.stderr)
    probe = who.run(["-r", "/", "-m", "64M", "--", "/usr/bin/python3", "-c", MEMFD_MAPPED, "16", "close"])
    assert "ALIVE" not in probe.stdout, f"384 MiB of mapped memfds held under -m 64M:\n{probe.stdout}{probe.stderr}"
    assert "memory limit exceeded" in probe.stderr, probe.stderr
