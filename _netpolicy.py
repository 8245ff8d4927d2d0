"""The network policy: the grammar of --net-allow, --net-deny, --net-allow-bind,
--net-deny-bind (README "Network"), and the matcher the supervisor asks.

A destination spec is ``[tcp://|udp://|icmp://]TARGET[:PORT[,PORT...]]``:

- TARGET is ``*``, an IPv4 address, an IPv6 address in brackets, a CIDR
  (``10.0.0.0/8``, ``[2001:db8::]/32``), a hostname (``api.example.com``) or
  a wildcard hostname (``*.example.com``: strict subdomains only);
- PORT is a number, a range ``9000-9005`` or ``*``; no port means every port;
- no scheme means TCP and UDP; ``icmp://`` is never implied and takes no port.

A bind spec is ``[tcp://|udp://]PORTS`` (``8080,9000-9005``, ``*``).

Addresses are compared as the kernel reaches them: an IPv4-mapped IPv6
address (``::ffff:a.b.c.d``) is the IPv4 address, ``0.0.0.0`` and ``::``
(which connect(2) sends to the local host) are ``127.0.0.1`` and ``::1`` (``::``
may also reach 127.0.0.1: both must be allowed), and
the NAT64 well-known prefix ``64:ff9b::/96`` names the IPv4 address it embeds
as well (a rule about ``a.b.c.d`` is a rule about ``64:ff9b::a.b.c.d``).

Nothing here makes a syscall; the module is imported by the policy check.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from ._errors import PolicyError

if TYPE_CHECKING:
    import ipaddress
    IP = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
    Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
if TYPE_CHECKING:
    Ports = Optional[Tuple[Tuple[int, int], ...]]  # None: every port

PROTOS = ("tcp", "udp", "icmp")
_SCHEMES = {"tcp": frozenset({"tcp"}), "udp": frozenset({"udp"}), "icmp": frozenset({"icmp"})}
_DEFAULT = frozenset({"tcp", "udp"})
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
NAT64 = "64:ff9b::/96"
_IP: dict = {}


def _ip():  # type: ignore[no-untyped-def]
    """The ipaddress module and our constants, on first use (its import costs the CLI's
    start-up ~2 ms, and a run without network rules never needs it)."""
    if not _IP:
        import ipaddress
        _IP.update(mod=ipaddress, nat64=ipaddress.IPv6Network(NAT64),
                   mapped=ipaddress.IPv6Network("::ffff:0:0/96"),
                   loopback={ipaddress.IPv4Address("0.0.0.0"): ipaddress.IPv4Address("127.0.0.1"),
                             ipaddress.IPv6Address("::"): ipaddress.IPv6Address("::1")})
    return _IP


class Rule(NamedTuple):
    """One parsed destination spec.  Exactly one of network/host is set, or neither (``*``)."""
    spec: str
    protos: FrozenSet[str]
    network: Optional[Network]
    host: Optional[str]          # lower case, no trailing dot; with wildcard, the suffix
    wildcard: bool               # host is "*.suffix": strict subdomains of host
    ports: Ports

    def matches_target(self, ips: Sequence[IP], names: Sequence[str]) -> bool:
        if self.network is not None:
            return any(ip.version == self.network.version and ip in self.network for ip in ips)
        if self.host is not None:
            return any(name_matches(self.host, self.wildcard, name) for name in names)
        return True

    def matches_port(self, proto: str, port: int) -> bool:
        if proto == "icmp" or self.ports is None:
            return True
        return any(lo <= port <= hi for lo, hi in self.ports)


def name_matches(host: str, wildcard: bool, name: str) -> bool:
    """A rule's host (exact, or with wildcard its suffix) against a hostname."""
    name = name.lower().rstrip(".")
    return name.endswith("." + host) if wildcard else name == host


def warm() -> None:
    """Import what matching needs now: a confined supervisor may not read Python's library later."""
    _ip()


def ip_from_packed(packed: bytes) -> "IP":
    """The address of 4 or 16 bytes in network order."""
    return _ip()["mod"].ip_address(packed)


def unmap(ip: IP) -> IP:
    """An IPv4-mapped IPv6 address as the IPv4 address; anything else as given."""
    if ip.version == 6 and ip.ipv4_mapped is not None:  # type: ignore[union-attr]
        return ip.ipv4_mapped  # type: ignore[union-attr,return-value]
    return ip


def reached(ip: IP) -> Tuple[IP, ...]:
    """The addresses a connect or send to `ip` may reach: the unspecified address goes to
    the local host (``::`` to ``::1``, or to 127.0.0.1 on a socket bound to a v4-mapped
    address: tcp_v6_connect, udpv6_sendmsg)."""
    c = _ip()
    ip = unmap(ip)
    if ip.version == 6 and not int(ip):
        return c["loopback"][ip], c["loopback"][c["mod"].IPv4Address(0)]
    return (c["loopback"].get(ip, ip),)


