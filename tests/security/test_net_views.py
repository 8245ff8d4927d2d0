"""What a sandboxed command sees of the network (README "Network views", SECURITY.md "Network views").

Every probe runs INSIDE a sandbox, as root and as the unprivileged user (the
`who` fixture), in two views: "host" (no --root; glibc builds, the host's
`ip` and python3) and "root" (the busybox root filesystem: static musl
builds, busybox `ip`).  The test itself holds host sockets outside every
sandbox (a TCP listener on 127.0.0.1 and on ::1, a UDP socket, an abstract
unix socket with a canary name).

What must hold, under the default policy (no network allowed):
- /proc/net/{tcp,tcp6,udp,unix} (also through self, thread-self and the pid)
  list the sandbox's own sockets and no host socket, under the kernel's own
  header line;
- /proc/net/{dev,if_inet6} show only lo, route and arp only their header;
  other host-wide files (fib_trie, snmp) are refused (EACCES);
- getifaddrs(), if_nameindex(), `ip link`, `ip -4 addr`, `ip route`, a
  NETLINK_ROUTE dump and the interface ioctls (SIOCGIFCONF, SIOCGIFINDEX,
  SIOCGIFHWADDR...) see only lo with 127.0.0.1/8 and ::1/128;
- /proc/net/unix names a socket bound in an emulated root by the guest's path;
- a NETLINK_ROUTE write (RTM_NEWADDR) is refused (EPERM) while dumps work;
- every other netlink protocol (audit, generic, uevent) is refused with
  EPROTONOSUPPORT, sock_diag (which lists the host's sockets) with EPERM
  (docs/design.md "The deny list"), while NETLINK_ROUTE opens.
With --net-allow the real interfaces show and netlink stays read-only.
Controls: the host itself lists the test's sockets and more interfaces than
lo; the sandbox's own sockets are listed.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from conftest import SYSTEM_PYTHON, SYSTEM_READ

from .conftest import SECRET, Guest, SecProgs

RUN_TIMEOUT = 120
TABLES = ("tcp", "tcp6", "udp", "unix")
SPELLINGS = ("/proc/net/%s", "/proc/self/net/%s", "/proc/thread-self/net/%s", "/proc/PID/net/%s")
NOT_SUPPORTED = "Protocol not supported"
NOT_PERMITTED = "Operation not permitted"
BIND = ["--net-allow-bind", "*"]  # the sandbox's own listeners (still no network: no --net-allow)


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


class View:
    """One sandbox configuration: host mode (glibc probe) or the busybox root (musl probe)."""

    def __init__(self, mode: str, who, scratch: Path, progs: SecProgs, bb: Path) -> None:  # type: ignore[no-untyped-def]
        self.mode, self.who = mode, who
        self.guest = Guest(who, scratch, progs, bb if mode == "root" else None, ["netview"])
        self.probe = "/probe/netview" if mode == "root" else str(progs.host("netview"))
        self.progs_dir = str(progs.host_dir)

    def options(self) -> List[str]:
        if self.mode == "root":
            return ["--root", str(self.guest.guest)]
        return [*SYSTEM_READ, "-r", "/proc", "-r", self.progs_dir]

    def run(self, command: List[str], *extra: str) -> subprocess.CompletedProcess:
        return self.who.run([*self.options(), *BIND, *extra, "--", *command], timeout=RUN_TIMEOUT)


@pytest.fixture(params=["host", "root"])
def view(request: pytest.FixtureRequest, who, scratch: Path, secprogs: SecProgs,  # type: ignore[no-untyped-def]
         busybox_root: Path) -> View:
    return View(request.param, who, scratch, secprogs, busybox_root)


class HostSockets:
    """Sockets of the test process, outside every sandbox."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(1)
        self.tcp6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.tcp6.bind(("::1", 0))
        self.tcp6.listen(1)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix_name = f"hostview-{SECRET}"
        self.unix.bind("\0" + self.unix_name)
        self.unix.listen(1)
        self.ports = {"tcp": self.tcp.getsockname()[1], "tcp6": self.tcp6.getsockname()[1],
                      "udp": self.udp.getsockname()[1]}

    def close(self) -> None:
        for s in (self.tcp, self.tcp6, self.udp, self.unix):
            s.close()


@pytest.fixture
def host_sockets() -> "HostSockets":
    sockets = HostSockets()
    try:
        yield sockets
    finally:
        sockets.close()


def parse(stdout: str) -> Tuple[Dict[str, str], List[str]]:
    """(files by path, with the probe's pid spelled PID; the other lines)."""
    files: Dict[str, str] = {}
    lines: List[str] = []
    current = None
    body: List[str] = []
    for line in stdout.splitlines(keepends=True):
        if current is None and line.startswith("== "):
            current = line[3:].rstrip("\n")
            body = []
        elif current is not None and line == "== end\n":
            files[current] = "".join(body)
            current = None
        elif current is not None:
            body.append(line)
        else:
            lines.append(line.rstrip("\n"))
    for path in list(files):
        parts = path.split("/")
        if len(parts) > 2 and parts[2].isdigit():
            files["/".join(parts[:2] + ["PID"] + parts[3:])] = files.pop(path)
    return files, lines


