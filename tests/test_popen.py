"""Processes of the API: Sandbox.popen() -> Process (README "Processes"; docs/design.md "Interfaces").

Every test runs a small script as root and as the unprivileged user (the
`who` fixture): the script uses only the public API (sandlock.Sandbox,
popen, run, cancel, Process) and prints what it saw as JSON, which the test
asserts.  The scripts sandbox children of their own; the test process is
never confined.
"""

from __future__ import annotations

import signal
from pathlib import Path

from apicase import run_script
from conftest import kill_marked, unique_marker

# A Sandbox's fork server (README "Fork server") starts at its second run and stays with
# the Sandbox, as its rulesets do: the tests that count fds, threads and children count
# from a Sandbox whose server is up (its process, home thread, fds and idle supervising
# thread are there before and after), and check that their runs went through it.
WARM = r"""
def warm(box):
    box.run(["true"])
    box.run(["true"])
    deadline = time.monotonic() + 30
    while box._server is not None and not box._server.usable() and time.monotonic() < deadline:
        time.sleep(0.01)
    box.run(["true"])
    return box._server is not None and box._server.usable()
"""


STREAM = r"""
code = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(1)\n"
start = time.monotonic()
with sandlock.Sandbox().popen([PY, "-c", code], stdout=sandlock.PIPE, text=True) as p:
    seen = []
    for line in p.stdout:
        seen.append([line, round(time.monotonic() - start, 2), p.poll()])
    out["pid"] = p.pid > 0
    out["rc"] = p.wait()
out["seen"] = seen
out["end"] = round(time.monotonic() - start, 2)
"""


def test_lines_of_a_command_that_prints_one_a_second_arrive_before_it_ends(who) -> None:
    out = run_script(who, STREAM)
    assert out["rc"] == 0 and out["pid"] is True
    assert [line for line, _, _ in out["seen"]] == ["line 0\n", "line 1\n", "line 2\n"]
    # the first two lines were read while the command still ran, a second or more before its end
    assert [rc for _, _, rc in out["seen"][:2]] == [None, None], out
    assert out["seen"][0][1] < out["end"] - 1.5, out


INTERACTIVE = r"""
code = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), len(line.strip()), flush=True)\n"
p = sandlock.Sandbox().popen([PY, "-c", code], stdin=sandlock.PIPE, stdout=sandlock.PIPE, text=True)
answers = []
for word in ["one", "three", "sandlock"]:
    p.stdin.write(word + "\n")
    p.stdin.flush()
    answers.append(p.stdout.readline())
    answers.append(p.poll())
p.stdin.close()
out["answers"] = answers
out["rest"] = p.stdout.read()
out["rc"] = p.wait()
p.stdout.close()
"""


def test_request_and_response_go_over_stdin_and_stdout_while_the_command_runs(who) -> None:
    out = run_script(who, INTERACTIVE)
    assert out["answers"] == ["ONE 3\n", None, "THREE 5\n", None, "SANDLOCK 8\n", None]
    assert out["rest"] == "" and out["rc"] == 0


TREE_PROGRAM = r"""
import os, sys, time
d = sys.argv[1]
def tick():
    fd = os.open(os.path.join(d, str(os.getpid())), os.O_WRONLY | os.O_CREAT, 0o644)
    n = 0
    while True:
        n += 1
        os.pwrite(fd, b"%012d" % n, 0)
        time.sleep(0.01)
if os.fork() == 0:
    if os.fork() == 0:
        try:
            os.setsid()  # a grandchild that leaves the process group where the kernel lets it
        except OSError:
            pass
    tick()
if os.fork() == 0:
    tick()
tick()
"""

