#!/usr/bin/env python3
"""The cost of DNS policing (README "Domains"), as ratios in one run.

    python3 bench/bench_dns.py [--rounds N] [--lookups N]

Needs root (the DNS server binds port 53 of a loopback address of its own,
as resolvers have no port option) and the Debian rootfs of tests/rootfs.py,
whose /etc is replaced by a --fs-mount with a resolv.conf naming the server.
The same client runs bare (on the host) and sandboxed, rounds interleaved;
it times its own loop (start-up is not counted):

- raw query: one A query sent with sendto to the server and its answer
  read, per lookup; bare, sandboxed with an explicit rule for the server's
  port 53 (plain: the send is trapped and made on behalf, nothing learned),
  and sandboxed with a hostname rule only (policed: the query is parsed,
  sent on behalf, its answer peeked at and learned);
- getaddrinfo (glibc, A+AAAA with sendmmsg on a connected socket) in the
  Debian root, plain rule vs policed (bare cannot use that resolv.conf).

Not a test: timings never decide pass/fail.  Prints medians and ratios.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import sandlock  # noqa: E402
import rootfs  # noqa: E402
from dnsserver import DnsServer, Name, loopback_base  # noqa: E402

CLIENT = r"""
import socket, struct, sys, time
what, server, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
q = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
t = time.perf_counter()
if what == "raw":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(n):
        s.sendto(q, (server, 53)); s.recv(512)
else:
    for _ in range(n):
        socket.getaddrinfo(name, 443, 0, socket.SOCK_STREAM)
print(time.perf_counter() - t)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lookups", type=int, default=300)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_dns needs root: the DNS server binds port 53")
    base = loopback_base()
    server = DnsServer(base + "53", {"api.allowed.test": Name([base + "10"])})
    deb = str(rootfs.debian_rootfs())
    etc = tempfile.mkdtemp(prefix="sandlock-bench-dns-")
    shutil.rmtree(etc)
    shutil.copytree(os.path.join(deb, "etc"), etc, symlinks=True)
    os.unlink(os.path.join(etc, "resolv.conf")) if os.path.lexists(os.path.join(etc, "resolv.conf")) else None
    with open(os.path.join(etc, "resolv.conf"), "w") as f:
        f.write(f"nameserver {base}53\n")
    root = dict(chroot=deb, fs_mount=[f"/etc:{etc}:ro"])
    plain = sandlock.Sandbox(net_allow=[f"udp://{base}53:53", "api.allowed.test:443"], **root)
    policed = sandlock.Sandbox(net_allow=["api.allowed.test:443"], **root)
    argv = lambda what: ["/usr/bin/python3", "-c", CLIENT, what, base + "53", "api.allowed.test",  # noqa: E731
                         str(args.lookups)]

    def bare(what: str) -> float:
        host_argv = [sys.executable] + argv(what)[1:]
        return float(subprocess.run(host_argv, capture_output=True, check=True, text=True).stdout)

    def boxed(box) -> "callable":  # type: ignore[no-untyped-def,valid-type]
        def run(what: str) -> float:
            r = box.run(argv(what))
            if r.returncode != 0:
                raise SystemExit(f"sandboxed run failed ({r.returncode}): {r.stderr.decode()[-500:]}")
            return float(r.stdout.decode())
        return run

    rows = (("raw query", "raw", (("bare", bare), ("plain rule", boxed(plain)), ("policed", boxed(policed)))),
            ("getaddrinfo (glibc)", "gai", (("plain rule", boxed(plain)), ("policed", boxed(policed)))))
    for label, what, runs in rows:
        for _, run in runs:
            run(what)  # warm up
        times = {name: [] for name, _ in runs}  # type: dict
        for _ in range(args.rounds):
            for name, run in runs:
                times[name].append(run(what) / args.lookups * 1e6)
        medians = {name: statistics.median(t) for name, t in times.items()}
        first = next(iter(medians))
        cells = "  ".join(f"{name} {us:8.1f} us" for name, us in medians.items())
        ratios = "  ".join(f"{name}/{first} {us / medians[first]:5.2f}" for name, us in medians.items()
                           if name != first)
        print(f"{label:<20} {cells}   {ratios}")
    server.close()
    shutil.rmtree(etc, ignore_errors=True)


if __name__ == "__main__":
    main()
