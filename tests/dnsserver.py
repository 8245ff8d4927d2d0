"""A small DNS server for the DNS tests, on loopback only.

Pure stdlib.  ``DnsServer`` answers UDP and TCP queries on ADDRESS:53 (the
resolver port: musl and glibc have no port option in resolv.conf, so the
server must be on 53; binding it needs root, which the test process is; the
sandboxed command may run unprivileged).  Each server gets its own loopback
address 127.R.S.53 so parallel test runs never collide on port 53.

It answers from a zone of ``Name`` entries (exact names, ``*.suffix``
wildcards, a rotating name that gives the next address at each query, CNAME
chains, any TTL) and NXDOMAIN for the rest, and logs every query it receives
(``queries``: (transport, qname, qtype)), so a test can assert that a refused
name never reached it.

The answers point at echo servers (tests/netservers.py) on loopback addresses,
so "connect to what you resolved" is tested end to end.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from typing import Dict, List, Optional, Sequence, Tuple

A, CNAME, AAAA = 1, 5, 28
NXDOMAIN = 3


class Name:
    """What the server answers for one name (or `*.suffix`): addresses (all of them, or
    one per query in turn when rotate), a CNAME target, a TTL."""

    def __init__(self, addresses: Sequence[str] = (), ttl: int = 300, rotate: bool = False,
                 cname: Optional[str] = None) -> None:
        self.addresses, self.ttl, self.rotate, self.cname = list(addresses), ttl, rotate, cname
        self.turn = 0

    def next_addresses(self) -> List[str]:
        if not self.rotate:
            return self.addresses
        self.turn += 1
        return [self.addresses[(self.turn - 1) % len(self.addresses)]]


def _name(data: bytes, offset: int) -> Tuple[str, int]:
    labels = []
    while data[offset]:
        size = data[offset]
        labels.append(data[offset + 1:offset + 1 + size].decode("ascii"))
        offset += 1 + size
    return ".".join(labels).lower(), offset + 1


def _encode(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


def loopback_base() -> str:
    """'127.R.S.' with R, S random: a /24 of loopback of our own for one test."""
    return f"127.{random.randint(100, 250)}.{random.randint(1, 254)}."


class DnsServer:
    def __init__(self, address: str, zone: Dict[str, Name], port: int = 53) -> None:
        self.address, self.port, self.zone = address, port, zone
        self.queries: List[Tuple[str, str, int]] = []
        self.datagrams: List[bytes] = []   # every UDP datagram received, raw
        self._lock = threading.Lock()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind((address, port))
        self.tcp.bind((address, port))
        self.tcp.listen(16)
        self._stop = False
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]
        for thread in self._threads:
            thread.start()

    def names_asked(self) -> List[str]:
        with self._lock:
            return [q[1] for q in self.queries]

    def _lookup(self, qname: str) -> Optional[Name]:
        if qname in self.zone:
            return self.zone[qname]
        parts = qname.split(".")
        for i in range(1, len(parts)):
            entry = self.zone.get("*." + ".".join(parts[i:]))
            if entry is not None:
                return entry
        return None

    def answer(self, query: bytes, transport: str) -> Optional[bytes]:
        if len(query) < 12:
            return None
        ident, flags, qdcount = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            return None
        qname, end = _name(query, 12)
        qtype, _qclass = struct.unpack("!HH", query[end:end + 4])
        with self._lock:
            self.queries.append((transport, qname, qtype))
        question = query[12:end + 4]
        records: List[bytes] = []
        rcode = 0
        name, owner = self._lookup(qname), qname
        for _ in range(8):  # follow a CNAME chain inside the zone
            if name is None:
                rcode = 0 if records else NXDOMAIN
                break
            if name.cname:
                records.append(_encode(owner) + struct.pack("!HHIH", CNAME, 1, name.ttl, len(_encode(name.cname)))
                               + _encode(name.cname))
                owner, name = name.cname, self._lookup(name.cname)
                continue
            for address in name.next_addresses():
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                if (family == socket.AF_INET) != (qtype == A):
                    continue
                packed = socket.inet_pton(family, address)
                records.append(_encode(owner) + struct.pack("!HHIH", qtype, 1, name.ttl, len(packed)) + packed)
            break
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode | (flags & 0x0100), 1, len(records), 0, 0)
        return header + question + b"".join(records)

    def _serve_udp(self) -> None:
        while not self._stop:
            try:
                data, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            with self._lock:
                self.datagrams.append(data)
            reply = self.answer(data, "udp")
            if reply is not None:
                self.udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    size = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
                    reply = self.answer(conn.recv(size, socket.MSG_WAITALL), "tcp")
                    if reply is not None:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    pass

    def close(self) -> None:
        self._stop = True
        for sock in (self.udp, self.tcp):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