def spellings(ip: IP) -> Tuple[IP, ...]:
    """The addresses a rule may name to mean the reached address `ip`: itself, and for the
    NAT64 well-known prefix the IPv4 address it embeds (see the module doc)."""
    c = _ip()
    if ip.version == 6 and ip in c["nat64"]:
        return ip, c["mod"].IPv4Address(int(ip) & 0xFFFFFFFF)
    return (ip,)


# --- parsing ------------------------------------------------------------------------------------

def _fail(label: str, spec: str, what: str) -> PolicyError:
    return PolicyError(f"{label} {spec!r}: {what}")


def parse_ports(label: str, spec: str, text: str, low: int = 1) -> Ports:
    """'*' -> None; '80,443,9000-9005' -> ((80, 80), (443, 443), (9000, 9005))."""
    if text == "*":
        return None
    out: List[Tuple[int, int]] = []
    for part in text.split(","):
        lo_text, dash, hi_text = part.partition("-")
        if not lo_text.isdigit() or (dash and not hi_text.isdigit()) or not lo_text.isascii() \
                or not hi_text.isascii():
            raise _fail(label, spec, f"bad port {part!r} (a number {low}-65535, a range like 9000-9005, or *)")
        lo, hi = int(lo_text), int(hi_text) if dash else int(lo_text)
        if not low <= lo <= 65535 or not low <= hi <= 65535:
            raise _fail(label, spec, f"port {part!r} out of range {low}-65535")
        if lo > hi:
            raise _fail(label, spec, f"port range {part!r} is backwards")
        out.append((lo, hi))
    return tuple(out)


def _split_scheme(label: str, spec: str, allowed: Sequence[str]) -> Tuple[FrozenSet[str], str]:
    scheme, sep, rest = spec.partition("://")
    if not sep:
        return _DEFAULT, spec
    scheme = scheme.lower()
    if scheme not in allowed:
        raise _fail(label, spec, f"unknown scheme {scheme + '://'!r} (use {', '.join(s + '://' for s in allowed)})")
    return _SCHEMES[scheme], rest


def _network(label: str, spec: str, text: str) -> Network:
    c = _ip()
    try:
        net = c["mod"].ip_network(text, strict=True)
    except ValueError as exc:
        raise _fail(label, spec, f"bad address {text!r} ({exc})") from None
    if net.version == 6 and net.prefixlen >= 96 and net.network_address in c["mapped"]:
        # a v4-mapped rule is a rule about the IPv4 addresses it maps
        first = c["mod"].IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        net = c["mod"].IPv4Network(f"{first}/{net.prefixlen - 96}")
    return net


def _target(label: str, spec: str, rest: str) -> Tuple[str, Optional[str]]:
    """(target, port text or None) of what follows the scheme."""
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise _fail(label, spec, "'[' without ']'")
        inside, after = rest[1:close], rest[close + 1:]
        if "/" in inside:  # [2001:db8::/32] as well as [2001:db8::]/32
            address, _, prefix = inside.partition("/")
            after = "/" + prefix + after
            inside = address
        if ":" not in inside:
            raise _fail(label, spec, f"{inside!r} in brackets is not an IPv6 address")
        prefix = ""
        if after.startswith("/"):
            prefix, colon, ports = after[1:].partition(":")
            prefix = "/" + prefix
            after = colon + ports
        if after and not after.startswith(":"):
            raise _fail(label, spec, f"unexpected {after!r} after ']'")
        return inside + prefix, (after[1:] if after else None)
    if rest.count(":") > 1:
        raise _fail(label, spec, "an IPv6 address goes in brackets: [2001:db8::1]:443")
    target, colon, ports = rest.partition(":")
    return target, (ports if colon else None)


def _is_ip_like(target: str) -> bool:
    """Digits and dots, or anything with ':' or '/' (what [0-9.]+(/\\d*)? with those gave:
    without re, README "Start-up"; tests/test_start_matchers_unit.py)."""
    return ":" in target or "/" in target or (target != "" and all(c in "0123456789." for c in target))


def _label(part: str) -> bool:
    """One label of a hostname: 1-63 of a-z, 0-9, '_' and '-', not starting or ending with '-'
    (what (?!-)[a-z0-9_-]{1,63}(?<!-)\\Z matched)."""
    return 0 < len(part) <= 63 and part[0] != "-" and part[-1] != "-" and all(c in _LABEL_CHARS for c in part)


