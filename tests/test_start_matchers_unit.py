"""The matchers written by hand where sandlock's start path used `re` (README "Start-up":
`re` imports `enum`, a few milliseconds of every CLI start) give what the patterns gave.

Each is compared with its former pattern on the inputs that decide it (fixed ones and
strings drawn from a small alphabet of its own tokens: seeded, SANDLOCK_FUZZ_SEED as for
the other fuzz tests): /proc's magic links (which may be opened with magic links
allowed), the pid of a /proc path (a member's or ENOENT), hostname labels and
IP-like targets of the network policy, the names of sandlock's bases, mountinfo's escapes,
sizes (-m 512M) and syscall names of a policy; and in an emulated root, the /proc/PID/cwd
and root links it shows as virtual paths, and the character classes of a `#!` line.
"""

from __future__ import annotations

import random
import re

import pytest

from conftest import fuzz_seeds
from sandlock import _elf, _landlock, _netpolicy, _policy, _resolve, _rootfs, _scratch

MAGIC = re.compile(rb"^/proc/(\d+)/(?:task/\d+/)?(?:fd/\d+|cwd|exe|root|ns/[a-z_]+)(?:/|$)")
PROC_PID = re.compile(rb"^/proc/(\d+)(/.*)?$")
LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")
IP_LIKE = re.compile(r"[0-9.]+(/\d*)?")
BASE_NAME = re.compile(r"\.sandlock-[0-9]+(-.*)?\Z", re.S)
OCTAL = re.compile(rb"\\([0-7]{3})")
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
SYSCALL_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# the pattern had `$`, which also matched before a last newline: no name of /proc ends with
# one, and the matcher takes the path exactly (\Z)
ROOT_LINK = re.compile(rb"^/proc/(\d+)/(?:task/\d+/)?(cwd|root)\Z")
SHEBANG_CLASSES = ((rb"[ \t\0]", b" \t\0"), (rb"[ \t\n\0]", b" \t\n\0"), (rb"[\n\0]", b"\n\0"))

PROC_TOKENS = [b"/proc/", b"/proc", b"/", b"1", b"42", b"0", b"task/", b"task", b"fd/", b"fd", b"cwd", b"exe",
               b"root", b"ns/", b"net", b"mnt", b"_", b"\n", b"x", b"self", b"-", b"A", b"\xff", b"\xd9\xa3"]
FIXED_PROC = [b"/proc/1/cwd", b"/proc/1/cwd/", b"/proc/1/cwd/x", b"/proc/1/cwd\n", b"/proc/1/cwd\n\n",
              b"/proc/1/cwdx", b"/proc/12/task/13/fd/4", b"/proc/12/task/13/fd/4/", b"/proc/12/task/fd/4",
              b"/proc/12/task/13/status", b"/proc/12/fd/", b"/proc/12/fd/3x", b"/proc/12/ns/net", b"/proc/12/ns/",
              b"/proc/12/ns/NET", b"/proc/12/root/etc/passwd", b"/proc/self/cwd", b"/proc//cwd", b"/proc/12",
              b"/proc/12\n", b"/proc/12/", b"/proc/12/a\nb", b"/proc/12/a\n", b"/proc/", b"/proc", b"",
              b"/proc/\xd9\xa3/cwd", b"/proc/007/exe", b"/proc/1/exe\n/", b"/proc/1/task/2/task/3/cwd"]


def _strings(rng: random.Random, tokens, count: int, longest: int):
    for _ in range(count):
        yield tokens[0][:0].join(rng.choice(tokens) for _ in range(rng.randrange(longest + 1)))


def _magic_by_pattern(path: bytes):
    found = MAGIC.match(path)
    return (int(found.group(1)), found.end()) if found else None


def _pid_by_pattern(name: bytes):
    found = PROC_PID.match(name)
    return int(found.group(1)) if found else None


@pytest.mark.parametrize("seed", fuzz_seeds((1, 2)))
def test_the_proc_matchers_give_what_the_patterns_gave(seed: int) -> None:
    rng = random.Random(seed)
    parts = [[b"/proc/"], [b"1", b"42", b"", b"x"], [b"/"], [b"", b"task/7/", b"task/", b"task/7"],
             [b"fd/3", b"fd/", b"cwd", b"exe", b"root", b"ns/net", b"ns/", b"status"], [b"", b"/", b"\n", b"/x"]]
    shaped = [b"".join(rng.choice(part) for part in parts) + b"".join(_strings(rng, PROC_TOKENS, 1, 2))
              for _ in range(30000)]
    paths = FIXED_PROC + shaped + [b"/proc/" + p for p in _strings(rng, PROC_TOKENS, 40000, 8)] + \
        list(_strings(rng, PROC_TOKENS, 10000, 6))
    matched = 0
    for path in paths:
        assert _resolve._magic(path) == _magic_by_pattern(path), path
        assert _resolve._proc_pid(path) == _pid_by_pattern(path), path
        matched += _magic_by_pattern(path) is not None
    assert matched > 500  # the drawn paths reach the matching side too, not only the refusals