TREE = r"""
d, marker = sys.argv[1], sys.argv[2]
program = open(sys.argv[3]).read()
def counts():
    return {name: open(os.path.join(d, name)).read() for name in sorted(os.listdir(d))}
def states():
    return sorted(open("/proc/%s/stat" % name).read().rsplit(")", 1)[1].split()[0] for name in os.listdir(d))
box = sandlock.Sandbox(fs_writable=[d])
p = box.popen([PY, "-c", program, d, marker])
deadline = time.monotonic() + 20
while len(os.listdir(d)) < 4 and time.monotonic() < deadline:
    time.sleep(0.05)
out["processes"] = len(os.listdir(d))
out["paused"] = p.pause()
first = counts()
out["states_paused"] = states()
time.sleep(0.5)
out["frozen"] = counts() == first
out["running_while_paused"] = p.poll() is None
out["resumed"] = p.resume()
time.sleep(0.5)
later = counts()
out["all_moved"] = all(later[name] != first[name] for name in first)
out["states_resumed"] = sorted(set(states()) - {"S", "R"})
p.kill()
out["rc"] = p.wait()
out["reason"] = p.result().reason
def alive(pid):
    try:
        return open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
out["left"] = [name for name in os.listdir(d) if alive(name)]
"""


def test_pause_stops_every_process_of_a_tree_resume_continues_them_and_kill_ends_them(who, scratch: Path) -> None:
    d = who.make_dir(scratch / "ticks", 0o777)
    program = who.make_file(scratch / "tree.py", TREE_PROGRAM)
    marker = unique_marker()
    try:
        out = run_script(who, TREE, str(d), marker, str(program))
    finally:
        kill_marked(marker)
    assert out["processes"] == 4, out
    assert out["paused"] >= 4, out            # the four, however deep and whatever their group
    assert out["states_paused"] == ["T"] * 4, out
    assert out["frozen"] is True and out["running_while_paused"] is True, out
    assert out["resumed"] >= 4 and out["all_moved"] is True and out["states_resumed"] == [], out
    assert out["rc"] == -signal.SIGKILL and out["reason"] == "killed", out
    assert out["left"] == [], out


OUTSIDE = r"""
outside = subprocess.Popen(["sleep", "30"])
p = sandlock.Sandbox().popen(["sleep", "30"])
time.sleep(0.2)
out["paused"] = p.pause()
out["outside_state"] = open("/proc/%d/stat" % outside.pid).read().rsplit(")", 1)[1].split()[0]
p.kill()
p.wait()
out["after_end"] = [p.pause(), p.resume()]
outside.kill()
outside.wait()
"""


def test_pause_stops_nothing_outside_the_sandbox_and_nothing_once_it_is_over(who) -> None:
    out = run_script(who, OUTSIDE)
    assert out["paused"] == 1               # the sandbox's sleep: the control
    assert out["outside_state"] in ("S", "R"), out  # the caller's own child, same user, not stopped
    assert out["after_end"] == [0, 0]


CANCEL = r"""
box = sandlock.Sandbox()
timer = threading.Timer(0.5, box.cancel)
timer.start()
start = time.monotonic()
r = box.run(["sleep", "30"])
out["run"] = [round(time.monotonic() - start, 1) < 5, r.returncode, r.exit_code, r.reason, r.success]
p = box.popen(["sh", "-c", "sleep 30 & sleep 30"], stdout=sandlock.PIPE)
threading.Timer(0.5, p.kill).start()
start = time.monotonic()
p.communicate()
out["popen"] = [round(time.monotonic() - start, 1) < 5, p.returncode, p.result().reason]
out["idle_cancel"] = box.cancel()
out["normal"] = box.run(["echo", "after"]).stdout.decode()
"""


def test_a_run_is_cancelled_from_another_thread(who) -> None:
    out = run_script(who, CANCEL)
    assert out["run"] == [True, -signal.SIGKILL, 128 + signal.SIGKILL, "killed", False]
    assert out["popen"] == [True, -signal.SIGKILL, "killed"]
    assert out["idle_cancel"] == 0 and out["normal"] == "after\n"


