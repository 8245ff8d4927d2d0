"""--dry-run lines with hostile names (README "Copy-on-write workdir", SECURITY.md "Dry-run lines").

The command chooses the names it creates: a name holding a newline, an escape
sequence or non-UTF-8 bytes must not forge a change line nor reach the
terminal raw.  The printed lines are parsed back with the quoting rules the
README states, and must give exactly the names the command made; the API's
Result.changes keeps the names as they are.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from conftest import SYSTEM_PATH, SYSTEM_PYTHON

# The names, as bytes (os.fsencode of what the API reports).
NAMES = [b"x\nD Makefile", b"esc\x1b[31mred\x1b]0;title\x07", b"tab\there", b"back\\slash", b'quo"te',
         b"bad-\xff\xfe-utf8", b" leading space", b"trailing space ", b"caf\xc3\xa9", b'"quoted"', b"plain-name",
         b"cr\rreturn", b"del\x7f"]
MAKE = ("import os, sys\nos.chdir(sys.argv[1])\n"
        "for name in {names!r}:\n    open(name, 'wb').close()\n")
ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def unquote(text: str) -> bytes:
    """The README's rule read backwards: a bare name, or "..." with C escapes and \\ooo."""
    if not text.startswith('"'):
        assert "\\" not in text and '"' not in text, text
        return text.encode("ascii")
    assert text.endswith('"') and len(text) >= 2, text
    out, body, i = bytearray(), text[1:-1], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            if body[i + 1] in ESCAPES:
                out.append(ESCAPES[body[i + 1]])
                i += 2
            else:
                assert re.fullmatch(r"[0-3][0-7][0-7]", body[i + 1:i + 4]), body[i:]
                out.append(int(body[i + 1:i + 4], 8))
                i += 4
        else:
            assert c != '"', text
            out.append(ord(c))
            i += 1
    return bytes(out)


def test_dry_run_quotes_names_so_none_forges_a_line_or_reaches_the_terminal_raw(who, scratch: Path) -> None:
    wd = who.make_dir(scratch / "wd")
    who.make_file(wd / "Makefile", "all:\n")
    r = who.run(["--workdir", str(wd), "-w", str(wd), "--dry-run", "--",
                 SYSTEM_PYTHON, "-c", MAKE.format(names=NAMES), str(wd)], text=False)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert os.listdir(wd) == ["Makefile"], "--dry-run changed the workdir"
    lines = r.stderr.decode("ascii").split("\n")  # every byte printable ASCII: decode would fail otherwise
    assert lines[-1] == "", r.stderr
    lines = [line for line in lines[:-1] if not line.startswith("sandlock: ")]
    assert all(re.fullmatch(r"[\x20-\x7e]*", line) for line in lines), r.stderr
    assert all(line.startswith("A ") for line in lines), f"a name forged a line:\n{r.stderr!r}"
    assert sorted(unquote(line[2:]) for line in lines) == sorted(NAMES), r.stderr
    assert "A plain-name" in lines and 'A "x\\nD Makefile"' in lines and 'A "caf\\303\\251"' in lines, lines


API = r"""
import json, os, sys
import sandlock
d = sys.argv[1]
r = sandlock.Sandbox(workdir=d, fs_writable=[d], dry_run=True).run([sys.argv[2], "-c", sys.argv[3], d])
print(json.dumps([r.exit_code, [os.fsencode(c).hex() for c in r.changes]]))
"""


def test_the_api_reports_the_names_as_they_are(who, scratch: Path) -> None:
    wd = who.make_dir(scratch / "wd")
    r = who.python(API, args=[str(wd), SYSTEM_PYTHON, MAKE.format(names=NAMES)], env={"PATH": SYSTEM_PATH})
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    status, changes = json.loads(r.stdout)
    assert status == 0
    assert sorted(bytes.fromhex(c) for c in changes) == sorted(b"A " + name for name in NAMES)
