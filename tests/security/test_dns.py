"""DNS policing (issue 11; README "Domains", SECURITY.md "DNS").

The test process plays the network on a loopback /24 of its own (127.R.S.0):
a DNS server on 127.R.S.53:53 (tests/dnsserver.py; it logs every query it
receives) and TCP echo servers on 127.R.S.10-13 and .30.  The command's view
of /etc/resolv.conf names that server: the probes run in an emulated root,
the busybox one (the static musl probe progs/dns_connect.c: musl's resolver,
sendto per query) or the Debian one with its /etc replaced by a --fs-mount
(python3 and getent: glibc's resolver, connect then sendmmsg/send).  The
host's own resolver is never used; host mode is tested through /etc/hosts.
Every probe runs as root and as the unprivileged user (`who`), and every
refusal has a control that shows the same probe working when allowed.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Iterator, List, NamedTuple, Sequence

import pytest

from conftest import SYSTEM_READ
from dnsserver import DnsServer, Name, loopback_base
from netservers import Servers

DEB_PYTHON = "/usr/bin/python3"
MUSL_REFUSED = "getaddrinfo: Try again"                                # musl's EAI_AGAIN
GLIBC_REFUSED = "getaddrinfo: Temporary failure in name resolution"   # glibc's EAI_AGAIN

# What the C probe does, for glibc inside the Debian root (python3 there).
PY_CONNECT = r"""
import socket, sys, time
name, port = sys.argv[1], int(sys.argv[2])
family = {"4": socket.AF_INET, "6": socket.AF_INET6}.get(sys.argv[3] if len(sys.argv) > 3 else "", 0)
try:
    ip = socket.getaddrinfo(name, port, family, socket.SOCK_STREAM)[0][4][0]
except socket.gaierror as e:
    print("getaddrinfo:", e.strerror); sys.exit(2)
print("resolved", ip, flush=True)
time.sleep(float(sys.argv[4]) if len(sys.argv) > 4 else 0)
try:
    s = socket.create_connection((ip, port), timeout=5)
except OSError as e:
    print(f"connect {ip}: {e.strerror}"); sys.exit(3)
s.sendall(b"ping"); print("echo", s.recv(64).decode())
"""

# Raw DNS on the wire, for the probes that talk to the server themselves.
PY_RAW = r"""
import errno, os, socket, struct, sys
def query(name, ident=0x1234):
    q = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return q + struct.pack("!HH", 1, 1)
