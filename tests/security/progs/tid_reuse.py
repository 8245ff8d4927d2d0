"""Tid reuse between a notification and its handling, made certain (run by
tests/security/test_faults.py, not sandboxed, as root and as the test user).

In a private user+pid+mount namespace (its own /proc), a process A with a
listener traps mkdir; we receive the notification, kill A, and make B with
A's pid (ns_last_pid), B's fd 9 and cwd differing from A's.  Then the
supervisor's ways to reach the caller by tid (Tracees.getfd with a cached
or a fresh pidfd, Resolver.base for AT_FDCWD) must refuse (ESRCH), never
hand out B's fd or cwd.  Prints one JSON object.
"""
import ctypes, errno, fcntl, json, os, signal, sys, time

from sandlock import _bpf as B
from sandlock import _structs as S
from sandlock import _notif, _syscalls
from sandlock._notif import AT_FDCWD, Call, Tracees
from sandlock._resolve import FsRules, Resolver

CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNS = 0x10000000, 0x20000000, 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
libc = ctypes.CDLL(None, use_errno=True)
MKDIR = _syscalls.table()["mkdir"]


def die_with(code, msg):
    sys.stdout.write(json.dumps({"error": msg}) + "\n")
    sys.stdout.flush()
    os._exit(code)


def listener_child(marker_path, ready_w):
    """A: a filter notifying mkdir, fd 9 open on marker A; reports its listener fd."""
    fd = os.open(marker_path, os.O_RDONLY)
    os.dup2(fd, 9)
    os.umask(0o077)
    program = B.assemble([B.ld_abs(0), B.jeq(MKDIR, "notify", None), B.ret(0x7FFF0000),
                          B.label("notify"), B.ret(S.SECCOMP_RET_USER_NOTIF)])
    _syscalls.prctl(38, 1)  # PR_SET_NO_NEW_PRIVS
    pointer, keep = _syscalls.seccomp_filter_pointer(program)
    listener = _syscalls.seccomp(1, S.SECCOMP_FILTER_FLAG_NEW_LISTENER, pointer)
    os.write(ready_w, b"%d\n" % listener)
    libc.syscall(MKDIR, b"/nonexistent/by-A", 0o755)  # waits for an answer that never comes
    os._exit(0)


def reuse(pid, marker_b, directory):
    """B, forked with pid `pid` (ns_last_pid): fd 9 on marker B, cwd `directory`."""
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    time.sleep(0.05)  # B's start time differs from A's (clock ticks)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        w = fcntl.fcntl(w, fcntl.F_DUPFD, 10)  # not fd 9, which is set below
        os.umask(0o022)
        os.dup2(os.open(marker_b, os.O_RDONLY), 9)
        os.chdir(directory)
        os.write(w, b"x")
        time.sleep(30)
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    return child


def scenario(workdir):
    out = {}
    marker_a, marker_b = os.path.join(workdir, "A"), os.path.join(workdir, "B")
    for p in (marker_a, marker_b):
        open(p, "w").close()
    r, w = os.pipe()
    a = os.fork()
    if a == 0:
        os.close(r)
        listener_child(marker_a, w)
    os.close(w)
    lfd = int(os.read(r, 64).split()[0])
    pidfd = os.pidfd_open(a)
    listener = _syscalls.pidfd_getfd(pidfd, lfd)
    os.close(pidfd)
    buf = bytearray(S.NOTIF.size)
    fcntl.ioctl(listener, S.SECCOMP_IOCTL_NOTIF_RECV, buf, True)
    fields = S.NOTIF.unpack(buf)
    notif_id, tid = fields[0], fields[1]
    out["notified_by_a"] = tid == a

    hot = _syscalls.HotCalls()
    cached = Tracees(hot)
    cached.listener, cached.current = listener, notif_id
    fd = cached.getfd(tid, 9)  # control: the live caller's fd 9 is marker A
    out["control"] = os.readlink("/proc/self/fd/%d" % fd)
    os.close(fd)

    # what is kept per thread (_notif.Known), learned for A
    known_a = (_notif.tgid_of(tid), _notif.start_of(a), _notif.umask_of(tid))

    os.kill(a, signal.SIGKILL)
    os.waitpid(a, 0)
    b = reuse(a, marker_b, workdir)
    out["reused"] = b == a
    with open("/proc/%d/stat" % b, "rb") as f:
        start_b = f.read().rsplit(b")", 1)[1].split()[19]
    out["known_a"] = [known_a[0] == a, known_a[1] != start_b, oct(known_a[2])]
    out["known_b"] = [_notif.tgid_of(tid) == b, "B" if _notif.start_of(a) == start_b else "not B",
                      oct(_notif.umask_of(tid))]

    def attempt(tracees):
        try:
            got = tracees.getfd(tid, 9)
        except OSError as e:
            return errno.errorcode[e.errno]
        name = os.readlink("/proc/self/fd/%d" % got)
        os.close(got)
        return "GOT " + name

    out["cached_pidfd"] = attempt(cached)            # the pidfd of dead A: ESRCH, then a new one
    fresh = Tracees(hot)
    fresh.listener, fresh.current = listener, notif_id
    out["fresh_pidfd"] = attempt(fresh)              # first open after the tid was reused
    resolver = Resolver(FsRules((), (), ()), fresh, lambda pid: True, hot)
    try:
        cwd = resolver.base(Call(notif_id, tid, MKDIR, fields[6:]), AT_FDCWD)
        out["cwd"] = "GOT " + os.readlink("/proc/self/fd/%d" % cwd)
        os.close(cwd)
    except OSError as e:
        out["cwd"] = errno.errorcode[e.errno]
    try:
        fcntl.ioctl(listener, S.SECCOMP_IOCTL_NOTIF_ID_VALID, S.U64.pack(notif_id))
        out["id_valid"] = "valid"
    except OSError as e:
        out["id_valid"] = errno.errorcode[e.errno]
    try:
        fcntl.ioctl(listener, S.SECCOMP_IOCTL_NOTIF_SEND, S.NOTIF_RESP.pack(notif_id, 0, -errno.EPERM, 0))
        out["send"] = "sent"
    except OSError as e:
        out["send"] = errno.errorcode[e.errno]
    os.kill(b, signal.SIGKILL)
    os.waitpid(b, 0)
    return out


def main():
    workdir = sys.argv[1]
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS) != 0:
        die_with(3, "unshare: " + os.strerror(ctypes.get_errno()))
    init = os.fork()  # pid 1 of the new namespace
    if init == 0:
        try:  # this namespace's /proc: the supervisor names tasks by /proc/TID
            for args in ((None, b"/", None, MS_REC | MS_PRIVATE, None), (b"proc", b"/proc", b"proc", 0, None)):
                if libc.mount(*args) != 0:
                    die_with(3, "mount: " + os.strerror(ctypes.get_errno()))
            result = scenario(workdir)
        except Exception as e:  # noqa: BLE001
            die_with(4, "%s: %s" % (type(e).__name__, e))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        os._exit(0)
    _, status = os.waitpid(init, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


main()