def netview(view: View, marker: str, *extra: str) -> Tuple[Dict[str, str], List[str], str]:
    r = view.run([view.probe, marker], *extra)
    assert r.returncode == 0, show(r)
    files, lines = parse(r.stdout)
    return files, lines, r.stdout


def _local_ports(table: str) -> List[int]:
    """Local ports of the rows of an IP socket table."""
    return [int(line.split()[1].rsplit(":", 1)[1], 16) for line in table.splitlines()[1:]]


def _host_header(name: str) -> str:
    return Path(f"/proc/net/{name}").read_text(errors="surrogateescape").splitlines(keepends=True)[0]


def test_proc_net_socket_tables_list_the_sandboxs_own_sockets_and_no_host_socket(view: View,
                                                                                 host_sockets: HostSockets) -> None:
    for name, port in host_sockets.ports.items():  # control: the host lists the test's sockets
        assert port in _local_ports(Path(f"/proc/net/{name}").read_text(errors="surrogateescape")), name
    assert host_sockets.unix_name in Path("/proc/net/unix").read_text(errors="surrogateescape")
    files, lines, out = netview(view, "own1")
    assert SECRET not in out, f"a host socket reached the sandbox:\n{out}"
    own = {line.split()[1]: int(line.split()[2]) for line in lines if line.startswith("port ")}
    assert all(port > 0 for port in own.values()), lines  # the probe's own sockets were made
    for name in TABLES:
        for spelling in SPELLINGS:
            path = spelling % name
            text = files[path]
            assert text.splitlines(keepends=True)[0] == _host_header(name), (path, text[:300])
            if name == "unix":
                assert "netview-own1" in text, (path, text)  # the sandbox's own socket
                assert host_sockets.unix_name not in text, (path, text)
                continue
            ports = _local_ports(text)
            for host_port in host_sockets.ports.values():
                assert host_port not in ports, (path, host_port, text)
            assert ports == [own[name]], (path, own, text)  # the sandbox's own socket, nothing else


def test_proc_net_unix_names_a_socket_bound_in_the_sandbox_by_the_sandboxs_own_path(view: View,
                                                                                    scratch: Path) -> None:
    where = "/tmp" if view.mode == "root" else str(view.guest.scratch)
    path = f"{where}/nv.sock"
    r = view.run([view.probe, "named", path], "-w", where)
    assert r.returncode == 0 and "unix path bind OK" in r.stdout, show(r)
    files, _ = parse(r.stdout)
    for spelling in SPELLINGS:
        rows = files[spelling % "unix"].splitlines()[1:]
        assert [row.split(None, 7)[7] for row in rows if not row.split(None, 7)[7].startswith("@")] == [path], rows
    assert view.guest.host(Path(path)).exists(), "control: the socket file is where the sandbox bound it"


def test_proc_net_interface_files_show_only_loopback_and_host_wide_files_are_refused(view: View) -> None:
    host_dev = Path("/proc/net/dev").read_text().splitlines()[2:]
    assert {line.split(":")[0].strip() for line in host_dev} - {"lo"}, "control: the host has more than lo"
    assert len(Path("/proc/net/route").read_text().splitlines()) > 1, "control: the host has IPv4 routes"
    files, _, _ = netview(view, "ifs")
    dev = files["/proc/net/dev"].splitlines(keepends=True)
    assert dev[:2] == Path("/proc/net/dev").read_text().splitlines(keepends=True)[:2], dev
    assert [line.split(":")[0].strip() for line in dev[2:]] == ["lo"], dev
    assert [line.split()[-1] for line in files["/proc/net/if_inet6"].splitlines()] == ["lo"], files["/proc/net/if_inet6"]
    assert files["/proc/net/if_inet6"].split()[0] == "00000000000000000000000000000001"
    for name in ("route", "arp"):
        assert files[f"/proc/net/{name}"] == _host_header(name), (name, files[f"/proc/net/{name}"])
    for name in ("fib_trie", "snmp"):
        assert Path(f"/proc/net/{name}").read_text(errors="surrogateescape"), f"control: the host's {name} is readable"
        assert files.get(f"/proc/net/{name} ERR Permission denied") == "", (name, sorted(files))


def test_getifaddrs_and_netlink_route_dumps_see_only_loopback(view: View) -> None:
    _, lines, out = netview(view, "nl")
    assert "getifaddrs OK" in lines, out
    ifaddrs = [line.split()[1:] for line in lines if line.startswith("ifaddr ")]
    assert {name for name, _, _ in ifaddrs} == {"lo"}, ifaddrs
    assert {addr for _, family, addr in ifaddrs if family in ("2", "10")} == {"127.0.0.1", "::1"}, ifaddrs
    assert [line for line in lines if line.startswith("ifindex ")] == ["ifindex 1 lo"], out
    assert "route bind OK" in lines and "route getsockname family=16 len=12" in lines, out
    assert [line for line in lines if line.startswith("getlink ")] == ["getlink link lo", "getlink done"], out
    assert sorted(line for line in lines if line.startswith("getaddr ")) == \
        ["getaddr addr 127.0.0.1/8", "getaddr addr ::1/128", "getaddr done"], out