def rcode(reply): return "rcode=%d answers=%d" % (reply[3] & 15, struct.unpack("!H", reply[6:8])[0])
def err(e): return "ERR " + errno.errorcode.get(e.errno, str(e.errno))
server, op, name = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    if op == "udp":
        port = int(sys.argv[4])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        s.sendto(query(name), (server, port)); print("udp", rcode(s.recv(512)))
    elif op == "tcp":
        s = socket.create_connection((server, 53), timeout=3); q = query(name)
        s.sendall(struct.pack("!H", len(q)) + q); print("tcp", rcode(s.recv(514)[2:]))
    elif op == "connected":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        s.connect((server, 53)); print("peer", s.getpeername()[0], s.getpeername()[1])
        try:
            os.write(s.fileno(), query(name)); print("write", rcode(s.recv(512)))
        except OSError as e:
            print("write", err(e))
        try:  # only glibc's spelling is policed and sent: flags MSG_NOSIGNAL
            s.send(query(name, 0x1111)); print("send-flags-0", rcode(s.recv(512)))
        except OSError as e:
            print("send-flags-0", err(e))
        for what in (name, sys.argv[4]):
            try:
                s.send(query(what, 0x4321), socket.MSG_NOSIGNAL); print("send", what, rcode(s.recv(512)))
            except OSError as e:
                print("send", what, err(e))
    elif op == "append":   # a query then more bytes in the same datagram: MSG_MORE, UDP_CORK
        for how in ("more", "cork"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
            try:
                if how == "cork":
                    s.setsockopt(17, 1, 1)                        # SOL_UDP, UDP_CORK
                s.sendto(query(name), 0x8000 if how == "more" else 0, (server, 53))  # MSG_MORE
                os.write(s.fileno(), b"SECRET-BYTES")
                if how == "cork":
                    s.setsockopt(17, 1, 0)                        # uncork: the datagram leaves
                print(how, rcode(s.recv(512)))
            except OSError as e:
                print(how, err(e))
except OSError as e:
    print(op, err(e))
"""


class Net(NamedTuple):
    base: str
    dns: DnsServer
    echo: Servers
    resolv_conf: str
    hosts: str

    @property
    def port(self) -> int:
        return self.echo.port

    def ip(self, last: int) -> str:
        return f"{self.base}{last}"


@pytest.fixture
def net() -> Iterator[Net]:
    base = loopback_base()
    echo = Servers([base + last for last in ("10", "11", "12", "13", "30")])
    zone = {
        "api.allowed.test": Name([base + "10"]),
        "*.wild.test": Name([base + "11"]),
        "short.allowed.test": Name([base + "12"], ttl=1),
        "rotate.allowed.test": Name([base + "10", base + "11", base + "12"], rotate=True, ttl=1),
        "alias.allowed.test": Name(cname="edge.cdn.test"),
        "edge.cdn.test": Name([base + "13"]),
    }
    dns = DnsServer(base + "53", zone)
    other_port = DnsServer(base + "53", zone, port=5353)
    yield Net(base, dns, echo, f"nameserver {base}53\noptions timeout:2 attempts:1\n",
              f"127.0.0.1 localhost\n{base}30 pinned.test\n")
    dns.close()
    other_port.close()
    echo.close()


class Guest(NamedTuple):
    lib: str                 # "musl" or "glibc"
    args: List[str]          # sandlock options that make the command's view
    connect: List[str]       # the resolve-and-connect probe: + NAME PORT [FAMILY [SLEEP]]
    refused: str             # what it prints for a name the policy refuses


@pytest.fixture(params=["musl", "glibc"])
def guest(request: pytest.FixtureRequest, net: Net, scratch: Path) -> Guest:
    return make_guest(request, request.param, net, scratch)


@pytest.fixture
def glibc(request: pytest.FixtureRequest, net: Net, scratch: Path) -> Guest:
    return make_guest(request, "glibc", net, scratch)


def make_guest(request: pytest.FixtureRequest, lib: str, net: Net, scratch: Path) -> Guest:
    if lib == "musl":
        secprogs = request.getfixturevalue("secprogs")
        busybox_shared_root = request.getfixturevalue("busybox_shared_root")
        root = scratch / "bbroot"
        subprocess.run(["cp", "-a", str(busybox_shared_root), str(root)], check=True)
        (root / "probe").mkdir(mode=0o755)
        shutil.copy(secprogs.musl("dns_connect"), root / "probe" / "dns_connect")
        (root / "etc" / "resolv.conf").write_text(net.resolv_conf)
        (root / "etc" / "hosts").write_text(net.hosts)
        return Guest("musl", ["--root", str(root)], ["/probe/dns_connect"], MUSL_REFUSED)
    deb_root = request.getfixturevalue("deb_root")
    etc = scratch / "etc"
    shutil.copytree(deb_root / "etc", etc, symlinks=True)
    (etc / "resolv.conf").unlink(missing_ok=True)
    (etc / "resolv.conf").write_text(net.resolv_conf)
    (etc / "hosts").write_text(net.hosts)
    for path in [etc, *etc.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    return Guest("glibc", ["--root", str(deb_root), "--fs-mount", f"/etc:{etc}:ro"],
                 [DEB_PYTHON, "-c", PY_CONNECT], GLIBC_REFUSED)


def allow(*specs: str) -> List[str]:
    return [arg for spec in specs for arg in ("--net-allow", spec)]


def run(who, guest: Guest, rules: Sequence[str], command: Sequence[str]) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return who.run([*guest.args, *rules, "--", *command], timeout=60)


def lookup(who, guest: Guest, rules: Sequence[str], name: str, port: int, *extra: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return run(who, guest, rules, [*guest.connect, name, str(port), *extra])


def test_a_name_no_rule_allows_never_reaches_the_resolver_and_the_lookup_fails(who, guest: Guest, net: Net) -> None:
    secret = f"secret-{uuid.uuid4().hex[:12]}.exfil.test"
    rules = allow(f"api.allowed.test:{net.port}")
    done = lookup(who, guest, rules, secret, net.port)
    assert (done.returncode, done.stdout.strip()) == (2, guest.refused), done.stderr
    assert secret not in net.dns.names_asked()
    # control: an allowed name in the same sandbox reaches the server, resolves, connects
    done = lookup(who, guest, rules, "api.allowed.test", net.port)
    assert done.stdout.split("\n")[:2] == [f"resolved {net.ip(10)}", "echo ping"], done.stdout + done.stderr
    assert "api.allowed.test" in net.dns.names_asked()


def test_an_exact_name_and_a_wildcard_subdomain_resolve_and_connect(who, guest: Guest, net: Net) -> None:
    rules = allow(f"api.allowed.test:{net.port}", f"*.wild.test:{net.port}")
    for name, last in (("api.allowed.test", 10), ("deep.x.wild.test", 11)):
        done = lookup(who, guest, rules, name, net.port)
        assert done.stdout.split("\n")[:2] == [f"resolved {net.ip(last)}", "echo ping"], done.stdout + done.stderr
    # the wildcard covers strict subdomains only: the bare suffix is refused before it leaves
    done = lookup(who, guest, rules, "wild.test", net.port)
    assert (done.returncode, done.stdout.strip()) == (2, guest.refused)
    assert "wild.test" not in net.dns.names_asked()


def test_a_cname_chain_allows_the_address_for_the_name_asked(who, guest: Guest, net: Net) -> None:
    done = lookup(who, guest, allow(f"alias.allowed.test:{net.port}"), "alias.allowed.test", net.port)
    assert done.stdout.split("\n")[:2] == [f"resolved {net.ip(13)}", "echo ping"], done.stdout + done.stderr


def test_a_connect_to_an_address_no_allowed_name_resolved_to_is_refused(who, guest: Guest, net: Net) -> None:
    rules = allow(f"api.allowed.test:{net.port}")
    done = lookup(who, guest, rules, net.ip(12), net.port)   # a literal address: no DNS, nothing learned
    assert (done.returncode, done.stdout.split("\n")[:2]) == (3, [f"resolved {net.ip(12)}",
                                                                 f"connect {net.ip(12)}: Permission denied"])
    assert net.echo.accepted[net.ip(12)] == 0
    # control: the address an allowed answer gave is connectable, on the port the rule names only
    done = lookup(who, guest, rules, "api.allowed.test", net.port)
    assert done.stdout.split("\n")[:2] == [f"resolved {net.ip(10)}", "echo ping"], done.stdout + done.stderr
    done = lookup(who, guest, rules, "api.allowed.test", net.port + 1)
    assert done.stdout.split("\n")[1] == f"connect {net.ip(10)}: Permission denied"


def test_a_rotating_name_connects_at_every_address_it_resolves_to(who, guest: Guest, net: Net) -> None:
    probe = " ".join(f"'{a}'" for a in guest.connect)
    script = f"for i in 1 2 3; do {probe} rotate.allowed.test {net.port} 4 || exit 9; done"
    done = run(who, guest, allow(f"rotate.allowed.test:{net.port}"), ["/bin/sh", "-c", script])
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.split("\n")
    assert sorted(lines[0:6:2]) == [f"resolved {net.ip(n)}" for n in (10, 11, 12)], done.stdout
    assert lines[1:6:2] == ["echo ping"] * 3


def test_a_short_ttl_name_stays_connectable_for_the_ttl_floor(who, glibc: Guest, net: Net) -> None:
    # TTL 1 s; connect 2.5 s later: the answer is still honoured (floor 60 s, README "Domains")
    done = lookup(who, glibc, allow(f"short.allowed.test:{net.port}"), "short.allowed.test", net.port, "4", "2.5")
    assert done.stdout.split("\n")[:2] == [f"resolved {net.ip(12)}", "echo ping"], done.stdout + done.stderr


def test_hosts_entries_of_the_root_count_as_answers(who, guest: Guest, net: Net) -> None:
    done = lookup(who, guest, allow(f"pinned.test:{net.port}"), "pinned.test", net.port)
    assert done.stdout.split("\n")[:2] == [f"resolved {net.ip(30)}", "echo ping"], done.stdout + done.stderr
    assert "pinned.test" not in net.dns.names_asked()
    # control: the same address under a rule for another name is refused
    done = lookup(who, guest, allow(f"api.allowed.test:{net.port}"), net.ip(30), net.port)
    assert done.stdout.split("\n")[1] == f"connect {net.ip(30)}: Permission denied"


def test_a_single_family_lookup_of_glibc_uses_send_and_is_policed_too(who, glibc: Guest, net: Net) -> None:
    rules = allow(f"api.allowed.test:{net.port}")
    done = run(who, glibc, rules, ["getent", "ahostsv4", "api.allowed.test"])
    assert done.stdout.split()[:3] == [net.ip(10), "STREAM", "api.allowed.test"], done.stdout + done.stderr
    secret = f"secret-{uuid.uuid4().hex[:12]}.exfil.test"
    done = run(who, glibc, rules, ["getent", "ahostsv4", secret])
    assert (done.returncode, done.stdout) == (2, "")
    assert secret not in net.dns.names_asked()


def test_dns_to_another_port_or_over_tcp_is_refused_without_its_own_rule(who, glibc: Guest, net: Net) -> None:
    server = net.ip(53)
    name_rule = f"api.allowed.test:{net.port}"
    raw = [DEB_PYTHON, "-c", PY_RAW, server]
    done = run(who, glibc, allow(name_rule), [*raw, "udp", "api.allowed.test", "5353"])
    assert done.stdout.strip() == "udp ERR EACCES", done.stdout + done.stderr
    done = run(who, glibc, allow(name_rule), [*raw, "tcp", "api.allowed.test"])
    assert done.stdout.strip() == "tcp ERR EACCES", done.stdout + done.stderr
    assert net.dns.queries == []
    # controls: each with its own explicit rule
    done = run(who, glibc, allow(name_rule, f"udp://{server}:5353"), [*raw, "udp", "api.allowed.test", "5353"])
    assert done.stdout.strip() == "udp rcode=0 answers=1", done.stdout + done.stderr
    done = run(who, glibc, allow(name_rule, f"tcp://{server}:53"), [*raw, "tcp", "api.allowed.test"])
    assert done.stdout.strip() == "tcp rcode=0 answers=1", done.stdout + done.stderr
    assert net.dns.queries == [("tcp", "api.allowed.test", 1)]


def test_a_write_on_a_udp_socket_connected_to_the_resolver_fails_closed(who, glibc: Guest, net: Net) -> None:
    secret = f"secret-{uuid.uuid4().hex[:12]}.exfil.test"
    done = run(who, glibc, allow(f"api.allowed.test:{net.port}"),
               [DEB_PYTHON, "-c", PY_RAW, net.ip(53), "connected", "api.allowed.test", secret])
    assert done.stdout.split("\n")[:5] == [f"peer {net.ip(53)} 53", "write ERR EDESTADDRREQ",
                                           "send-flags-0 ERR EDESTADDRREQ",
                                           "send api.allowed.test rcode=0 answers=1",
                                           f"send {secret} ERR EACCES"], done.stdout + done.stderr
    assert net.dns.names_asked() == ["api.allowed.test"]


@pytest.fixture
def localhost_echo() -> Iterator[Servers]:
    echo = Servers(["127.0.0.1"])
    yield echo
    echo.close()


def test_hosts_entries_of_the_host_count_as_answers_in_host_mode(who, secprogs, localhost_echo: Servers) -> None:
    names = Path("/etc/hosts").read_text().split()
    assert "localhost" in names, "this test needs 'localhost' in the host's /etc/hosts"
    port = str(localhost_echo.port)
    probe = str(secprogs.host("dns_connect"))
    view = [*SYSTEM_READ, "-r", str(secprogs.host_dir)]
    done = who.run([*view, *allow(f"localhost:{port}"), "--", probe, "localhost", port, "4"])
    assert done.stdout.split("\n")[:2] == ["resolved 127.0.0.1", "echo ping"], done.stdout + done.stderr
    # control: without a rule whose name resolves there, the same address is refused
    done = who.run([*view, *allow(f"api.allowed.test:{port}"), "--", probe, "127.0.0.1", port])
    assert done.stdout.split("\n")[1] == "connect 127.0.0.1: Permission denied", done.stdout + done.stderr


PY_UDP = r"""
import errno, socket, sys
ip = socket.gethostbyname(sys.argv[1]) if sys.argv[1][0].isalpha() else sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
try:
    s.sendto(b"ping", (ip, int(sys.argv[2]))); print("udp", ip, s.recv(64).decode())
except OSError as e:
    print("udp", ip, errno.errorcode.get(e.errno, e.errno))
"""


def test_an_address_learned_for_a_name_is_allowed_for_udp_as_for_tcp(who, glibc: Guest, net: Net) -> None:
    rules = allow(f"api.allowed.test:{net.port}")   # no scheme: TCP and UDP
    done = run(who, glibc, rules, [DEB_PYTHON, "-c", PY_UDP, "api.allowed.test", str(net.port)])
    assert done.stdout.strip() == f"udp {net.ip(10)} ping", done.stdout + done.stderr
    # control: UDP to an address no allowed name resolved to is refused
    done = run(who, glibc, rules, [DEB_PYTHON, "-c", PY_UDP, net.ip(12), str(net.port)])
    assert done.stdout.strip() == f"udp {net.ip(12)} EACCES", done.stdout + done.stderr


def test_no_bytes_can_be_appended_to_an_allowed_query(who, glibc: Guest, net: Net) -> None:
    done = run(who, glibc, allow(f"api.allowed.test:{net.port}"),
               [DEB_PYTHON, "-c", PY_RAW, net.ip(53), "append", "api.allowed.test"])
    assert done.stdout.split("\n")[:2] == ["more ERR EACCES", "cork ERR EPERM"], done.stdout + done.stderr
    assert not any(b"SECRET" in d for d in net.dns.datagrams)
    # control: the same query sent whole is answered
    done = run(who, glibc, allow(f"api.allowed.test:{net.port}"),
               [DEB_PYTHON, "-c", PY_RAW, net.ip(53), "connected", "api.allowed.test", "api.allowed.test"])
    assert "send api.allowed.test rcode=0 answers=1" in done.stdout.split("\n"), done.stdout + done.stderr