def _hostname(label: str, spec: str, target: str) -> Tuple[str, bool]:
    name = target.lower()
    wildcard = name.startswith("*.")
    if wildcard:
        name = name[2:]
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_label(part) for part in labels) or not name.isascii():
        raise _fail(label, spec, f"{target!r} is not an IP address, a CIDR, a hostname, *.domain or *")
    if labels[-1].isdigit():
        raise _fail(label, spec, f"{target!r} is not a valid IP address or hostname")
    return name, wildcard


def parse_rule(label: str, spec: object, literal_only: bool = False) -> Rule:
    """One destination spec; PolicyError naming the flag, the spec and what is wrong."""
    if not isinstance(spec, str):
        raise PolicyError(f"{label}: expected a string like 'tcp://example.com:443', got {spec!r}")
    if not spec or spec != spec.strip() or any(c.isspace() or c == "\0" for c in spec):
        raise _fail(label, spec, "empty or contains spaces")
    protos, rest = _split_scheme(label, spec, PROTOS)
    target, port_text = _target(label, spec, rest)
    if not target:
        raise _fail(label, spec, "no target (an address, a CIDR, a hostname or *)")
    if "icmp" in protos and len(protos) == 1:
        if port_text is not None:
            raise _fail(label, spec, "icmp:// takes no port")
        ports: Ports = None
    else:
        ports = None if port_text is None else parse_ports(label, spec, port_text)
    network: Optional[Network] = None
    host: Optional[str] = None
    wildcard = False
    if target == "*":
        if literal_only:
            raise _fail(label, spec, "takes literal IP addresses or CIDRs only (not *)")
    elif _is_ip_like(target):
        network = _network(label, spec, target)
    else:
        if literal_only:
            raise _fail(label, spec, "takes literal IP addresses or CIDRs only, not hostnames")
        host, wildcard = _hostname(label, spec, target)
    return Rule(spec, protos, network, host, wildcard, ports)


def parse_bind(label: str, spec: object) -> Tuple[FrozenSet[str], Ports]:
    """A bind spec: ((protos), ports); port 0 is allowed (an ephemeral bind, README)."""
    if not isinstance(spec, str):
        raise PolicyError(f"{label}: expected a string like '8080,9000-9005', got {spec!r}")
    if not spec or any(c.isspace() or c == "\0" for c in spec):
        raise _fail(label, spec, "empty or contains spaces")
    protos, rest = _split_scheme(label, spec, ("tcp", "udp"))
    if not rest:
        raise _fail(label, spec, "no port (a number, a range like 9000-9005, or *)")
    return protos, parse_ports(label, spec, rest, low=0)


def validate(net_allow: Sequence[object], net_deny: Sequence[object], net_allow_bind: Sequence[object],
             net_deny_bind: Sequence[object], labels: dict) -> Tuple[Tuple[str, ...], ...]:
    """The four raw spec tuples, each spec checked (PolicyError before any fork)."""
    names = ("net_allow", "net_deny", "net_allow_bind", "net_deny_bind")
    out = []
    for name, value in zip(names, (net_allow, net_deny, net_allow_bind, net_deny_bind)):
        label = labels.get(name, name)
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, (list, tuple)):
            raise PolicyError(f"{label}: expected a list of specs, got {value!r}")
        for spec in value:
            if name == "net_allow":
                parse_rule(label, spec)
            elif name == "net_deny":
                parse_rule(label, spec, literal_only=True)
            else:
                parse_bind(label, spec)
        out.append(tuple(value))
    for allow, deny in ((0, 1), (2, 3)):
        if out[allow] and out[deny]:
            a, d = (labels.get(names[i], names[i]) for i in (allow, deny))
            raise PolicyError(f"{a} and {d} exclude each other: pass one")
    return tuple(out)


# --- the matcher --------------------------------------------------------------------------------

def network_allowed(policy: object) -> bool:
    """True iff the policy opens some network (net_allow or net_deny is non-empty)."""
    return bool(getattr(policy, "net_allow", ()) or getattr(policy, "net_deny", ()))


VERDICTS = 4096  # destinations whose verdict NetRules keeps (a few hundred KiB at most)


