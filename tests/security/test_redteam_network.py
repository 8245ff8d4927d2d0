"""Red team of the network policy (issue 11; README "Network", SECURITY.md "Network").

Every probe runs INSIDE a sandbox, as root and as the unprivileged user (the
`who` fixture).  The test process plays the network: tagged TCP and UDP echo
servers on loopback addresses it picks; each denial has a control in which the
same probe reaches a server the policy allows.
"""

from __future__ import annotations

import socket
from typing import Dict, Iterator, List

import pytest

from conftest import SYSTEM_PYTHON, SYSTEM_READ
from netservers import Servers

PROBE = r"""
import errno, socket, sys
port = int(sys.argv[1])
def name(exc): return errno.errorcode.get(exc.errno, str(exc.errno))
def direct(host):
    s = socket.socket(); s.settimeout(5); s.connect((host, port)); s.sendall(b"ping"); return s.recv(64).decode()
def zero_from(host):
    # a socket bound to `host` (port 0: any bind may), then connect(0.0.0.0): the
    # kernel sends to the socket's own source address (ip_route_output_key_hash)
    s = socket.socket(); s.settimeout(5); s.bind((host, 0)); s.connect(("0.0.0.0", port))
    s.sendall(b"ping"); return s.recv(64).decode()
def udp_zero_from(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.bind((host, 0))
    s.sendto(b"ping", ("0.0.0.0", port)); return s.recv(64).decode()
def mapped_zero_from(host):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(5); s.bind(("::ffff:" + host, 0))
    s.sendto(b"ping", ("::ffff:0.0.0.0", port)); return s.recv(64).decode()
for arg in sys.argv[2:]:
    op, host = arg.split("@")
    try:
        print(arg, "OK", globals()[op](host), flush=True)
    except OSError as exc:
        print(arg, "ERR", name(exc) if exc.errno else type(exc).__name__, flush=True)
"""


@pytest.fixture
def pair() -> Iterator[Dict[str, object]]:
    """Tagged servers on 127.0.0.1 and 127.0.0.2, one port number for both."""
    servers = Servers(["127.0.0.1", "127.0.0.2"], tag=True)
    yield {"port": servers.port, "127.0.0.1": servers["127.0.0.1"], "127.0.0.2": servers["127.0.0.2"]}
    servers.close()


def run_probe(who, net: List[str], port: int, *ops: str) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    r = who.run([*SYSTEM_READ, *net, "--", SYSTEM_PYTHON, "-c", PROBE, str(port), *ops])
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    out = {}
    for line in r.stdout.splitlines():
        op, _, result = line.partition(" ")
        out[op] = result
    assert len(out) == len(ops), r.stdout + r.stderr
    return out


# --- 0.0.0.0 from a socket bound to another local address --------------------------------------------

ZERO_OPS = ("direct@127.0.0.2", "zero_from@127.0.0.2", "udp_zero_from@127.0.0.2", "mapped_zero_from@127.0.0.2")


def test_connect_to_0_0_0_0_from_a_socket_bound_to_a_denied_local_address_does_not_reach_it(who, pair):
    # the policy allows 127.0.0.1 only: 0.0.0.0 may reach 127.0.0.1, never 127.0.0.2
    out = run_probe(who, ["--net-allow", "127.0.0.1"], pair["port"], *ZERO_OPS)
    assert out["direct@127.0.0.2"] == "ERR EACCES"
    for op in ZERO_OPS[1:]:
        assert out[op] in ("OK 127.0.0.1", "ERR EACCES"), (op, out)
    assert pair["127.0.0.2"].received == []


def test_net_deny_of_a_local_address_holds_for_0_0_0_0_from_a_socket_bound_to_it(who, pair):
    out = run_probe(who, ["--net-deny", "127.0.0.2"], pair["port"], *ZERO_OPS)
    assert out["direct@127.0.0.2"] == "ERR EACCES"
    for op in ZERO_OPS[1:]:
        assert out[op] in ("OK 127.0.0.1", "ERR EACCES"), (op, out)
    assert pair["127.0.0.2"].received == []


def test_control_the_same_probes_reach_the_servers_the_policy_allows(who, pair):
    out = run_probe(who, ["--net-allow", "127.0.0.1", "--net-allow", "127.0.0.2"], pair["port"],
                    "direct@127.0.0.2", "direct@127.0.0.1", "zero_from@127.0.0.1", "udp_zero_from@127.0.0.1",
                    "mapped_zero_from@127.0.0.1")
    assert out == {"direct@127.0.0.2": "OK 127.0.0.2", "direct@127.0.0.1": "OK 127.0.0.1",
                   "zero_from@127.0.0.1": "OK 127.0.0.1", "udp_zero_from@127.0.0.1": "OK 127.0.0.1",
                   "mapped_zero_from@127.0.0.1": "OK 127.0.0.1"}


# --- interface names under /proc/sys/net --------------------------------------------------------------

SYSCTL_PROBE = r"""
import errno, os, sys
host_if = sys.argv[1]
def name(exc): return errno.errorcode.get(exc.errno, str(exc.errno))
def ls(path): return ",".join(sorted(os.listdir(path)))
def cat(path):
    with open(path) as f: return f.read().strip()
ops = [("ls4conf", ls, "/proc/sys/net/ipv4/conf"), ("ls6conf", ls, "/proc/sys/net/ipv6/conf"),
       ("ls4neigh", ls, "/proc/sys/net/ipv4/neigh"), ("ls6neigh", ls, "/proc/sys/net/ipv6/neigh"),
       ("hostmtu", cat, "/proc/sys/net/ipv6/conf/%s/mtu" % host_if),
       ("hostdir", os.stat, "/proc/sys/net/ipv4/conf/%s" % host_if),
       ("hostrel", lambda d: os.open(host_if, os.O_RDONLY | os.O_DIRECTORY, dir_fd=os.open(d, os.O_PATH)),
        "/proc/sys/net/ipv4/neigh"),
       ("lomtu", cat, "/proc/sys/net/ipv6/conf/lo/mtu"), ("allfwd", cat, "/proc/sys/net/ipv4/conf/all/forwarding")]
for op, fn, arg in ops:
    try:
        r = fn(arg)
        print(op, "OK", host_if in str(r).split(",") if op.startswith("ls") else "seen", flush=True)
    except OSError as exc:
        print(op, "ERR", name(exc), flush=True)
"""


