"""_dns without a sandbox: what a query may carry, what an answer teaches, the bounds."""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading

import pytest

from sandlock import _dns
from sandlock import _netpolicy
from dnsserver import DnsServer, Name


def query(name: str, ident: int = 7, flags: int = 0x0100, qtype: int = 1, extra: bytes = b"", ar: int = 0) -> bytes:
    body = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, ar) + body + struct.pack("!HH", qtype, 1) + extra


OPT = b"\0" + struct.pack("!HHBBHH", 41, 1232, 0, 0, 0, 0)


def test_a_plain_query_is_read_as_its_id_lower_case_name_and_type() -> None:
    assert _dns.parse_query(query("API.Example.com", 9, qtype=28)) == _dns.Query(9, "api.example.com", 28)
    assert _dns.parse_query(query("a.example", ar=1, extra=OPT)) == _dns.Query(7, "a.example", 1)


def test_a_policed_query_is_sent_with_only_its_name_in_lower_case() -> None:
    sent = query("Z-Z.AbC_9.Example", 0x4142, qtype=28, ar=1, extra=OPT)
    folded = _dns.fold_case(sent)
    assert folded == query("z-z.abc_9.example", 0x4142, qtype=28, ar=1, extra=OPT)
    assert _dns.parse_query(folded) == _dns.parse_query(sent)


@pytest.mark.parametrize("datagram", [
    query("a.example", extra=b"secret"),                                  # bytes after the question
    query("a.example", ar=1, extra=OPT[:-2] + struct.pack("!H", 4) + b"data"),  # EDNS option data
    query("a.example", ar=1, extra=b"\0" + struct.pack("!HHIH", 16, 1, 0, 3) + b"\x02hi"),  # a TXT record
    query("a.example", flags=0x2800),                                     # opcode UPDATE
    query("a.example", flags=0x8100),                                     # a response
    query("a.example") [:-1],                                             # truncated
    b"\0\7\1\0\0\2\0\0\0\0\0\0" + b"\x01a\0\0\1\0\1" * 2,                  # two questions
    query("a\x00b.example"),                                              # not a hostname label
    query("a.b.example").replace(b"\x01a\x01b", b"\x03a.b"),            # a dot inside a label
])
def test_a_datagram_that_is_more_than_one_plain_query_is_refused(datagram: bytes) -> None:
    assert _dns.parse_query(datagram) is None


def answer_for(name: str, zone: dict, qtype: int = 1) -> bytes:
    server = DnsServer.__new__(DnsServer)
    server.zone, server.queries, server._lock = zone, [], threading.Lock()
    return server.answer(query(name, qtype=qtype), "udp")  # type: ignore[return-value]


def test_an_answer_gives_the_addresses_of_the_name_asked_through_its_cname_chain() -> None:
    zone = {"www.example": Name(cname="edge.cdn.example", ttl=30), "edge.cdn.example": Name(["192.0.2.7"], ttl=5)}
    got = _dns.parse_answer(answer_for("www.example", zone))
    assert got == _dns.Answer(_dns.Query(7, "www.example", 1), ((ipaddress.ip_address("192.0.2.7"), 5),))
    six = _dns.parse_answer(answer_for("v6.example", {"v6.example": Name(["2001:db8::1"])}, qtype=28))
    assert six is not None and six.addresses == ((ipaddress.ip_address("2001:db8::1"), 300),)
    assert _dns.parse_answer(answer_for("nowhere.example", zone)).addresses == ()  # type: ignore[union-attr]


def test_an_answer_record_for_a_name_off_the_chain_teaches_nothing() -> None:
    reply = answer_for("www.example", {"www.example": Name(["192.0.2.7"])})
    forged = reply.replace(b"\x03www\x07example\x00\x00\x01\x00\x01\x00", b"\x03evi\x07example\x00\x00\x01\x00\x01\x00")
    forged = forged[:12] + reply[12:29] + forged[29:]   # question kept, the record's owner changed
    assert _dns.parse_answer(forged).addresses == ()  # type: ignore[union-attr]


