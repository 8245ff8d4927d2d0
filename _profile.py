"""Profiles: a sandlock command line kept in a sectioned TOML file (README "Profiles").

Each section of a profile is a group of `--help` (`[filesystem]`, `[network]`,
`[limits]`, `[workdir]`, `[environment]`, `[machine]`, `[other]`), each key the
long name of one option of that group without its dashes (`fs-read`,
`max-memory`, `clean-env`).  The table of keys is derived from the argparse
parser the CLI builds (schema()), so an option added to the parser is a key
at once; an option that has no place in a profile is named in CLI_ONLY, and
tests/test_profiles.py fails for an option that is neither.

A profile becomes command-line tokens put BEFORE the user's own (argv()), so
the CLI's parser gives a profile the meaning of the flags it stands for: a
flag that takes one value overrides the profile's, a repeatable flag adds to
the profile's list, a switch can only be turned on.

TOML comes from tomllib where the standard library has it (3.11+); older
Pythons read the subset profiles use (parse_subset(): tables, strings,
integers, floats, booleans, arrays of strings and integers, comments), with
line numbers in its errors.  Every error is a PolicyError of one line naming
the file, the line and the key.  Loading reads files and nothing else.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from ._errors import PolicyError

# argparse destinations that are not a setting of a run and have no key.
CLI_ONLY = frozenset({"help", "version", "check", "json", "dump_filter", "command",
                      "profile", "profile_file", "print_profile", "result_json", "status_fd"})
# A section is the first word of its --help group's title, but for these.
SECTION_OF_GROUP = {"copy-on-write": "workdir", "resources": "limits"}
TOP_KEYS = ("extends", "description")
MAX_BYTES = 1 << 20  # a profile is a few lines: a larger file is an error, not a read without end
MAX_DEPTH = 16       # extends chains
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class Option(NamedTuple):
    """One profile key: where it lives and which flag it stands for."""
    section: str
    key: str
    flag: str           # the long option string, --fs-read
    kind: str           # "switch" (store_true), "value" (takes one), "list" (repeatable)
    path: bool          # its values are paths (metavar PATH or DIR): ~ is expanded
    action: argparse.Action


class Entry(NamedTuple):
    value: Any          # True for a switch, a str for a value, a list of str for a list
    where: str          # FILE:LINE that set it (the last one)


class Profile(NamedTuple):
    name: str
    path: str
    description: str
    entries: Dict[str, Entry]   # by key, in the order they were set


def _kind(action: argparse.Action) -> Optional[str]:
    if isinstance(action, argparse._StoreTrueAction):
        return "switch"
    if isinstance(action, argparse._AppendAction) and action.nargs is None:
        return "list"
    if type(action) is argparse._StoreAction and action.nargs is None:
        return "value"
    return None


def options(parser: argparse.ArgumentParser) -> Iterator[Tuple[argparse.Action, Optional[Option]]]:
    """Every action of the parser, with its profile key (None: no key, or a kind profiles cannot express)."""
    for group in parser._action_groups:
        title = (group.title or "").split(" ")[0].lower()
        for action in group._group_actions:
            if action.dest in CLI_ONLY:
                yield action, None
                continue
            longs = [s for s in action.option_strings if s.startswith("--")]
            kind = _kind(action)
            if not longs or kind is None or not title or title in ("options", "optional", "positional"):
                yield action, None
                continue
            section = SECTION_OF_GROUP.get(title, title)
            yield action, Option(section, longs[0][2:], longs[0], kind, action.metavar in ("PATH", "DIR"), action)


def schema(parser: argparse.ArgumentParser) -> Dict[str, Option]:
    """The profile keys of this parser, by key, in --help order."""
    return {opt.key: opt for _, opt in options(parser) if opt is not None}


# --- where profiles live -----------------------------------------------------------------------

def directory(environ: Mapping[str, str] = os.environ) -> str:
    """$XDG_CONFIG_HOME/sandlock/profiles (an absolute XDG_CONFIG_HOME only, as the
    XDG spec says), else ~/.config/sandlock/profiles."""
    base = environ.get("XDG_CONFIG_HOME", "")
    if not base.startswith("/"):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "sandlock", "profiles")


def is_path(spec: str) -> bool:
    """A spec with a slash or ending in .toml is a file; anything else is a profile name."""
    return "/" in spec or spec.endswith(".toml")


def path_of(name: str, environ: Mapping[str, str] = os.environ) -> str:
    if not NAME_RE.fullmatch(name):
        raise PolicyError(f"{name!r}: invalid profile name (letters, digits, '_', '.', '-'; "
                          f"a file is named with a slash: ./{name})")
    return os.path.join(directory(environ), name + ".toml")


def names(environ: Mapping[str, str] = os.environ) -> List[str]:
    """The profiles of the user's directory, sorted."""
    try:
        files = os.listdir(directory(environ))
    except FileNotFoundError:
        return []
    return sorted(f[:-5] for f in files if f.endswith(".toml") and NAME_RE.fullmatch(f[:-5]))