SIGNALS = r"""
script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"
p = sandlock.Sandbox().popen(["sh", "-c", script], stdout=sandlock.PIPE)
out["ready"] = p.stdout.readline().decode()
p.terminate()
out["term"] = [p.stdout.read().decode(), p.wait()]
p.stdout.close()
p = sandlock.Sandbox().popen(["sleep", "30"])
p.send_signal(signal.SIGUSR1)
out["usr1"] = p.wait()
p.send_signal(signal.SIGTERM)   # over: nothing happens, as with subprocess
p.kill()
out["after"] = p.returncode
"""


def test_send_signal_and_terminate_reach_the_command(who) -> None:
    out = run_script(who, SIGNALS)
    assert out["ready"] == "ready\n"
    assert out["term"] == ["got-term\n", 7]
    assert out["usr1"] == -signal.SIGUSR1 and out["after"] == -signal.SIGUSR1


TIMEOUTS = r"""
code = "import sys, time\nprint('early', flush=True)\ntime.sleep(1.5)\nprint('late')\nsys.stderr.write('err')\n"
p = sandlock.Sandbox().popen([PY, "-c", code], stdout=sandlock.PIPE, stderr=sandlock.PIPE)
out["poll"] = p.poll()
try:
    p.wait(timeout=0.2)
    out["wait"] = "returned"
except subprocess.TimeoutExpired:
    out["wait"] = "timeout"
try:
    p.communicate(timeout=0.3)
    out["communicate"] = "returned"
except subprocess.TimeoutExpired:
    out["communicate"] = "timeout"
o, e = p.communicate()
out["output"] = [o.decode(), e.decode(), p.returncode, p.poll()]
out["again"] = p.communicate() == (o, e)
r = sandlock.Sandbox().popen(["sleep", "30"], timeout=0.5)
out["policy_timeout"] = [r.wait(), r.result().timed_out, r.result().exit_code]
"""


def test_wait_and_communicate_time_out_as_subprocess_does_and_the_run_goes_on(who) -> None:
    out = run_script(who, TIMEOUTS)
    assert out["poll"] is None and out["wait"] == "timeout" and out["communicate"] == "timeout"
    assert out["output"] == ["early\nlate\n", "err", 0, 0] and out["again"] is True
    assert out["policy_timeout"] == [124, True, 124]


REDIRECT = r"""
d = sys.argv[1]
box = sandlock.Sandbox()
with open(os.path.join(d, "out"), "wb") as f:
    p = box.popen(["sh", "-c", "echo to-file; echo to-null >&2"], stdout=f, stderr=sandlock.DEVNULL)
    out["file"] = [p.wait(), p.stdout, p.stderr]
out["content"] = open(os.path.join(d, "out")).read()
fd = os.open(os.path.join(d, "fd"), os.O_WRONLY | os.O_CREAT, 0o644)
r = box.run(["sh", "-c", "echo one; echo two >&2"], stdout=fd, stderr=subprocess.STDOUT)
os.close(fd)
out["fd"] = [r.stdout, r.stderr, open(os.path.join(d, "fd")).read()]
r = box.run(["sh", "-c", "echo out; echo err >&2"], stderr=sandlock.STDOUT)
out["merged"] = [r.stdout.decode(), r.stderr]
r = box.run(["cat"], input="grüße\r\n", text=True, encoding="utf-8")
out["text"] = r.stdout
r = box.run(["head", "-c", "3"], stdin=open("/etc/passwd", "rb"))
out["stdin_file"] = r.stdout.decode()
"""


def test_streams_go_to_a_file_an_fd_devnull_or_stdout_and_text_mode_gives_str(who, scratch: Path) -> None:
    d = who.make_dir(scratch / "redirect", 0o777)
    out = run_script(who, REDIRECT, str(d))
    assert out["file"] == [0, None, None]
    assert out["content"] == "to-file\n"
    assert out["fd"] == [None, None, "one\ntwo\n"]
    assert out["merged"] == ["out\nerr\n", None]
    assert out["text"] == "grüße\n"
    with open("/etc/passwd") as f:
        assert out["stdin_file"] == f.read(3)