def _host_interface() -> str:
    """A host interface other than lo (the control of the probes that name it)."""
    host = subprocess.run(["ip", "link"], capture_output=True, text=True, check=True).stdout
    others = [name for name in _names_in_ip_link(host) if name != "lo"]
    assert others, f"control: the host has more than lo:\n{host}"
    return others[0]


def test_interface_ioctls_see_only_loopback(view: View) -> None:
    other = _host_interface()
    r = view.run([view.probe, "ioctl", "-", other])
    assert r.returncode == 0, show(r)
    lines = r.stdout.splitlines()
    assert [line for line in lines if line.startswith("ifconf")] == ["ifconf lo 127.0.0.1", "ifconf OK"], show(r)
    assert "ifreq lo index OK 1" in lines and "ifreq lo flags OK 49" in lines, show(r)  # UP LOOPBACK RUNNING
    assert "ifreq lo hwaddr OK" in lines, show(r)
    for line in (f"ifreq {other} index No such device 0", f"ifreq {other} flags No such device 0",
                 f"ifreq {other} hwaddr No such device"):
        assert line in lines, (line, show(r))


def test_netlink_route_writes_are_refused_while_dumps_work(view: View) -> None:
    _, lines, out = netview(view, "write")
    assert "getlink done" in lines, out  # control: a dump on the same socket works
    assert "newaddr error Operation not permitted" in lines, out


def test_netlink_protocols_other_than_route_are_refused(view: View) -> None:
    _, lines, out = netview(view, "proto")
    assert "nl_socket route OK" in lines, out  # control
    for name in ("audit", "generic", "uevent"):
        assert f"nl_socket {name} {NOT_SUPPORTED}" in lines, (name, out)
    assert f"diag socket {NOT_PERMITTED}" in lines, out
    assert not any(line.startswith("diag sockets") for line in lines), out


def _names_in_ip_link(text: str) -> List[str]:
    return [line.split(":")[1].strip().split("@")[0] for line in text.splitlines() if line[:1].isdigit()]


def test_ip_and_python_see_only_loopback(view: View) -> None:
    host = subprocess.run(["ip", "link"], capture_output=True, text=True, check=True).stdout
    assert set(_names_in_ip_link(host)) - {"lo"}, f"control: the host has more than lo:\n{host}"
    ip = "/bin/ip" if view.mode == "root" else "/usr/sbin/ip"
    script = f"{ip} link && echo ==addr && {ip} -4 addr && echo ==route && {ip} route && echo ==end"
    r = view.run(["/bin/sh", "-c", script])
    assert r.returncode == 0, show(r)
    link, rest = r.stdout.split("==addr\n")
    addr, rest = rest.split("==route\n")
    route, _ = rest.split("==end\n")
    assert _names_in_ip_link(link) == ["lo"], show(r)
    assert [line.split()[1] for line in addr.splitlines() if line.strip().startswith("inet ")] == ["127.0.0.1/8"], show(r)
    assert route == "", show(r)
    if view.mode == "host":
        code = ("import socket; print(socket.if_nameindex()); "
                "print(sorted({a[4][0] for a in socket.getaddrinfo('localhost', 80, 0, socket.SOCK_STREAM, 0, "
                "socket.AI_ADDRCONFIG)}))")
        r = view.run([SYSTEM_PYTHON, "-c", code])
        assert r.returncode == 0, show(r)
        names, addresses = r.stdout.splitlines()
        assert names == "[(1, 'lo')]", show(r)
        assert "127.0.0.1" in addresses, show(r)


def test_with_some_network_allowed_the_real_interfaces_show_and_stay_read_only(view: View,
                                                                              host_sockets: HostSockets) -> None:
    host_links = _names_in_ip_link(subprocess.run(["ip", "link"], capture_output=True, text=True, check=True).stdout)
    files, lines, out = netview(view, "real", "--net-allow", "tcp://127.0.0.1:1")
    assert [line for line in lines if line.startswith("getlink ")] == \
        [f"getlink link {name}" for name in host_links] + ["getlink done"], out
    assert {line.split()[1] for line in lines if line.startswith("ifaddr ")} == set(host_links), out
    assert "newaddr error Operation not permitted" in lines, out  # still read-only
    for name in ("audit", "generic", "uevent"):
        assert f"nl_socket {name} {NOT_SUPPORTED}" in lines, (name, out)
    assert f"diag socket {NOT_PERMITTED}" in lines, out
    dev = [line.split(":")[0].strip() for line in files["/proc/net/dev"].splitlines()[2:]]
    assert set(dev) == set(host_links), files["/proc/net/dev"]
    for host_port in host_sockets.ports.values():  # the socket tables stay the sandbox's own
        assert host_port not in _local_ports(files["/proc/net/tcp"]) + _local_ports(files["/proc/net/udp"]), out
