"""A thread's tid reused while its process lives, made certain, against the emulated
root's remembered thread -> process (_rootscratch.Cwd.of_thread; run by
tests/security/test_redteam_root_fastpaths.py, not sandboxed, as root and as the test user).

In a private user+pid+mount namespace (its own /proc): process X has a thread T;
of_thread(T) answers X's cwd and remembers T.  T exits; process B is made with
T's tid (ns_last_pid) and a cwd of its own, while X lives on.  of_thread(T) must
now answer B's cwd, never X's.  Prints one JSON object.
"""
import ctypes, json, os, signal, sys, time

from sandlock import _notif, _rootscratch, _syscalls

CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNS = 0x10000000, 0x20000000, 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
libc = ctypes.CDLL(None, use_errno=True)


def die_with(code, msg):
    sys.stdout.write(json.dumps({"error": msg}) + "\n")
    sys.stdout.flush()
    os._exit(code)


def process_with_thread():
    """X: a thread that sends its tid, then exits when told; X itself lives on."""
    import threading
    tid_r, tid_w = os.pipe()
    go_r, go_w = os.pipe()
    x = os.fork()
    if x == 0:
        def thread():
            os.write(tid_w, b"%d\n" % threading.get_native_id())
            os.read(go_r, 1)
        t = threading.Thread(target=thread)
        t.start()
        t.join()
        time.sleep(60)
        os._exit(0)
    return x, int(os.read(tid_r, 64)), go_w


def scenario(top):
    out = {}
    cwd = _rootscratch.Cwd(top, b"/start", lambda: [], lambda pid: False)
    out["pidfds"] = _syscalls.kernel_version() >= (6, 9)  # PIDFD_THREAD: ids kept per thread (_notif.Known)
    x, t, go = process_with_thread()
    cwd.set(x, b"/x")
    out["control"] = cwd.of_thread(t).decode()           # T is X's: X's cwd, remembered
    out["remembered"] = t in _notif._KNOWN
    os.write(go, b"x")
    deadline = time.monotonic() + 10
    while os.path.exists("/proc/%d/task/%d" % (x, t)) and time.monotonic() < deadline:
        time.sleep(0.01)
    for attempt in range(200):  # the tid is free a little after its /proc entry went
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(t - 1))
        b = os.fork()
        if b == 0:
            time.sleep(60)
            os._exit(0)
        if b == t:
            break
        os.kill(b, signal.SIGKILL)
        os.waitpid(b, 0)
        time.sleep(0.01)
    out["reused"] = b == t
    if b != t:
        return out
    cwd.set(b, b"/b")
    out["after"] = cwd.of_thread(t).decode()             # now B's: never X's
    for pid in (x, b):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    cwd.close()
    return out


def main():
    top = sys.argv[1]
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS) != 0:
        die_with(3, "unshare: " + os.strerror(ctypes.get_errno()))
    init = os.fork()  # pid 1 of the new namespace
    if init == 0:
        try:
            for args in ((None, b"/", None, MS_REC | MS_PRIVATE, None), (b"proc", b"/proc", b"proc", 0, None)):
                if libc.mount(*args) != 0:
                    die_with(3, "mount: " + os.strerror(ctypes.get_errno()))
            result = scenario(top)
        except Exception as e:  # noqa: BLE001
            import traceback
            die_with(4, "%s: %s %s" % (type(e).__name__, e, traceback.format_exc()))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        os._exit(0)
    _, status = os.waitpid(init, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


main()