CONTEXT = r"""
marker = sys.argv[1]
with sandlock.Sandbox().popen(["sh", "-c", "sleep %s & sleep %s" % (marker, marker)]) as p:
    time.sleep(0.3)
out["rc"] = p.returncode
out["reason"] = p.result().reason
with sandlock.Sandbox() as box:
    q = box.popen(["sleep", marker])
    time.sleep(0.2)
out["box"] = q.poll()
for _ in range(20):  # read to the end: the command's own status, never -9
    with sandlock.Sandbox().popen(["sh", "-c", "echo a; exit 5"], stdout=sandlock.PIPE) as e:
        e.stdout.read()
    out.setdefault("ended", []).append(e.returncode)
r = sandlock.Sandbox().popen(["sh", "-c", "echo hi; exit 3"], stdout=sandlock.PIPE)
o, _ = r.communicate()
res = r.result()
ran = sandlock.Sandbox().run(["sh", "-c", "echo hi; exit 3"])
out["result"] = [type(res).__name__, res.returncode, res.exit_code, res.stdout.decode(), res.success,
                 res.args, ran.returncode, ran.stdout.decode()]
"""


def test_the_context_managers_kill_and_reap_and_result_is_the_result_run_gives(who) -> None:
    marker = unique_marker()
    try:
        out = run_script(who, CONTEXT, marker)
    finally:
        kill_marked(marker)
    assert out["rc"] == -signal.SIGKILL and out["reason"] == "killed"
    assert out["box"] == -signal.SIGKILL
    assert out["ended"] == [5] * 20
    assert out["result"] == ["Result", 3, 3, "hi\n", False, ["sh", "-c", "echo hi; exit 3"], 3, "hi\n"]


ERRORS = r"""
d = sys.argv[1]
def caught(f):
    try:
        f()
        return "no error"
    except BaseException as exc:
        return [type(exc).__name__, str(exc), isinstance(exc, sandlock.ExecError),
                isinstance(exc, FileNotFoundError), isinstance(exc, PermissionError),
                isinstance(exc, sandlock.PolicyError), isinstance(exc, TypeError)]
box = sandlock.Sandbox()
out["missing"] = caught(lambda: box.popen(["no-such-program-i16"]))
out["missing_run"] = caught(lambda: box.run(["no-such-program-i16"]))
out["not_executable"] = caught(lambda: box.popen([os.path.join(d, "plain")]))
out["env"] = caught(lambda: box.run(["true"], env={"A": 1}))
out["argv"] = caught(lambda: box.run(["echo", 1]))
out["stdout"] = caught(lambda: box.popen(["true"], stdout="file.txt"))
out["input"] = caught(lambda: box.run(["cat"], input="text without text=True"))
out["mount"] = caught(lambda: sandlock.Sandbox(chroot="/", fs_mount=[(1, 2)]))
ok = sandlock.Sandbox(chroot="/", fs_mount=[("/i16-mnt", d)]).run(["cat", "/i16-mnt/plain"])
out["mount_tuple"] = [ok.returncode, ok.stdout.decode()]
"""


def test_errors_are_the_classes_a_subprocess_user_catches_and_name_the_field(who, scratch: Path) -> None:
    d = who.make_dir(scratch / "errors", 0o755)
    who.make_file(d / "plain", "not a program\n", 0o644)
    out = run_script(who, ERRORS, str(d))
    assert out["missing"] == ["CommandNotFoundError", "no-such-program-i16: not found",
                              True, True, False, False, False]
    assert out["missing_run"] == out["missing"]
    assert out["not_executable"][0] == "CommandNotExecutableError"
    assert out["not_executable"][2:] == [True, False, True, False, False]
    for key, field in (("env", "env: the value of A"), ("argv", "argv[1]"), ("stdout", "stdout"),
                       ("input", "input"), ("mount", "fs_mount")):
        name, message, *kinds = out[key]
        assert name == "PolicyTypeError" and message.startswith(field), out[key]
        assert kinds == [False, False, False, True, True], out[key]
    assert out["mount_tuple"] == [0, "not a program\n"]