def host_interface() -> str:
    names = [n for _, n in socket.if_nameindex() if n != "lo"]
    if not names:
        pytest.skip("this host has no interface but lo: nothing to hide")
    return names[0]


def sysctl_probe(who, net: List[str]) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    r = who.run([*SYSTEM_READ, *net, "--", SYSTEM_PYTHON, "-c", SYSCTL_PROBE, host_interface()])
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


def test_with_no_network_proc_sys_net_names_no_host_interface(who):
    out = sysctl_probe(who, [])
    for op in ("ls4conf", "ls6conf", "ls4neigh", "ls6neigh"):
        assert out[op] in ("OK False", "ERR EACCES"), (op, out)
    for op in ("hostmtu", "hostdir", "hostrel"):
        assert out[op] == "ERR ENOENT", (op, out)
    assert out["lomtu"] == "OK seen" and out["allfwd"] == "OK seen", out


def test_control_with_some_network_proc_sys_net_shows_the_host_interfaces(who):
    out = sysctl_probe(who, ["--net-allow", "127.0.0.1"])
    assert out == {"ls4conf": "OK True", "ls6conf": "OK True", "ls4neigh": "OK True", "ls6neigh": "OK True",
                   "hostmtu": "OK seen", "hostdir": "OK seen", "hostrel": "OK seen", "lomtu": "OK seen",
                   "allfwd": "OK seen"}, out


# --- the netlink view: a message the kernel never answers ----------------------------------------------

NETLINK_PROBE = r"""
import socket, struct, sys, threading, time
flags, count = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(16, socket.SOCK_RAW, 0)   # NETLINK_ROUTE (emulated)
# RTM_GETLINK dumps; without NLM_F_REQUEST (flags 0x300) the kernel answers none of them
s.send(b"".join(struct.pack("=IHHII", 32, 18, flags, i + 1, 0) + bytes(16) for i in range(count)))
took = []
def other():
    start = time.monotonic(); open("/etc/hostname").read(); took.append(time.monotonic() - start)
start = time.monotonic()
t = threading.Thread(target=other); t.start()
try:
    first = s.recv(65536, socket.MSG_DONTWAIT)
except BlockingIOError:
    first = b""
t.join()
print("recv %.1f open %.1f" % (time.monotonic() - start, took[0]), flush=True)
s.settimeout(3)
try:
    first = first or s.recv(65536)
    print("answer", first[4:6] == struct.pack("=H", 16), flush=True)   # RTM_NEWLINK
except socket.timeout:
    print("answer none", flush=True)
"""


def netlink_probe(who, flags: int) -> List[str]:  # type: ignore[no-untyped-def]
    start = __import__("time").monotonic()
    r = who.run([*SYSTEM_READ, "--net-allow", "127.0.0.1", "--", SYSTEM_PYTHON, "-c", NETLINK_PROBE, str(flags), "8"],
                timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout.split() + ["%.1f" % (__import__("time").monotonic() - start)]


def test_netlink_messages_the_kernel_never_answers_do_not_stall_the_supervisor(who):
    # 8 RTM_GETLINK dumps without NLM_F_REQUEST: the supervisor waited 2 s for each kernel
    # answer, in the notification loop, and every trapped call of the sandbox waited
    out = netlink_probe(who, 0x300)  # NLM_F_DUMP
    recv, other = float(out[1]), float(out[3])
    assert recv < 3 and other < 3, out
    assert out[4:6] == ["answer", "none"], out  # as the kernel: no answer to a non-request


def test_control_netlink_requests_are_still_answered_by_the_kernel(who):
    out = netlink_probe(who, 0x301)  # NLM_F_DUMP | NLM_F_REQUEST
    assert float(out[1]) < 3 and float(out[3]) < 3, out
    assert out[4:6] == ["answer", "True"], out


# --- DNS: what an allowed query carries besides its name --------------------------------------------

from .test_dns import DEB_PYTHON, Guest, Net, allow, glibc, make_guest, net, run  # noqa: E402,F401  (fixtures)

PY_CASED = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
try:
    s.sendto(q, (server, 53)); print("answered", len(s.recv(512)) > 12)
except OSError as e:
    print("ERR", e.errno)
"""


def test_the_letter_case_of_an_allowed_query_does_not_reach_the_resolver(who, glibc: Guest, net: Net) -> None:
    # before: the datagram reached the resolver as written, 1 bit per letter (0x20 encoding)
    cased = "aPi.AlLowEd.TEst"
    done = run(who, glibc, allow(f"api.allowed.test:{net.port}"), [DEB_PYTHON, "-c", PY_CASED, net.ip(53), cased])
    # control: the query is allowed and answered, whatever its case
    assert done.stdout.split() == ["answered", "True"], done.stdout + done.stderr
    assert any(b"allowed" in d.lower() for d in net.dns.datagrams)
    assert not any(b"AlLowEd" in d for d in net.dns.datagrams), net.dns.datagrams
