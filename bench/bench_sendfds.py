#!/usr/bin/env python3
"""sendmsg-heavy loops: what -m's accounting of memory files in sockets' queues costs.

    python3 bench/bench_sendfds.py [--n N] [--repeat R]

The command (python3 in host mode, -r /) runs N sendmsg calls on a socketpair,
the other end receiving each message (and closing the fds it carries), in
three loops:

  data      one byte, no fds (what every send on behalf costs; -m adds nothing);
  file fd   one byte and the fd of a regular file on disk (not a memory file);
  memfd     one byte and the fd of a memfd of 1 MiB, the same one each time
            (the supervisor holds it while it is queued: a table entry and,
            at each send, a look at the socket's queue).

Each loop is timed inside the command (microseconds per send, best of R runs),
bare, under sandlock without -m, and under sandlock -m 512M.

Not a test: timings never fail anything.
"""

import argparse
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOP = r"""
import array, os, socket, sys, time
kind, n = sys.argv[1], int(sys.argv[2])
a, b = socket.socketpair()
if kind == "memfd":
    fd = os.memfd_create("bench")
    os.write(fd, b"\1" * (1 << 20))
elif kind == "file fd":
    fd = os.open(sys.executable, os.O_RDONLY)
control = [] if kind == "data" else [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
t0 = time.perf_counter()
for _ in range(n):
    a.sendmsg([b"x"], control)
    _, anc, _, _ = b.recvmsg(1, socket.CMSG_LEN(4))
    for _, _, data in anc:
        os.close(array.array("i", data)[0])
print((time.perf_counter() - t0) / n * 1e6)
"""


def run(prefix, kind: str, n: int) -> float:
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run(prefix + [sys.executable, "-c", LOOP, kind, str(n)],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{kind}: exit {r.returncode}: {r.stderr.strip()}")
    return float(r.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="sends per loop (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case, the best kept (default 3)")
    args = parser.parse_args()
    sandlock = [sys.executable, "-m", "sandlock", "-r", "/"]
    setups = [("bare", []), ("sandlock", sandlock + ["--"]), ("sandlock -m 512M", sandlock + ["-m", "512M", "--"])]
    print(f"{'loop':10} " + " ".join(f"{name:>18}" for name, _ in setups) + "   (us per sendmsg+recvmsg)")
    for kind in ("data", "file fd", "memfd"):
        times = [min(run(prefix, kind, args.n) for _ in range(args.repeat)) for _, prefix in setups]
        print(f"{kind:10} " + " ".join(f"{t:18.1f}" for t in times))


if __name__ == "__main__":
    main()