# --- loading ------------------------------------------------------------------------------------

def load(spec: str, parser: argparse.ArgumentParser, *, by_path: Optional[bool] = None,
         environ: Mapping[str, str] = os.environ) -> Profile:
    """The profile NAME (the user's directory) or FILE, with what it extends merged in."""
    if by_path is None:
        by_path = is_path(spec)
    path = os.path.abspath(os.path.expanduser(spec)) if by_path else path_of(spec, environ)
    return _load(path, spec if not by_path else path, schema(parser), parser, environ, ())


def _load(path: str, name: str, keys: Dict[str, Option], parser: argparse.ArgumentParser,
          environ: Mapping[str, str], chain: Tuple[str, ...]) -> Profile:
    real = os.path.realpath(path)
    if real in chain:
        raise PolicyError(f"{path}: extends form a cycle: {' -> '.join(chain + (real,))}")
    if len(chain) >= MAX_DEPTH:
        raise PolicyError(f"{path}: extends more than {MAX_DEPTH} profiles deep")
    doc, lines = parse(_read(path, name), path)
    extends, description = _top(doc, lines, path)
    own = _entries(doc, lines, path, keys, parser)
    if extends is None:
        return Profile(name, path, description, own)
    where = f"{path}:{lines.get((None, 'extends'), 1)}"
    if is_path(extends):
        parent_path = os.path.normpath(os.path.join(os.path.dirname(path), os.path.expanduser(extends)))
    else:
        try:
            parent_path = path_of(extends, environ)
        except PolicyError as exc:
            raise PolicyError(f"{where}: extends: {exc}") from None
    parent = _load(parent_path, extends, keys, parser, environ, chain + (real,))
    return Profile(name, path, description or parent.description, merge(parent.entries, own, keys))


def merge(base: Dict[str, Entry], top: Dict[str, Entry], keys: Dict[str, Option]) -> Dict[str, Entry]:
    """top over base: a list adds to base's, anything else replaces it."""
    out = dict(base)
    for key, entry in top.items():
        if keys[key].kind == "list" and key in out:
            out[key] = Entry(out[key].value + entry.value, entry.where)
        else:
            out[key] = entry
    return out


