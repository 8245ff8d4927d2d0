"""DNS policing: hostname rules follow DNS as the command sees it (README "Domains").

A UDP datagram to port 53 of a configured resolver (the `nameserver` lines
of the command's view of /etc/resolv.conf: the host's, or the --root
image's) is a DNS query.  It is read once into the supervisor's copy,
checked to be exactly one plain query (`parse_query`: header, one question,
at most an empty EDNS OPT record; nothing else can ride along) for a name
some rule allows (`NetRules.allows_name`), and sent on behalf with the name
in lower case (`fold_case`: the letters' case would carry a bit each); any other
datagram to the resolver is refused with EACCES and never leaves the
machine (the supervisor cannot answer NXDOMAIN: it cannot forge a datagram
with the resolver's source address, which resolvers check).

What the command learns is learned here too: after sending the query, the
worker that sent it (the bounded pool, _notif.Workers) peeks at the answers
arriving on the command's socket (MSG_PEEK with SO_PEEK_OFF, so A and AAAA
answers of one sendmmsg are both seen, the command still reads them), for at
most DNS_WAIT seconds, and records each address of an answer that matches a
query it sent (same id, name and type, from the resolver's address and port)
in `Learned`: ip -> {name: expiry}, for max(TTL, TTL_FLOOR) seconds, at most
LEARNED_MAX addresses (the oldest are forgotten).  /etc/hosts entries of the
command's view count as answers that never expire.  The network policy then
matches hostname rules on the names an address was learned for
(`Dns.names`).

A connect() of a UDP socket to a resolver's port 53 does not connect the
kernel socket (a later write() or send() is not trapped and would not be
policed): the peer is remembered (`Dns.set_peer`, bounded), getpeername reports
it, and sendmsg/sendmmsg without an address and glibc's send() (flags
MSG_NOSIGNAL, under 512 bytes: the filter traps that spelling only) are
policed and sent to it.  write() and any other send() on such a socket fail
with EDESTADDRREQ (fail closed: Go's pure resolver).

Module import makes no syscall.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import stat
import struct
import threading
import time
from collections import OrderedDict
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")

if TYPE_CHECKING:
    IP = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

DNS_PORT = 53
TTL_FLOOR = 60          # seconds an address learned from an answer stays allowed at least
TTL_CEILING = 86400     # ... and at most (a huge TTL does not pin an address for ever)
LEARNED_MAX = 4096      # addresses remembered (the oldest learned are forgotten first)
NAMES_PER_ADDRESS = 16  # names remembered per address (the oldest forgotten first)
PEERS_MAX = 1024        # UDP sockets "connected" to a resolver remembered (Dns.set_peer)
DNS_WAIT = 5.0          # seconds a worker waits for the answers to the queries it sent
FILE_MAX = 1 << 20      # bytes of /etc/resolv.conf or /etc/hosts read
A, CNAME, AAAA, OPT = 1, 5, 28, 41
CLASS_IN = 1
FLAG_QR, FLAG_RD, FLAG_AD, FLAG_CD = 0x8000, 0x0100, 0x0020, 0x0010
OPT_DO = 0x8000
SO_PEEK_OFF = 42
SOL_UDP, UDP_CORK = 17, 1
MSG_MORE, MSG_NOSIGNAL = 0x8000, 0x4000
MSG_PEEK, MSG_DONTWAIT = socket.MSG_PEEK, 0x40
_LABEL_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class Query(NamedTuple):
    id: int
    name: str     # lower case, no trailing dot
    type: int


def _read_name(data: bytes, offset: int, pointers: bool) -> Tuple[str, int]:
    """(name, offset after it) of a wire-format name; ValueError if it is not a plain
    hostname (labels of letters, digits, '-' and '_', compression only when `pointers`)."""
    labels: List[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if offset >= len(data):
            raise ValueError("truncated name")
        size = data[offset]
        if size == 0:
            offset += 1
            break
        if size & 0xC0 == 0xC0 and pointers:
            if offset + 1 >= len(data) or jumps >= 32:
                raise ValueError("bad compression pointer")
            if end < 0:
                end = offset + 2
            offset = ((size & 0x3F) << 8) | data[offset + 1]
            jumps += 1
            continue
        if size > 63 or offset + 1 + size > len(data):
            raise ValueError("bad label")
        label = data[offset + 1:offset + 1 + size]
        if not set(label) <= _LABEL_BYTES:
            raise ValueError("label is not a hostname label")
        total += size + 1
        if total > 255:
            raise ValueError("name too long")
        labels.append(label.decode("ascii").lower())
        offset += 1 + size
    return ".".join(labels), (end if end >= 0 else offset)


def parse_query(data: bytes) -> Optional[Query]:
    """The query of a datagram that is exactly one plain query, else None.

    Plain: QR 0, opcode QUERY, no flag but RD/AD/CD, one question of class IN,
    no answer or authority record, and at most one additional record, an EDNS
    OPT of the root name with no options and no flag but DO.  So nothing but the
    name, its type and the id can travel to the resolver.
    """
    if len(data) < 12 or len(data) > 512:
        return None
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data)
    if flags & ~(FLAG_RD | FLAG_AD | FLAG_CD) or qd != 1 or an or ns or ar > 1:
        return None
    try:
        name, offset = _read_name(data, 12, pointers=False)
    except ValueError:
        return None
    if offset + 4 > len(data) or not name:
        return None
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    offset += 4
    if qclass != CLASS_IN:
        return None
    if ar:
        if data[offset:offset + 3] != b"\0" + struct.pack("!H", OPT) or len(data) != offset + 11:
            return None
        _size, ext_rcode, version, opt_flags, rdlen = struct.unpack_from("!HBBHH", data, offset + 3)
        if ext_rcode or version or opt_flags & ~OPT_DO or rdlen:
            return None
    elif len(data) != offset:
        return None
    return Query(ident, name, qtype)


def fold_case(query: bytes) -> bytes:
    """A query parse_query accepted, with its question name in lower case: a name's labels
    hold only letters, digits, '-' and '_' and its length bytes are below 64, so
    lowering the name's bytes changes its letters only.  (Resolvers answer names
    case-insensitively; glibc, musl and Go match the answer without regard to case.)"""
    end = query.index(b"\0", 12)
    return query[:12] + query[12:end].lower() + query[end:]


class Answer(NamedTuple):
    query: Query
    addresses: Tuple[Tuple[IP, int], ...]   # (address, ttl) of the question's name, CNAMEs followed


def parse_answer(data: bytes) -> Optional[Answer]:
    """The addresses an answer gives for its question's name (following the CNAME
    chain inside the answer), or None if it is not a well-formed answer."""
    try:
        ident, flags, qd, an = struct.unpack_from("!HHHH", data)
        if not flags & FLAG_QR or qd != 1:
            return None
        qname, offset = _read_name(data, 12, pointers=True)
        qtype, _ = struct.unpack_from("!HH", data, offset)
        offset += 4
        records: List[Tuple[str, int, int, Any]] = []  # (owner, type, ttl, a name or an IP)
        for _ in range(min(an, 256)):
            owner, offset = _read_name(data, offset, pointers=True)
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, offset)
            offset += 10
            rdata = data[offset:offset + rdlen]
            if len(rdata) != rdlen:
                return None
            if rclass == CLASS_IN and rtype == CNAME:
                records.append((owner, rtype, ttl, _read_name(data, offset, pointers=True)[0]))
            elif rclass == CLASS_IN and (rtype, rdlen) in ((A, 4), (AAAA, 16)):
                records.append((owner, rtype, ttl, ipaddress.ip_address(rdata)))
            offset += rdlen
    except (ValueError, struct.error, IndexError):
        return None
    names, found = {qname}, []
    for _ in range(8):  # CNAME chains are short; a loop ends here
        more = {r[3] for r in records if r[1] == CNAME and r[0] in names} - names
        if not more:
            break
        names |= more
    for owner, rtype, ttl, value in records:
        if rtype in (A, AAAA) and owner in names:
            found.append((value, ttl))
    return Answer(Query(ident, qname, qtype), tuple(found))


def polices(rules) -> bool:  # type: ignore[no-untyped-def]
    """Are DNS queries policed under `rules` (some rule could match a name, and not
    everything is allowed: --net-deny)?"""
    return not rules.deny_mode and any(rule.network is None for rule in rules.allow)


def unmap(ip: IP) -> IP:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Learned:
    """ip -> {name: expiry (monotonic seconds, None = for ever)}: bounded, thread-safe."""

    def __init__(self, limit: int = LEARNED_MAX) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._table: "OrderedDict[IP, OrderedDict[str, Optional[float]]]" = OrderedDict()
        self._pinned: Dict[IP, FrozenSet[str]] = {}

    def pin(self, ip: IP, name: str) -> None:
        """An /etc/hosts entry: never expires, never evicted (bounded by FILE_MAX)."""
        ip = unmap(ip)
        self._pinned[ip] = self._pinned.get(ip, frozenset()) | {name}

    def learn(self, ip: IP, name: str, ttl: int) -> None:
        ip = unmap(ip)
        expiry = time.monotonic() + min(max(ttl, TTL_FLOOR), TTL_CEILING)
        with self._lock:
            names = self._table.pop(ip, None)
            if names is None:
                names = OrderedDict()
                while len(self._table) >= self._limit:
                    self._table.popitem(last=False)
            names.pop(name, None)
            names[name] = expiry
            while len(names) > NAMES_PER_ADDRESS:
                names.popitem(last=False)
            self._table[ip] = names

    def names(self, ip: IP) -> Tuple[str, ...]:
        ip = unmap(ip)
        pinned = self._pinned.get(ip, frozenset())
        now = time.monotonic()
        with self._lock:
            names = self._table.get(ip)
            if names is None:
                return tuple(pinned)
            live = [n for n, expiry in names.items() if expiry is None or expiry > now]
            if not live:
                del self._table[ip]
            elif len(live) < len(names):
                for name in [n for n in names if n not in live]:
                    del names[name]
        return tuple(pinned.union(live))

    def __len__(self) -> int:
        with self._lock:
            return len(self._table)


def nameservers(resolv_conf: Optional[bytes]) -> FrozenSet[IP]:
    """The resolvers of a resolv.conf (none listed: the local one, as glibc and musl use)."""
    found = set()
    for line in (resolv_conf or b"").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == b"nameserver":
            try:
                found.add(unmap(ipaddress.ip_address(fields[1].split(b"%")[0].decode("ascii"))))
            except (ValueError, UnicodeDecodeError):
                continue
    return frozenset(found) or frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})


def hosts_entries(hosts: Optional[bytes]) -> List[Tuple[IP, str]]:
    """(address, lower-case name) of every name of an /etc/hosts file."""
    out = []
    for line in (hosts or b"").splitlines():
        fields = line.split(b"#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            ip = ipaddress.ip_address(fields[0].split(b"%")[0].decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            continue
        for name in fields[1:]:
            if set(name) <= _LABEL_BYTES | {ord(".")}:
                out.append((ip, name.decode("ascii").lower().rstrip(".")))
    return out


def read_host_file(path: str) -> Optional[bytes]:
    """A host configuration file, read bounded and non-blocking (None if not a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > FILE_MAX:
            return None
        return os.read(fd, FILE_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)


class Dns:
    """One run's DNS state: its resolvers, what it learned, its virtual resolver peers."""

    def __init__(self, rules, resolv_conf: Optional[bytes], hosts: Optional[bytes]) -> None:  # type: ignore[no-untyped-def]
        self.rules = rules
        self.resolvers = nameservers(resolv_conf)
        self.learned = Learned()
        for ip, name in hosts_entries(hosts):
            if rules.allows_name(name):
                self.learned.pin(ip, name)
        self._peers: "OrderedDict[Tuple[int, int], bytes]" = OrderedDict()
        self._peers_lock = threading.Lock()
        self._peeking: Dict[Tuple[int, int], list] = {}  # socket -> [lock, users]: one peeks at a time
        self._peeking_lock = threading.Lock()

    def names(self, ip: IP) -> Tuple[str, ...]:
        return self.learned.names(ip)

    # -- the resolver a UDP socket was "connected" to -----------------------------------

    def peer(self, sock: socket.socket) -> Optional[bytes]:
        key = _key(sock)
        with self._peers_lock:
            return self._peers.get(key)

    def set_peer(self, sock: socket.socket, address: Optional[bytes]) -> None:
        key = _key(sock)
        with self._peers_lock:
            self._peers.pop(key, None)
            if address is not None:
                while len(self._peers) >= PEERS_MAX:
                    self._peers.popitem(last=False)
                self._peers[key] = address

    def has_peers(self) -> bool:
        return bool(self._peers)

    def is_resolver(self, ip: IP, port: int) -> bool:
        return port == DNS_PORT and unmap(ip) in self.resolvers

    # -- answers ------------------------------------------------------------------------

    def learn_answers(self, sock: socket.socket, resolver: Tuple[IP, int], queries: Iterable[Query],
                      wait: float = DNS_WAIT) -> None:
        """Peek at the answers to `queries` arriving on the command's socket and learn their
        addresses; give up after `wait` seconds.  One worker peeks at a socket at a time
        (SO_PEEK_OFF is the socket's), the command's own setting is put back."""
        pending = {(q.id, q.name, q.type) for q in queries}
        deadline = time.monotonic() + wait
        key = _key(sock)
        with self._peeking_lock:
            entry = self._peeking.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        lock = entry[0]
        try:
            if lock.acquire(timeout=wait):
                try:
                    self._peek_answers(sock, resolver, pending, deadline)
                finally:
                    lock.release()
        finally:
            with self._peeking_lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._peeking[key]

    def _peek_answers(self, sock: socket.socket, resolver: Tuple[IP, int], pending: set,
                      deadline: float) -> None:
        try:
            saved = sock.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF)
            sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
            try:
                self._peek(sock, resolver, pending, deadline)
            finally:
                sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, saved)
        except OSError:
            return  # not learned: connects to its addresses are refused (fail closed)

    def _peek(self, sock: socket.socket, resolver: Tuple[IP, int], pending: set, deadline: float) -> None:
        pause, seen = 0.0001, 0
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while pending and time.monotonic() < deadline:
            try:
                data, source = sock.recvfrom(65535, MSG_PEEK | MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                left = max(deadline - time.monotonic(), 0)
                if not seen:  # nothing queued yet: poll sleeps until something is
                    poller.poll(left * 1000)
                else:  # the queue holds datagrams already peeked: poll would not sleep
                    time.sleep(min(pause, left))
                    pause = min(pause * 2, 0.02)
                continue
            seen += 1
            pause = 0.0001
            try:
                origin = (unmap(ipaddress.ip_address(source[0].split("%")[0])), source[1])
            except (ValueError, IndexError, TypeError):
                continue
            if origin != resolver:
                continue
            answer = parse_answer(data)
            if answer is None or tuple(answer.query) not in pending:
                continue
            pending.discard(tuple(answer.query))
            for ip, ttl in answer.addresses:
                self.learned.learn(ip, answer.query.name, ttl)


def _key(sock: socket.socket) -> Tuple[int, int]:
    st = os.fstat(sock.fileno())
    return st.st_dev, st.st_ino