@pytest.mark.parametrize("seed", fuzz_seeds((1, 2)))
def test_the_network_policy_s_matchers_give_what_the_patterns_gave(seed: int) -> None:
    rng = random.Random(seed)
    tokens = ["a", "z", "0", "9", "_", "-", ".", "/", ":", "A", "\u0663", "x" * 30, "\n", " "]
    fixed = ["", "-", "a", "a-", "-a", "a-b", "x" * 63, "x" * 64, "1.2.3.4", "1.2.3.4/24", "1.2.3.4/", "::1",
             "10.0.0.0/\u0663", "example.com", "..", ".", "1.2.3.4\n"]
    for text in fixed + list(_strings(rng, tokens, 60000, 6)):
        assert _netpolicy._label(text) == bool(LABEL.match(text)), text
        want = bool(IP_LIKE.fullmatch(text)) or ":" in text or "/" in text
        assert _netpolicy._is_ip_like(text) == want, text


@pytest.mark.parametrize("seed", fuzz_seeds((1, 2)))
def test_the_names_of_bases_and_mountinfo_s_escapes_give_what_the_patterns_gave(seed: int) -> None:
    rng = random.Random(seed)
    tokens = [".sandlock-", ".sandlock", "-", "0", "9", "a", "\n", "\u0663", "."]
    for name in [".sandlock-0", ".sandlock-", ".sandlock-0-", ".sandlock-0-x\ny", ".sandlock-\u0663"] + \
            list(_strings(rng, tokens, 40000, 5)):
        assert _scratch._base_name(name) == bool(BASE_NAME.match(name)), name
    tokens_b = [b"\\", b"0", b"1", b"7", b"8", b"4", b"a", b"/", b" ", b"\\040"]
    for field in [rb"/mnt/a\040b\011c\012d\134e", b"\\", b"\\\\134", b"\\0", b"\\777"] + \
            list(_strings(rng, tokens_b, 40000, 8)):
        want = OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field)
        assert _landlock._unescape(field) == want, field


@pytest.mark.parametrize("seed", fuzz_seeds((1, 2)))
def test_sizes_and_syscall_names_of_a_policy_give_what_the_patterns_gave(seed: int) -> None:
    rng = random.Random(seed)
    tokens = ["1", "0", "64", ".", "5", " ", "\t", "\n", "\u00a0", "\u0663", "k", "K", "m", "G", "t", "T", "x",
              "i", "I", "\u0130", "\u0131", "\u212a", "b", "B", "-", "e"]
    fixed = ["512M", "1.5G", "64MiB", " 64 kib ", "1.", ".5", "1.5.5", "1 k b", "1ib", "1ki", "1 b", "\u0663K",
             "1\u212a", "2\u0131B", "1e3", "", " ", "1\n", "1 \n"]
    for text in fixed + list(_strings(rng, tokens, 80000, 7)):
        found = SIZE.match(text)
        want = (found.group(1), found.group(2).lower()) if found else None
        assert _policy._size_parts(text) == want, text
        if found:  # what parse_size makes of it, or its refusal, as before
            size = int(float(found.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[want[1]])
            if 0 < size <= _policy.SIZE_MAX:
                assert _policy.parse_size("max_memory", text) == size, text
    names = ["a", "_", "9", "z", "_a9", "A", "-", "\u0663", "read", "x" * 3]
    for text in ["", "9a", "a9", "_", "mount", "Mount", "a-b"] + list(_strings(rng, names, 20000, 4)):
        want_ok = bool(SYSCALL_NAME.fullmatch(text))
        try:
            _policy.make_policy(extra_deny_syscalls=[text])
            ok = True
        except _policy.PolicyError as exc:
            ok = "unknown syscall name" in str(exc)  # a name of the right shape the kernel lacks
        assert ok == want_ok, text


@pytest.mark.parametrize("seed", fuzz_seeds((1, 2)))
def test_a_root_s_proc_links_and_a_shebang_s_classes_give_what_the_patterns_gave(seed: int) -> None:
    rng = random.Random(seed)
    parts = [[b"/proc/"], [b"1", b"42", b"", b"x", b"\xd9\xa3"], [b"/"], [b"", b"task/7/", b"task/", b"task/7"],
             [b"cwd", b"root", b"exe", b"fd/3", b"cwdx"], [b"", b"/", b"\n", b"/x"]]
    shaped = [b"".join(rng.choice(part) for part in parts) for _ in range(20000)]
    paths = FIXED_PROC + shaped + [b"/proc/" + p for p in _strings(rng, PROC_TOKENS, 20000, 8)]
    matched = 0
    for path in paths:
        found = ROOT_LINK.match(path)
        assert _rootfs._proc_link(path) == ((int(found.group(1)), found.group(2)) if found else None), path
        matched += found is not None
    assert matched > 200  # the drawn paths reach the matching side too (~2% of them)
    heads = list(_strings(rng, [b"a", b"/bin/sh", b" ", b"\t", b"\0", b"\n", b"-x", b"\xff"], 20000, 6))
    for head in heads + [b"", b" ", b"\0", b"abc"]:
        for pattern, chars in SHEBANG_CLASSES:
            found = re.search(pattern, head)
            assert _elf._first_of(head, chars) == (found.start() if found else -1), (head, chars)