def test_a_learned_address_lasts_its_ttl_but_never_less_than_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(_dns.time, "monotonic", lambda: now[0])
    learned = _dns.Learned()
    ip = ipaddress.ip_address("192.0.2.1")
    learned.learn(ip, "short.example", 1)
    learned.learn(ipaddress.ip_address("::ffff:192.0.2.1"), "long.example", 600)  # v4-mapped: the same address
    now[0] += _dns.TTL_FLOOR - 1
    assert sorted(learned.names(ip)) == ["long.example", "short.example"]
    now[0] += 2
    assert learned.names(ip) == ("long.example",)
    now[0] += 600
    assert learned.names(ip) == ()


def test_the_learned_table_is_bounded_and_forgets_the_oldest_first() -> None:
    learned = _dns.Learned(limit=3)
    ips = [ipaddress.ip_address(f"192.0.2.{n}") for n in range(5)]
    for ip in ips:
        learned.learn(ip, "cdn.example", 300)
    assert len(learned) == 3
    assert [learned.names(ip) for ip in ips] == [(), ()] + [("cdn.example",)] * 3
    for n in range(_dns.NAMES_PER_ADDRESS + 5):
        learned.learn(ips[4], f"n{n}.example", 300)
    assert len(learned.names(ips[4])) == _dns.NAMES_PER_ADDRESS


def test_resolvers_and_hosts_are_read_as_the_resolver_libraries_read_them() -> None:
    conf = b"# c\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch x\n"
    assert _dns.nameservers(conf) == {ipaddress.ip_address("10.0.0.53"), ipaddress.ip_address("fe80::1")}
    assert _dns.nameservers(b"") == {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    hosts = b"127.0.0.1 localhost  # me\n192.0.2.5 API.example.test api\nnot-an-ip x\n"
    assert _dns.hosts_entries(hosts) == [(ipaddress.ip_address("127.0.0.1"), "localhost"),
                                         (ipaddress.ip_address("192.0.2.5"), "api.example.test"),
                                         (ipaddress.ip_address("192.0.2.5"), "api")]


def test_hosts_entries_are_kept_only_for_names_a_rule_allows() -> None:
    rules = _netpolicy.NetRules.from_policy(type("P", (), {"net_allow": ("api.example.test:443",)})())
    dns = _dns.Dns(rules, b"nameserver 10.0.0.53\n", b"192.0.2.5 api.example.test\n192.0.2.6 other.test\n")
    assert dns.names(ipaddress.ip_address("192.0.2.5")) == ("api.example.test",)
    assert dns.names(ipaddress.ip_address("192.0.2.6")) == ()
    assert dns.is_resolver(ipaddress.ip_address("10.0.0.53"), 53)
    assert not dns.is_resolver(ipaddress.ip_address("10.0.0.53"), 5353)


def test_answers_are_peeked_without_taking_them_from_the_socket() -> None:
    """Two answers queued (A and AAAA of one sendmmsg): both learned, both still there to read."""
    rules = _netpolicy.NetRules.from_policy(type("P", (), {"net_allow": ("*.example:443",)})())
    dns = _dns.Dns(rules, b"nameserver 127.0.0.1\n", None)
    zone = {"a.example": Name(["192.0.2.1", "2001:db8::1"])}
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    replies = [answer_for("a.example", zone, 1), answer_for("a.example", zone, 28)]
    for reply in replies:
        server.sendto(reply, client.getsockname())
    resolver = (ipaddress.ip_address("127.0.0.1"), server.getsockname()[1])
    dns.learn_answers(client, resolver, [_dns.Query(7, "a.example", 1), _dns.Query(7, "a.example", 28)], wait=2)
    assert dns.names(ipaddress.ip_address("192.0.2.1")) == ("a.example",)
    assert dns.names(ipaddress.ip_address("2001:db8::1")) == ("a.example",)
    assert client.getsockopt(socket.SOL_SOCKET, _dns.SO_PEEK_OFF) == -1
    assert [client.recv(512) for _ in replies] == replies
    for sock in (server, client):
        sock.close()
