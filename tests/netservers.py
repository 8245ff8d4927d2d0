"""TCP and UDP servers on loopback addresses, for the network tests (the test process
plays the network; nothing is ever sent off the machine).

``Servers(addresses)`` listens on one port number, free on every address, over TCP
and UDP, with a thread per socket (and per TCP connection), and answers each
message with the message itself (an echo) or, with ``tag=True``, with the address
of the server that received it, so a probe can tell which server it reached.
Every message received is logged per address (``servers[address].received``, and
``servers.received`` for all of them; a TCP connection that sent nothing as b""),
and TCP connections are counted per address (``servers.accepted``), so a test can
assert that a refused probe reached nothing.

Used by tests/security/test_network.py (echo), tests/security/test_redteam_network.py
(tagged, on 127.0.0.1 and 127.0.0.2) and tests/security/test_dns.py (the addresses the
test DNS server answers with).
"""

from __future__ import annotations

import socket
import threading
from typing import Dict, List, Sequence

ATTEMPTS = 50   # ports tried before giving up (another test may take one meanwhile)


class Endpoint:
    """What the servers of one address received."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.received: List[bytes] = []
        self.accepted = 0


class Servers:
    """TCP and UDP servers on one port of each of `addresses` (see the module docstring).

    port: that port, or 0 for one free on every address.
    """

    def __init__(self, addresses: Sequence[str], tag: bool = False, port: int = 0) -> None:
        self.tag = tag
        self.endpoints: Dict[str, Endpoint] = {a: Endpoint(a) for a in addresses}
        self.received: List[bytes] = []   # every message, whichever address received it
        self._stop = False
        for _ in range(ATTEMPTS if port == 0 else 1):
            try:
                self.port, self._socks = self._bind(addresses, port)
                break
            except OSError:
                if port:
                    raise
        else:
            raise RuntimeError(f"no port free on every address of {list(addresses)}")
        self._threads = []
        for address, sock in self._socks:
            serve = self._serve_tcp if sock.type == socket.SOCK_STREAM else self._serve_udp
            t = threading.Thread(target=serve, args=(self.endpoints[address], sock), daemon=True)
            t.start()
            self._threads.append(t)

    @staticmethod
    def _bind(addresses: Sequence[str], port: int):  # type: ignore[no-untyped-def]
        socks: List = []
        try:
            for address in addresses:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                tcp = socket.socket(family, socket.SOCK_STREAM)
                socks.append((address, tcp))
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((address, port))
                port = tcp.getsockname()[1]
                tcp.listen(64)
                udp = socket.socket(family, socket.SOCK_DGRAM)
                socks.append((address, udp))
                udp.bind((address, port))
        except OSError:
            for _, sock in socks:
                sock.close()
            raise
        for _, sock in socks:
            sock.settimeout(0.2)  # the threads look at _stop this often
        return port, socks

    def __getitem__(self, address: str) -> Endpoint:
        return self.endpoints[address]

    @property
    def accepted(self) -> Dict[str, int]:
        """TCP connections accepted, per address."""
        return {a: e.accepted for a, e in self.endpoints.items()}

    def _answer(self, endpoint: Endpoint, data: bytes) -> bytes:
        endpoint.received.append(data)
        self.received.append(data)
        return endpoint.address.encode() if self.tag else data

    def _serve_udp(self, endpoint: Endpoint, sock: socket.socket) -> None:
        while not self._stop:
            try:
                data, peer = sock.recvfrom(4096)
                sock.sendto(self._answer(endpoint, data), peer)
            except OSError:  # socket.timeout too
                continue

    def _serve_tcp(self, endpoint: Endpoint, sock: socket.socket) -> None:
        while not self._stop:
            try:
                conn, _ = sock.accept()
            except OSError:  # socket.timeout too
                continue
            endpoint.accepted += 1
            threading.Thread(target=self._connection, args=(endpoint, conn), daemon=True).start()

    def _connection(self, endpoint: Endpoint, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            first = True
            try:
                while not self._stop:
                    data = conn.recv(4096)
                    if not data:
                        if first:  # a connection that sent nothing still reached this server
                            endpoint.received.append(b"")
                            self.received.append(b"")
                        return
                    first = False
                    conn.sendall(self._answer(endpoint, data))
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        for t in self._threads:
            t.join(2)
        for _, sock in self._socks:
            sock.close()


def free_port() -> int:
    """A TCP port of 127.0.0.1 free a moment ago (nothing listens there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
