"""The network grammar and matcher (_netpolicy; README "Network"), without running anything."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

import pytest

from sandlock import _netpolicy as NP
from sandlock._errors import PolicyError

import sandlock

ROOT = Path(__file__).resolve().parent.parent


def rules(**policy) -> NP.NetRules:
    return NP.NetRules.from_policy(sandlock.Sandbox(**policy).policy)


def allows(r: NP.NetRules, proto: str, ip: str, port: int, names=()) -> bool:
    return r.allows(proto, ip_address(ip), port, names)


def test_no_rule_allows_nothing():
    r = rules()
    assert not r.any_network()
    assert not NP.network_allowed(sandlock.Sandbox().policy)
    for proto in ("tcp", "udp", "icmp"):
        assert not allows(r, proto, "127.0.0.1", 80)
        assert not r.may_use(proto)
    assert not r.allows_bind("tcp", 8080) and not r.allows_bind("tcp", 0)


def test_an_address_without_scheme_or_port_allows_tcp_and_udp_to_every_port_but_not_icmp():
    r = rules(net_allow=["192.0.2.1"])
    assert NP.network_allowed(sandlock.Sandbox(net_allow=["192.0.2.1"]).policy)
    assert allows(r, "tcp", "192.0.2.1", 1) and allows(r, "udp", "192.0.2.1", 65535)
    assert not allows(r, "icmp", "192.0.2.1", 0)
    assert not allows(r, "tcp", "192.0.2.2", 1)
    assert r.may_use("udp") and not r.may_use("icmp")


def test_a_scheme_limits_the_protocol():
    r = rules(net_allow=["tcp://192.0.2.1:443"])
    assert allows(r, "tcp", "192.0.2.1", 443)
    assert not allows(r, "udp", "192.0.2.1", 443)
    assert not allows(r, "tcp", "192.0.2.1", 444)
    assert not r.may_use("udp")
    u = rules(net_allow=["UDP://192.0.2.1:53"])
    assert allows(u, "udp", "192.0.2.1", 53) and not allows(u, "tcp", "192.0.2.1", 53)


def test_icmp_needs_its_own_rule_and_takes_no_port():
    r = rules(net_allow=["icmp://192.0.2.0/24"])
    assert allows(r, "icmp", "192.0.2.9", 0) and allows(r, "icmp", "192.0.2.9", 1234)
    assert not allows(r, "tcp", "192.0.2.9", 80)
    assert r.may_use("icmp") and not r.may_use("udp")
    with pytest.raises(PolicyError, match="icmp:// takes no port"):
        rules(net_allow=["icmp://192.0.2.1:7"])


def test_port_lists_ranges_and_star():
    r = rules(net_allow=["192.0.2.1:80,443,9000-9005", "192.0.2.2:*"])
    for port, expected in ((80, True), (443, True), (9000, True), (9005, True), (9006, False), (81, False)):
        assert allows(r, "tcp", "192.0.2.1", port) is expected, port
    assert allows(r, "udp", "192.0.2.2", 7)


def test_cidrs_v4_and_v6_in_both_bracket_spellings():
    r = rules(net_allow=["10.0.0.0/8:22", "[2001:db8::]/32:443", "[2001:db9::/32]"])
    assert allows(r, "tcp", "10.255.0.1", 22) and not allows(r, "tcp", "11.0.0.1", 22)
    assert allows(r, "tcp", "2001:db8:1::5", 443) and not allows(r, "tcp", "2001:db8:1::5", 80)
    assert allows(r, "udp", "2001:db9::1", 5)


def test_ipv6_in_brackets_with_ports():
    r = rules(net_allow=["tcp://[::1]:8080"])
    assert allows(r, "tcp", "::1", 8080) and not allows(r, "tcp", "127.0.0.1", 8080)


def test_star_allows_every_address():
    r = rules(net_allow=["tcp://*:443"])
    assert allows(r, "tcp", "203.0.113.7", 443) and allows(r, "tcp", "2001:db8::1", 443)
    assert not allows(r, "tcp", "203.0.113.7", 80)
    assert r.allows_name("anything.example")


def test_v4_mapped_destinations_match_v4_rules_and_mapped_rules_are_v4_rules():
    r = rules(net_allow=["192.0.2.1:80"])
    assert allows(r, "tcp", "::ffff:192.0.2.1", 80)
    assert not allows(r, "tcp", "::ffff:192.0.2.2", 80)
    m = rules(net_allow=["[::ffff:192.0.2.0]/120"])
    assert allows(m, "tcp", "192.0.2.77", 80)


def test_nat64_spelling_is_the_embedded_v4_address_for_allow_and_deny():
    r = rules(net_allow=["192.0.2.1:80"])
    assert allows(r, "tcp", "64:ff9b::c000:201", 80)
    assert not allows(r, "tcp", "64:ff9b::c000:202", 80)
    d = rules(net_deny=["192.0.2.0/24"])
    assert not allows(d, "tcp", "64:ff9b::c000:201", 80)
    assert allows(d, "tcp", "64:ff9b::cb00:7101", 80)


def test_the_unspecified_address_is_the_loopback_it_reaches():
    d = rules(net_deny=["127.0.0.0/8", "[::1]"])
    assert not allows(d, "tcp", "0.0.0.0", 80) and not allows(d, "tcp", "::", 80)
    assert not allows(d, "tcp", "::ffff:0.0.0.0", 80)
    a = rules(net_allow=["127.0.0.1:80"])
    assert allows(a, "tcp", "0.0.0.0", 80)
    # "::" reaches ::1, or 127.0.0.1 from a socket bound to a v4-mapped address: both must be allowed
    assert not allows(a, "tcp", "::", 80)
    assert not allows(rules(net_allow=["[::1]:80"]), "tcp", "::", 80)
    assert allows(rules(net_allow=["[::1]:80", "127.0.0.1:80"]), "tcp", "::", 80)
    assert not allows(rules(net_deny=["127.0.0.1"]), "tcp", "::", 80)


def test_net_deny_allows_everything_else_and_a_schemeless_deny_covers_icmp():
    d = rules(net_deny=["10.0.0.0/8", "tcp://192.0.2.1:22"])
    assert not allows(d, "tcp", "10.1.2.3", 80) and not allows(d, "icmp", "10.1.2.3", 0)
    assert not allows(d, "tcp", "192.0.2.1", 22)
    assert allows(d, "tcp", "192.0.2.1", 23) and allows(d, "udp", "192.0.2.1", 22)
    assert allows(d, "icmp", "198.51.100.1", 0)
    assert d.may_use("udp") and d.may_use("icmp") and d.allows_name("example.com")


def test_hostname_rules_match_only_the_names_given():
    r = rules(net_allow=["api.example.com:443", "*.cdn.example:443"])
    assert len(r.hostname_rules) == 2
    assert not allows(r, "tcp", "192.0.2.1", 443)
    assert allows(r, "tcp", "192.0.2.1", 443, ["API.Example.com."])
    assert not allows(r, "tcp", "192.0.2.1", 80, ["api.example.com"])
    assert allows(r, "tcp", "192.0.2.1", 443, ["a.b.cdn.example"])
    assert not allows(r, "tcp", "192.0.2.1", 443, ["cdn.example"])     # strict subdomains
    assert not allows(r, "tcp", "192.0.2.1", 443, ["evilcdn.example"])
    assert r.allows_name("api.example.com") and r.allows_name("x.cdn.example")
    assert not r.allows_name("example.com") and not r.allows_name("cdn.example")
    assert rules(net_allow=["192.0.2.1"]).hostname_rules == ()


def test_bind_rules():
    r = rules(net_allow_bind=["8080,9000-9001"])
    assert r.allows_bind("tcp", 8080) and r.allows_bind("udp", 9001)
    assert not r.allows_bind("tcp", 22) and not r.allows_bind("tcp", 0)
    assert r.may_use("udp")
    assert rules(net_allow_bind=["*"]).allows_bind("tcp", 0)
    t = rules(net_allow_bind=["tcp://8080"])
    assert t.allows_bind("tcp", 8080) and not t.allows_bind("udp", 8080) and not t.may_use("udp")
    d = rules(net_deny_bind=["22"])
    assert d.allows_bind("tcp", 8080) and d.allows_bind("tcp", 0) and not d.allows_bind("udp", 22)


def test_rules_are_immutable():
    r = rules(net_allow=["192.0.2.1"])
    with pytest.raises(AttributeError):
        r.allow = ()  # type: ignore[misc]


@pytest.mark.parametrize("field, spec, message", [
    ("net_allow", "", "empty"),
    ("net_allow", "a b", "spaces"),
    ("net_allow", "ftp://example.com", "unknown scheme 'ftp://'"),
    ("net_allow", "example.com:0", "out of range 1-65535"),
    ("net_allow", "example.com:65536", "out of range"),
    ("net_allow", "example.com:x", "bad port 'x'"),
    ("net_allow", "example.com:9-8", "backwards"),
    ("net_allow", "example.com:", "bad port ''"),
    ("net_allow", "2001:db8::1", "IPv6 address goes in brackets"),
    ("net_allow", "[2001:db8::1", "'[' without ']'"),
    ("net_allow", "[192.0.2.1]:80", "not an IPv6 address"),
    ("net_allow", "[::1]x", "unexpected 'x'"),
    ("net_allow", "10.0.0.1/8", "host bits set"),
    ("net_allow", "300.1.1.1", "bad address"),
    ("net_allow", "1.2.3", "bad address"),
    ("net_allow", "exa_mple..com", "not an IP address"),
    ("net_allow", "a.*.example.com", "not an IP address"),
    ("net_allow", "-bad.example", "not an IP address"),
    ("net_allow", "tcp://:80", "no target"),
    ("net_allow", 42, "expected a string"),
    ("net_deny", "example.com", "literal IP addresses or CIDRs only"),
    ("net_deny", "*", "literal IP addresses or CIDRs only"),
    ("net_allow_bind", "http", "bad port 'http'"),
    ("net_allow_bind", "icmp://1", "unknown scheme 'icmp://'"),
    ("net_deny_bind", "70000", "out of range 0-65535"),
])
def test_a_bad_spec_is_a_policy_error_naming_the_spec(field, spec, message):
    with pytest.raises(PolicyError) as info:
        sandlock.Sandbox(**{field: [spec]})
    text = str(info.value)
    assert message in text and text.startswith(field) and "\n" not in text
    if isinstance(spec, str) and spec:
        assert repr(spec) in text


def test_allow_and_deny_exclude_each_other():
    with pytest.raises(PolicyError, match="net_allow and net_deny exclude each other"):
        sandlock.Sandbox(net_allow=["192.0.2.1"], net_deny=["10.0.0.0/8"])
    with pytest.raises(PolicyError, match="net_allow_bind and net_deny_bind exclude each other"):
        sandlock.Sandbox(net_allow_bind=["80"], net_deny_bind=["22"])


def test_a_single_string_is_one_spec():
    assert sandlock.Sandbox(net_allow="192.0.2.1:80").policy.net_allow == ("192.0.2.1:80",)


def test_the_cli_refuses_a_bad_spec_with_exit_125_and_one_line(tmp_path):
    marker = tmp_path / "ran"
    out = subprocess.run([sys.executable, str(ROOT / "sandlock.py"), "--net-allow", "tcp://[::1", "--",
                          "touch", str(marker)], capture_output=True, text=True)
    assert out.returncode == 125
    assert out.stderr == "sandlock: --net-allow 'tcp://[::1': '[' without ']'\n"
    assert not marker.exists()
    both = subprocess.run([sys.executable, str(ROOT / "sandlock.py"), "--net-allow", "192.0.2.1",
                           "--net-deny", "10.0.0.0/8", "--", "true"], capture_output=True, text=True)
    assert both.returncode == 125 and "--net-allow and --net-deny exclude each other" in both.stderr


# --- kept verdicts (NetRules.allows_packed, the per-connect path) ---------------------------------

def packed(ip: str) -> bytes:
    return ip_address(ip).packed


@pytest.mark.parametrize("policy", [
    dict(net_allow=["tcp://127.0.0.1:80,443", "udp://10.0.0.0/8:53", "[::1]:8080"]),
    dict(net_deny=["192.0.2.0/24", "127.0.0.2"]),
])
def test_a_kept_verdict_is_the_verdict_of_the_rules_every_time_it_is_asked(policy):
    r = rules(**policy)
    cases = [(proto, ip, port) for proto in ("tcp", "udp", "icmp")
             for ip in ("127.0.0.1", "127.0.0.2", "10.1.2.3", "192.0.2.7", "::1", "::ffff:127.0.0.1", "0.0.0.0")
             for port in (53, 80, 443, 8080)]
    for _ in range(3):  # first asked, then kept
        for proto, ip, port in cases:
            assert r.allows_packed(proto, packed(ip), port) == allows(r, proto, ip, port), (proto, ip, port)


def test_an_address_refused_before_its_name_was_learned_is_allowed_once_it_is():
    r = rules(net_allow=["tcp://api.example.com:443"])
    learned = {}
    names_of = lambda ip: learned.get(str(ip), ())  # noqa: E731
    assert not r.allows_packed("tcp", packed("192.0.2.10"), 443, names_of)
    learned["192.0.2.10"] = ("api.example.com",)
    assert r.allows_packed("tcp", packed("192.0.2.10"), 443, names_of)
    assert not r.allows_packed("tcp", packed("192.0.2.10"), 80, names_of)   # not a port of the rule
    learned.clear()  # the answer's lifetime is over: refused again
    assert not r.allows_packed("tcp", packed("192.0.2.10"), 443, names_of)


def test_the_kept_verdicts_are_bounded():
    r = rules(net_allow=["tcp://10.0.0.0/8"])
    for n in range(NP.VERDICTS + 500):
        assert r.allows_packed("tcp", (10 << 24 | n).to_bytes(4, "big"), 80)
        assert len(r._verdicts) <= NP.VERDICTS
    assert not r.allows_packed("tcp", packed("11.0.0.1"), 80)