class NetRules:
    """The policy's network rules, parsed once; immutable, shared by threads."""

    __slots__ = ("allow", "deny", "bind_allow", "bind_deny", "hostname_rules", "_verdicts")
    allow: Tuple[Rule, ...]
    deny: Tuple[Rule, ...]
    bind_allow: Tuple[Tuple[FrozenSet[str], Ports], ...]
    bind_deny: Tuple[Tuple[FrozenSet[str], Ports], ...]
    hostname_rules: Tuple[Rule, ...]   # the allow rules that name a host
    _verdicts: Dict[Tuple[str, bytes, int], bool]  # (protocol, packed address, port) -> allowed

    def __init__(self, allow: Tuple[Rule, ...], deny: Tuple[Rule, ...],
                 bind_allow: Tuple[Tuple[FrozenSet[str], Ports], ...],
                 bind_deny: Tuple[Tuple[FrozenSet[str], Ports], ...]) -> None:
        for name, value in (("allow", allow), ("deny", deny), ("bind_allow", bind_allow),
                            ("bind_deny", bind_deny),
                            ("hostname_rules", tuple(r for r in allow if r.host is not None)),
                            ("_verdicts", {})):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("NetRules is immutable")

    @classmethod
    def from_policy(cls, policy: object) -> "NetRules":
        return cls(tuple(parse_rule("net_allow", s) for s in getattr(policy, "net_allow", ())),
                   tuple(parse_rule("net_deny", s, True) for s in getattr(policy, "net_deny", ())),
                   tuple(parse_bind("net_allow_bind", s) for s in getattr(policy, "net_allow_bind", ())),
                   tuple(parse_bind("net_deny_bind", s) for s in getattr(policy, "net_deny_bind", ())))

    @property
    def deny_mode(self) -> bool:
        return bool(self.deny)

    def any_network(self) -> bool:
        return bool(self.allow or self.deny)

    def may_use(self, proto: str) -> bool:
        """Could some destination of `proto` be allowed (decides socket() of UDP / ICMP)?"""
        if self.deny:
            return True
        if any(proto in rule.protos for rule in self.allow):
            return True
        # a hostname rule needs DNS, whose queries are policed (_dns)
        return proto == "udp" and (self._binds_udp() or bool(self.hostname_rules))

    def _binds_udp(self) -> bool:
        return any("udp" in protos for protos, _ in self.bind_allow) or bool(self.bind_deny)

    def allows(self, proto: str, ip: IP, port: int, names: Iterable[str] = ()) -> bool:
        """Is `proto` to ip:port allowed?  `names`: the hostnames ip was learned for."""
        if not self.allow and not self.deny:
            return False
        # every address the call may reach must be allowed (not denied), under any spelling
        targets = [spellings(one) for one in reached(ip)]
        if self.deny:
            # deny rules without a scheme cover ICMP too (denying more is the safe side)
            return not any((proto in rule.protos or rule.protos == _DEFAULT)
                           and rule.matches_port(proto, port) and rule.matches_target(ips, ())
                           for rule in self.deny for ips in targets)
        names = tuple(names) if self.hostname_rules else ()
        return all(any(proto in rule.protos and rule.matches_port(proto, port)
                       and rule.matches_target(ips, names) for rule in self.allow) for ips in targets)

    def allows_packed(self, proto: str, packed: bytes, port: int,
                      names_of: Callable[[IP], Iterable[str]] = lambda ip: ()) -> bool:
        """allows() for the address `packed` (4 or 16 bytes in network order, as the kernel
        will read it); names_of(ip): the hostnames ip was learned for, asked only when a
        hostname rule could decide.  Verdicts that hold whatever was learned are kept (at
        most VERDICTS, then forgotten at once): the rules never change, and learned names
        only ever add to what an allow list allows (a deny list names addresses only), so
        an allowed address stays allowed and, without hostname rules, a refused one stays
        refused.  This spares the per-call parsing into ipaddress objects and matching."""
        key = (proto, packed, port)
        verdict = self._verdicts.get(key)
        if verdict is not None:
            return verdict
        ip = unmap(ip_from_packed(packed))
        verdict = self.allows(proto, ip, port, ())
        if verdict or not self.hostname_rules:
            if len(self._verdicts) >= VERDICTS:
                self._verdicts.clear()
            self._verdicts[key] = verdict
            return verdict
        return self.allows(proto, ip, port, names_of(ip))

    def allows_name(self, name: str) -> bool:
        """Could some rule match the hostname `name` (or is every destination allowed)?"""
        if self.deny:
            return True
        return any(rule.network is None and (rule.host is None or name_matches(rule.host, rule.wildcard, name))
                   for rule in self.allow)

    def allows_bind(self, proto: str, port: int) -> bool:
        """May a `proto` socket be bound to (or listen on) `port`?  Port 0: an ephemeral port."""
        def hit(entries: Tuple[Tuple[FrozenSet[str], Ports], ...]) -> bool:
            return any(proto in protos and (ports is None or any(lo <= port <= hi for lo, hi in ports))
                       for protos, ports in entries)
        if self.bind_deny:
            return not hit(self.bind_deny)
        return hit(self.bind_allow)

    def describe(self) -> List[str]:
        """One line per rule, for --verbose."""
        out = [f"allow {r.spec}" for r in self.allow] + [f"deny {r.spec}" for r in self.deny]
        return out or ["no network (no --net-allow / --net-deny)"]