def _read(path: str, name: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise PolicyError(f"{name}: no such profile ({path})" if name != path
                          else f"{path}: No such file or directory") from None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise PolicyError(f"{path}: not a regular file")
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise PolicyError(f"{path}: larger than {MAX_BYTES} bytes: not a profile")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise PolicyError(f"{path}:{line}: not UTF-8 (TOML files are)") from None


def _top(doc: Dict[str, Any], lines: Dict[Tuple[Optional[str], str], int], path: str) -> Tuple[Optional[str], str]:
    values = {}
    for key in TOP_KEYS:
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            raise PolicyError(f"{path}:{lines.get((None, key), 1)}: {key}: expected a string, got {_toml_type(value)}")
        values[key] = value
    return values["extends"], values["description"] or ""


def _entries(doc: Dict[str, Any], lines: Dict[Tuple[Optional[str], str], int], path: str,
             keys: Dict[str, Option], parser: argparse.ArgumentParser) -> Dict[str, Entry]:
    sections = {opt.section for opt in keys.values()}
    out: Dict[str, Entry] = {}
    for section, table in doc.items():
        if section in TOP_KEYS:
            continue
        line = lines.get((None, section), 1)
        if not isinstance(table, dict):
            hint = f"; it belongs in [{keys[section].section}]" if section in keys else ""
            raise PolicyError(f"{path}:{line}: {section}: unknown key at the top (a profile has "
                              f"{', '.join(TOP_KEYS)} and sections{hint})")
        if section not in sections:
            raise PolicyError(f"{path}:{line}: [{section}]: unknown section (sections: "
                              f"{', '.join(sorted(sections))})")
        for key, value in table.items():
            where = f"{path}:{lines.get((section, key), line)}"
            opt = keys.get(key) or keys.get(key.replace("_", "-"))
            if opt is None or opt.section != section or opt.key != key:
                raise PolicyError(f"{where}: {key}: {_unknown(section, key, opt)}")
            out[key] = Entry(_value(opt, value, where, parser), where)
    return out


def _unknown(section: str, key: str, opt: Optional[Option]) -> str:
    if opt is None:
        return f"unknown key in [{section}]"
    if opt.key != key:
        return f"unknown key in [{section}] (did you mean {opt.key}?)"
    return f"unknown key in [{section}] (it belongs in [{opt.section}])"


def _value(opt: Option, value: Any, where: str, parser: argparse.ArgumentParser) -> Any:
    """The value as the flag would take it, checked by the CLI's own parser."""
    if opt.kind == "switch":
        if not isinstance(value, bool):
            raise PolicyError(f"{where}: {opt.key}: expected true or false, got {_toml_type(value)}")
        return value
    if opt.kind == "list":
        if not isinstance(value, list):
            raise PolicyError(f"{where}: {opt.key}: expected an array (it adds to {opt.flag}), "
                              f"got {_toml_type(value)}")
        items = [_scalar(opt, item, where) for item in value]
    else:
        items = [_scalar(opt, value, where)]
    for item in items:
        try:
            parser.parse_args([f"{opt.flag}={item}"])
        except Exception as exc:  # the parser's usage error: choices, a type
            message = str(exc)
            message = message.split(": ", 1)[1] if message.startswith("argument ") else message
            raise PolicyError(f"{where}: {opt.key}: {message}") from None
    return items if opt.kind == "list" else items[0]


def _scalar(opt: Option, value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PolicyError(f"{where}: {opt.key}: expected a string or a number, got {_toml_type(value)}")
    text = str(value)
    if opt.path and (text == "~" or text.startswith("~/")):
        text = os.path.expanduser(text)
    return text


def _toml_type(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (str, "a string"), (int, "an integer"), (float, "a float"),
                       (list, "an array"), (dict, "a table")):
        if isinstance(value, kind):
            return name
    return "a date or time"


def argv(profile: Profile, keys: Dict[str, Option]) -> List[str]:
    """The profile as command-line tokens (put before the user's own)."""
    out: List[str] = []
    for key, entry in profile.entries.items():
        opt = keys[key]
        if opt.kind == "switch":
            out += [opt.flag] if entry.value else []
        else:
            out += [f"{opt.flag}={item}" for item in (entry.value if opt.kind == "list" else [entry.value])]
    return out


# --- writing ------------------------------------------------------------------------------------

def from_namespace(ns: argparse.Namespace, keys: Dict[str, Option]) -> Dict[str, Any]:
    """The settings of parsed arguments that differ from the defaults, by key."""
    out: Dict[str, Any] = {}
    for key, opt in keys.items():
        value = getattr(ns, opt.action.dest)
        if value != opt.action.default and value not in (None, False, []):
            out[key] = value
    return out


def dump(values: Mapping[str, Any], keys: Dict[str, Option], description: str = "") -> str:
    """values (by key) as a profile, sections and keys in --help order."""
    lines: List[str] = []
    if description:
        lines.append(f"description = {_toml_value(description)}")
    section = None
    for key, opt in keys.items():
        if key not in values:
            continue
        if opt.section != section:
            lines += ([""] if lines else []) + [f"[{opt.section}]"]
            section = opt.section
        lines.append(f"{key} = {_toml_value(values[key])}")
    return "\n".join(lines) + "\n" if lines else ""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"0|[1-9][0-9]{0,17}", text):
        return text
    return _toml_string(text)


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0xD800 <= code <= 0xDFFF:
            raise PolicyError(f"{text.encode('utf-8', 'surrogateescape')!r}: not UTF-8: a profile cannot hold it")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out) + '"'