MANY = WARM + r"""
box = sandlock.Sandbox()
out["served"] = warm(box)
def fds():
    return len(os.listdir("/proc/self/fd"))
def parent(pid):
    try:
        return open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[1]
    except OSError:
        return None  # gone meanwhile
def children():
    me = str(os.getpid())
    return [pid for pid in os.listdir("/proc") if pid.isdigit() and parent(pid) == me]
before = [fds(), threading.active_count(), children()]
results = {}
def one(i):
    try:
        with box.popen(["sh", "-c", "read x; echo $x-%d" % i], stdin=sandlock.PIPE, stdout=sandlock.PIPE) as p:
            o, _ = p.communicate(b"hello%d\n" % i, timeout=150)
            results[i] = [o.decode(), p.returncode]
    except BaseException as exc:
        results[i] = repr(exc)
threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
for t in threads:
    t.start()
for t in threads:
    t.join()
out["wrong"] = {i: v for i, v in results.items() if v != ["hello%d-%d\n" % (i, i), 0]}
out["count"] = len(results)
deadline = time.monotonic() + 10
while [fds(), threading.active_count(), children()] != before and time.monotonic() < deadline:
    time.sleep(0.1)
out["leak"] = [before, [fds(), threading.active_count(), children()]]
"""


def test_200_processes_started_at_once_from_threads_are_correct_and_leave_nothing_behind(who) -> None:
    out = run_script(who, MANY, timeout=300)
    assert out["served"] is True  # the runs start from the Sandbox's fork server
    assert out["count"] == 200 and out["wrong"] == {}, out["wrong"]
    before, after = out["leak"]
    assert after == before, f"fds, threads, child processes before {before}, after {after}"


FDS = r"""
box = sandlock.Sandbox()
held = [box.popen(["cat"], stdin=sandlock.PIPE, stdout=sandlock.PIPE, stderr=sandlock.PIPE) for _ in range(3)]
code = "import os\nprint(sorted(int(n) for n in os.listdir('/proc/self/fd')))"
r = box.run([PY, "-c", code])
out["fds"] = r.stdout.decode().strip()
for p in held:
    p.communicate(b"")
out["held"] = [p.returncode for p in held]
"""


def test_a_command_holds_no_pipe_of_the_processes_started_beside_it(who) -> None:
    out = run_script(who, FDS)
    assert out["fds"] == "[0, 1, 2, 3]", out  # 3: the listing's own fd
    assert out["held"] == [0, 0, 0]


UNWAITED = WARM + r"""
import gc
box = sandlock.Sandbox()
out["served"] = warm(box)
before = [len(os.listdir("/proc/self/fd")), threading.active_count()]
for i in range(20):
    box.popen(["true"])
    box.popen(["sh", "-c", "echo x"], stdout=sandlock.DEVNULL)
deadline = time.monotonic() + 60  # margin: 40 unwaited runs on a loaded machine
while time.monotonic() < deadline:
    gc.collect()
    if [len(os.listdir("/proc/self/fd")), threading.active_count()] == before:
        break
    time.sleep(0.1)
out["leak"] = [before, [len(os.listdir("/proc/self/fd")), threading.active_count()]]
"""


def test_processes_nobody_waits_for_release_their_fds_and_threads(who) -> None:
    out = run_script(who, UNWAITED)
    assert out["served"] is True  # the runs start from the Sandbox's fork server
    before, after = out["leak"]
    assert after == before, f"fds and threads before {before}, after {after}"
