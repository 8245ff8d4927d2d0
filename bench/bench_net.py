#!/usr/bin/env python3
"""The network policy's cost (README "Network"), as ratios against bare runs.

    python3 bench/bench_net.py [--rounds N] [--gib G]

Servers run in a process of their own on 127.0.0.1: one that accepts and closes, an
http.server serving a 1 KiB file, and a sink that reads and counts.  The
same client program runs bare (subprocess) and under
`Sandbox(net_allow=[those ports])`, both warmed up alike, rounds interleaved
(which side runs first alternates) so that a busy machine slows both alike;
the program times its own loop (start-up is not counted):

- connect+close: a TCP connect and close per call (each connect is trapped,
  decided and made on behalf), microseconds per call;
- HTTP GET: one connection and one GET per request (http.client), ms each
  (target: <= 1.2x bare);
- transfer: G GiB sent on one connection (sendall of 1 MiB buffers), MiB/s
  (target: >= 0.95x bare: send/recv on a connected socket are not trapped).

Not a test: timings never decide pass/fail.  Prints medians and ratios.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sandlock  # noqa: E402

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

CLIENT = r"""
import http.client, socket, sys, time
what, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
if what == "connect":
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port)); s.close()
elif what == "http":
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port); c.request("GET", "/f")
        assert len(c.getresponse().read()) == 1024; c.close()
elif what == "transfer":
    s = socket.create_connection(("127.0.0.1", port)); buf = b"x" * (1 << 20)
    for _ in range(n):
        s.sendall(buf)
    s.shutdown(socket.SHUT_WR); assert s.recv(16) == b"done"
print(time.perf_counter() - t)
"""


SERVERS = r"""
import http.server, os, socket, sys, threading
def serve(handler):
    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(512)
    def loop():
        while True:
            conn, _ = listener.accept(); handler(conn)
    threading.Thread(target=loop, daemon=True).start()
    return listener.getsockname()[1]
def sink(conn):
    def run():
        while conn.recv(1 << 20):
            pass
        conn.sendall(b"done"); conn.close()
    threading.Thread(target=run, daemon=True).start()
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
handler = lambda *a, **k: Quiet(*a, directory=sys.argv[1], **k)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(serve(lambda conn: conn.close()), server.server_address[1], serve(sink), flush=True)
sys.stdin.read()
"""


def servers(directory: str):  # type: ignore[no-untyped-def]
    """The servers, in a process of their own (not sharing this one's GIL with the supervisor)."""
    p = subprocess.Popen([sys.executable, "-c", SERVERS, directory], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    connect, http_, transfer = map(int, p.stdout.readline().split())  # type: ignore[union-attr]
    return p, {"connect": connect, "http": http_, "transfer": transfer}


def seconds(run, what: str, port: int, n: int) -> float:  # type: ignore[no-untyped-def]
    out = run([PYTHON, "-c", CLIENT, what, str(port), str(n)])
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gib", type=float, default=1.0)
    args = ap.parse_args()
    directory = tempfile.mkdtemp(prefix="sandlock-bench-net-")
    with open(os.path.join(directory, "f"), "wb") as f:
        f.write(b"y" * 1024)
    server, ports = servers(directory)
    box = sandlock.Sandbox(net_allow=[f"tcp://127.0.0.1:{p}" for p in ports.values()])

    def bare(argv):  # type: ignore[no-untyped-def]
        return subprocess.run(argv, capture_output=True, check=True, text=True).stdout

    def boxed(argv):  # type: ignore[no-untyped-def]
        r = box.run(argv)
        if r.returncode != 0:
            raise SystemExit(f"sandboxed run failed ({r.returncode}): {r.stderr.decode()[-500:]}")
        return r.stdout.decode()

    mib = int(args.gib * 1024)
    work = (("connect+close", "connect", 2000, lambda s: s / 2000 * 1e6, "us/call"),
            ("HTTP GET", "http", 300, lambda s: s / 300 * 1e3, "ms/request"),
            (f"transfer {args.gib:g} GiB", "transfer", mib, lambda s: mib / s, "MiB/s"))
    for label, what, n, unit, name in work:
        seconds(bare, what, ports[what], max(1, n // 10))  # warm up both sides alike
        seconds(boxed, what, ports[what], max(1, n // 10))
        b, s = [], []
        for round_ in range(args.rounds):
            # which side runs first alternates: neither always follows the other
            sides = ((bare, b), (boxed, s)) if round_ % 2 == 0 else ((boxed, s), (bare, b))
            for run, times in sides:
                times.append(unit(seconds(run, what, ports[what], n)))
        mb, ms = statistics.median(b), statistics.median(s)
        ratio = ms / mb
        kind = "throughput, sandboxed/bare" if name == "MiB/s" else "time, sandboxed/bare"
        print(f"{label:<22} bare {mb:10.1f} {name:<10} sandboxed {ms:10.1f} {name:<10} ratio {ratio:5.2f} ({kind})")
    server.kill()


if __name__ == "__main__":
    main()