# --- TOML ---------------------------------------------------------------------------------------

Lines = Dict[Tuple[Optional[str], str], int]


def parse(text: str, path: str) -> Tuple[Dict[str, Any], Lines]:
    """The document and the line of each key ((None, key) at the top, (section, key) in one)."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the subset profiles use
        return parse_subset(text, path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if match:
            message = f"{match.group(1)}: {message[:match.start()]} (column {match.group(2)})"
        else:
            last = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
            message = f"{max(last, 1)}: {message.replace(' (at end of document)', '')} (at the end of the file)"
        raise PolicyError(f"{path}:{message}") from None
    return doc, key_lines(text)


_HEADER = re.compile(r"\s*\[\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*\]")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*=")


def key_lines(text: str) -> Lines:
    """Where each table and key of a document is (the first line that names it),
    for messages about a document tomllib parsed."""
    out: Lines = {}
    section: Optional[str] = None
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            section = header.group(1).strip("\"'")
            out.setdefault((None, section), number)
            continue
        key = _KEY.match(line)
        if key:
            out.setdefault((section, key.group(1).strip("\"'")), number)
    return out


class _Subset:
    """A reader of the TOML that profiles use, for Pythons without tomllib."""

    _BARE = re.compile(r"[A-Za-z0-9_-]+")
    _INT = re.compile(r"[+-]?(?:0|[1-9](?:_?[0-9])*)")
    _FLOAT = re.compile(r"[+-]?(?:0|[1-9](?:_?[0-9])*)(?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?")
    _ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.pos = 0
        self.line = 1

    def fail(self, message: str) -> PolicyError:
        return PolicyError(f"{self.path}:{self.line}: {message}")

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def blank(self, newlines: bool = False) -> None:
        """Skip spaces and tabs, comments, and (newlines) line ends."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t":
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                end = len(self.text) if end < 0 else end
                comment = self.text[self.pos + 1:end].rstrip("\r")
                if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in comment):
                    raise self.fail("control character in a comment")
                self.pos = end
            elif newlines and (ch == "\n" or self.peek(2) == "\r\n"):
                self.pos += 1 if ch == "\n" else 2
                self.line += 1
            else:
                return

    def end_of_line(self) -> None:
        self.blank()
        if self.pos >= len(self.text):
            return
        if self.peek() == "\n" or self.peek(2) == "\r\n":
            self.pos += 1 if self.peek() == "\n" else 2
            self.line += 1
            return
        raise self.fail(f"expected the end of the line, found {self.peek()!r}")

    def key(self) -> str:
        ch = self.peek()
        if ch in "\"'":
            if self.peek(3) in ('"""', "'''"):
                raise self.fail("a multi-line string cannot be a key")
            return self.string()
        match = self._BARE.match(self.text, self.pos)
        if not match:
            raise self.fail(f"expected a key, found {ch!r}" if ch else "expected a key")
        self.pos = match.end()
        return match.group(0)

    def string(self) -> str:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            raise self.fail("multi-line strings are not read by this Python (3.11+ reads any TOML)")
        self.pos += 1
        out: List[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated string")
            ch = self.text[self.pos]
            self.pos += 1
            if ch == quote:
                return "".join(out)
            if ch == "\n" or (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
                raise self.fail("unterminated string" if ch in "\r\n" else "control character in a string")
            if ch == "\\" and quote == '"':
                out.append(self.escape())
            else:
                out.append(ch)

    def escape(self) -> str:
        ch = self.peek()
        self.pos += 1
        if ch in self._ESCAPES:
            return self._ESCAPES[ch]
        if ch in "uU":
            size = 4 if ch == "u" else 8
            digits = self.text[self.pos:self.pos + size]
            if len(digits) != size or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise self.fail(f"invalid escape \\{ch}{digits}")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise self.fail(f"invalid escape \\{ch}{digits}: not a Unicode scalar value")
            self.pos += size
            return chr(code)
        raise self.fail(f"invalid escape \\{ch}")

    def value(self) -> Any:
        ch = self.peek()
        if ch in "\"'":
            return self.string()
        if ch == "[":
            return self.array()
        for word, result in (("true", True), ("false", False)):
            if self.text.startswith(word, self.pos) and not self._BARE.match(self.text, self.pos + len(word)):
                self.pos += len(word)
                return result
        number = self._FLOAT.match(self.text, self.pos)
        if number and number.group(0) and not re.match(r"[A-Za-z0-9_:.+-]", self.text[number.end():number.end() + 1]):
            self.pos = number.end()
            raw = number.group(0).replace("_", "")
            return int(raw) if self._INT.fullmatch(number.group(0)) else float(raw)
        if ch == "{":
            raise self.fail("inline tables are not read by this Python (3.11+ reads any TOML)")
        raise self.fail("invalid value (profiles use strings, integers, floats, booleans and arrays of them)")

    def array(self) -> List[Any]:
        self.pos += 1
        start = self.line
        out: List[Any] = []
        while True:
            self.blank(newlines=True)
            if self.peek() == "]":
                self.pos += 1
                return out
            if self.pos >= len(self.text):
                raise PolicyError(f"{self.path}:{start}: unterminated array")
            item = self.value()
            if isinstance(item, list):
                raise self.fail("arrays of arrays are not read by this Python (3.11+ reads any TOML)")
            out.append(item)
            self.blank(newlines=True)
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                if not self.peek():
                    raise PolicyError(f"{self.path}:{start}: unterminated array")
                raise self.fail(f"expected ',' or ']' in an array, found {self.peek()!r}")

    def document(self) -> Tuple[Dict[str, Any], Lines]:
        doc: Dict[str, Any] = {}
        lines: Lines = {}
        table, section = doc, None
        while True:
            self.blank(newlines=True)
            if self.pos >= len(self.text):
                return doc, lines
            if self.peek() == "[":
                if self.peek(2) == "[[":
                    raise self.fail("arrays of tables are not read by this Python (3.11+ reads any TOML)")
                self.pos += 1
                self.blank()
                name = self.key()
                self.blank()
                if self.peek() == ".":
                    raise self.fail("dotted table names are not read by this Python (3.11+ reads any TOML)")
                if self.peek() != "]":
                    raise self.fail("expected ']' after the table name")
                self.pos += 1
                if name in doc:
                    raise self.fail(f"[{name}] defined twice" if isinstance(doc[name], dict)
                                    else f"{name}: already a key, cannot be a table")
                table, section = {}, name
                doc[name] = table
                lines[(None, name)] = self.line
                self.end_of_line()
                continue
            line = self.line
            name = self.key()
            self.blank()
            if self.peek() == ".":
                raise self.fail("dotted keys are not read by this Python (3.11+ reads any TOML)")
            if self.peek() != "=":
                raise self.fail(f"expected '=' after {name}")
            self.pos += 1
            self.blank()
            if self.pos >= len(self.text) or self.peek() in "\r\n":
                raise self.fail(f"{name}: a value is missing")
            if name in table:
                raise self.fail(f"{name}: defined twice")
            table[name] = self.value()
            lines[(section, name)] = line
            self.end_of_line()


def parse_subset(text: str, path: str) -> Tuple[Dict[str, Any], Lines]:
    """A document of the TOML subset profiles use: what tomllib.loads gives for it,
    and the line of each key.  PolicyError FILE:LINE: ... for anything else."""
    if "\r" in text.replace("\r\n", ""):
        line = text[:text.replace("\r\n", "  ").index("\r")].count("\n") + 1
        raise PolicyError(f"{path}:{line}: a carriage return alone is not a line end")
    return _Subset(text, path).document()
