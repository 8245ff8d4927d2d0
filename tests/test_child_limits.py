"""The resource limits a policy sets on the command, as the command sees them (soft and
hard), launched directly and from the fork server: max_open_files (RLIMIT_NOFILE),
max_memory (RLIMIT_DATA), no_coredump (RLIMIT_CORE 0); a hard limit the caller holds
lower than the policy's is kept (never raised), the soft one then at most it.  Set in the
command by prlimit64(2) bound before fork (_launch._set_rlimit), without the resource
module (README "Start-up")."""

from __future__ import annotations

import json

CODE = r"""
import json, resource, sys
import sandlock
lower = sys.argv[1] == "lower"
if lower:  # the caller's own hard limit of open files below the policy's
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 50))
show = ("import resource as r\n"
        "print([r.getrlimit(x) for x in (r.RLIMIT_NOFILE, r.RLIMIT_DATA, r.RLIMIT_CORE)])")
box = sandlock.Sandbox(max_open_files=64, max_memory="512M", no_coredump=True)
seen = []
for _ in range(3):  # the first run directly, the later ones from the fork server
    r = box.run(["/usr/bin/python3", "-S", "-c", show])
    seen.append([r.returncode, r.stdout.decode().strip(), r.stderr.decode()[-500:]])
print(json.dumps(seen))
"""


def _runs(who, how: str):  # type: ignore[no-untyped-def]
    r = who.python(CODE, args=[how])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    return json.loads(r.stdout)


def test_the_command_runs_under_the_policy_s_limits_soft_and_hard(who) -> None:  # type: ignore[no-untyped-def]
    memory = 512 << 20
    for code, shown, err in _runs(who, "plain"):
        assert (code, shown) == (0, f"[(64, 64), ({memory}, {memory}), (0, 0)]"), err


def test_a_lower_hard_limit_of_the_caller_is_kept(who) -> None:  # type: ignore[no-untyped-def]
    memory = 512 << 20
    for code, shown, err in _runs(who, "lower"):
        assert (code, shown) == (0, f"[(50, 50), ({memory}, {memory}), (0, 0)]"), err
