"""Profiles (README "Profiles"): every CLI option has a key, flags override a profile,
errors name the file, line and key, `extends` inherits, the TOML subset reader of
Python < 3.11 agrees with tomllib, and flags -> profile -> the same policy.

In-process tests build the CLI's parser (sandlock._parser) and never fork; the
integration tests at the end run `python -m sandlock` as root and as the
unprivileged user (the `who` fixture).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

import sandlock
from sandlock import _profile
from sandlock._errors import PolicyError

from clicase import one_line
from conftest import tree_snapshot

PARSER = sandlock._parser()
KEYS = _profile.schema(PARSER)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tokens_of(path: Path) -> List[str]:
    return _profile.argv(_profile.load(str(path), PARSER), KEYS)


def parse(args: List[str]) -> Any:
    return PARSER.parse_args(sandlock._joined_values(PARSER, args))


def sample(opt: _profile.Option) -> str:
    return str(opt.action.choices[0]) if opt.action.choices else "7"


# --- the table of keys is the parser's ---------------------------------------------------------

def test_every_cli_option_has_a_profile_key_or_is_named_cli_only() -> None:
    missing = [action.option_strings or action.dest for action, opt in _profile.options(PARSER)
               if opt is None and action.dest not in _profile.CLI_ONLY]
    assert missing == [], f"options a profile cannot express (give them a key or name them in CLI_ONLY): {missing}"


def test_cli_only_names_only_options_that_exist() -> None:
    dests = {action.dest for action in PARSER._actions}
    assert _profile.CLI_ONLY <= dests, _profile.CLI_ONLY - dests


def test_the_sections_are_the_help_groups_and_keys_are_the_long_flags() -> None:
    assert KEYS["fs-read"].section == "filesystem" and KEYS["fs-read"].flag == "--fs-read"
    assert KEYS["root"].flag == "--root"  # the first long spelling of --root/--chroot
    assert KEYS["max-memory"].section == "limits"
    assert KEYS["workdir"].section == "workdir" and KEYS["on-exit"].section == "workdir"
    assert KEYS["net-allow"].section == "network"
    assert KEYS["clean-env"].section == "environment"
    assert {opt.section for opt in KEYS.values()} >= {"filesystem", "network", "limits", "workdir", "environment"}


@pytest.mark.parametrize("key", sorted(KEYS))
def test_each_key_means_what_its_flag_means(key: str, tmp_path: Path) -> None:
    opt = KEYS[key]
    if opt.kind == "switch":
        text, flags = "true", [opt.flag]
    elif opt.kind == "list":
        text, flags = f'["{sample(opt)}", "8"]', [f"{opt.flag}={sample(opt)}", f"{opt.flag}=8"]
    else:
        text, flags = f'"{sample(opt)}"', [f"{opt.flag}={sample(opt)}"]
    path = write(tmp_path / "p.toml", f"[{opt.section}]\n{key} = {text}\n")
    assert vars(parse(tokens_of(path))) == vars(parse(flags))
    assert vars(parse(tokens_of(path))) != vars(parse([]))


# --- flags over a profile -------------------------------------------------------------------

def test_a_flag_replaces_a_profile_value_and_adds_to_a_profile_list(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", '[filesystem]\nfs-read = ["/usr"]\n[limits]\ntimeout = 10\n'
                                      'max-memory = "1G"\n[environment]\nclean-env = true\n')
    ns = parse(tokens_of(path) + ["-r", "/etc", "-t", "5", "--", "cmd"])
    assert ns.fs_read == ["/usr", "/etc"]
    assert (ns.timeout, ns.max_memory, ns.clean_env) == ("5", "1G", True)
    assert ns.command == ["--", "cmd"]


def test_a_profile_value_is_read_as_the_flag_reads_it_and_tilde_is_the_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path / "p.toml", '[filesystem]\nfs-write = ["~/out", "~"]\n'
                                      '[environment]\ncwd = "~x"\n[limits]\nmax-processes = 20\ntimeout = 1.5\n')
    ns = parse(tokens_of(path))
    assert ns.fs_write == [f"{tmp_path}/out", str(tmp_path)]
    assert (ns.max_processes, ns.timeout, ns.cwd) == ("20", "1.5", "~x")


# --- errors: file, line, key ------------------------------------------------------------------

ERRORS = [
    ('[filesystem]\nfs-read = ["/usr"]\nfs_write = ["/tmp"]\n', ":3: fs_write: unknown key in [filesystem] (did you mean fs-write?)"),
    ('[filesystem]\n\nmax-memory = "1G"\n', ":3: max-memory: unknown key in [filesystem] (it belongs in [limits])"),
    ('# x\n[files]\nx = 1\n', ":2: [files]: unknown section"),
    ('fs-read = ["/"]\n', ":1: fs-read: unknown key at the top"),
    ('[filesystem]\nfs-read = "/usr"\n', ":2: fs-read: expected an array (it adds to --fs-read), got a string"),
    ('[workdir]\non-exit = "maybe"\n', ":2: on-exit: invalid choice: 'maybe'"),
    ('[environment]\nclean-env = "yes"\n', ":2: clean-env: expected true or false, got a string"),
    ('[limits]\ntimeout = true\n', ":2: timeout: expected a string or a number, got a boolean"),
    ('extends = 3\n', ":1: extends: expected a string, got an integer"),
    ('[limits]\ntimeout = 1\ntimeout = 2\n', ":3: "),
    ('[limits]\ntimeout = [1\n', ":2: "),
]


@pytest.mark.parametrize("reader", ["tomllib", "subset"])
@pytest.mark.parametrize("text,expected", ERRORS)
def test_a_bad_profile_is_one_policy_error_naming_file_line_and_key(text: str, expected: str, reader: str,
                                                                    tmp_path: Path, monkeypatch) -> None:
    if reader == "subset":
        monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.9/3.10
    elif sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    path = write(tmp_path / "p.toml", text)
    with pytest.raises(PolicyError) as info:
        _profile.load(str(path), PARSER)
    message = str(info.value)
    assert message.startswith(f"{path}{expected}"), message
    assert "\n" not in message


def test_a_missing_profile_and_a_bad_name_are_errors(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(PolicyError, match=r"^nope: no such profile \(.*/sandlock/profiles/nope\.toml\)$"):
        _profile.load("nope", PARSER, by_path=False, environ=env)
    with pytest.raises(PolicyError, match="invalid profile name"):
        _profile.load("../x", PARSER, by_path=False, environ=env)


# --- extends -----------------------------------------------------------------------------------

def test_extends_merges_lists_and_the_child_wins_for_values_and_switches(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    base = tmp_path / "sandlock" / "profiles"
    write(base / "base.toml", 'description = "base"\n[filesystem]\nfs-read = ["/usr"]\n'
                              '[limits]\ntimeout = 10\n[environment]\nclean-env = true\n')
    write(base / "child.toml", 'extends = "base"\n[filesystem]\nfs-read = ["/etc"]\n'
                               '[limits]\ntimeout = 5\n[environment]\nclean-env = false\n')
    profile = _profile.load("child", PARSER, by_path=False, environ=env)
    ns = parse(_profile.argv(profile, KEYS))
    assert (ns.fs_read, ns.timeout, ns.clean_env) == (["/usr", "/etc"], "5", False)
    assert profile.description == "base"
    assert _profile.names(env) == ["base", "child"]


def test_extends_a_path_is_relative_to_the_extending_file(tmp_path: Path) -> None:
    write(tmp_path / "d" / "common.toml", '[limits]\nmax-memory = "64M"\n')
    path = write(tmp_path / "d" / "job.toml", 'extends = "./common.toml"\n[limits]\ntimeout = 3\n')
    ns = parse(tokens_of(path))
    assert (ns.max_memory, ns.timeout) == ("64M", "3")


def test_a_cycle_of_extends_is_an_error_naming_the_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", 'extends = "./b.toml"\n')
    write(tmp_path / "b.toml", 'extends = "./a.toml"\n')
    with pytest.raises(PolicyError, match=r"extends form a cycle: .*a\.toml -> .*b\.toml -> .*a\.toml$"):
        _profile.load(str(tmp_path / "a.toml"), PARSER)


# --- the TOML subset reader of Python < 3.11 -------------------------------------------------

VALID = [
    "",
    "# only a comment\n",
    'description = "x"\n[filesystem]\nfs-read = ["/usr", \'/lib\']  # trailing\n',
    '[a]\nk = "tab\\there \\u00e9 \\U0001F600 \\"q\\" \\\\"\nn = -12\nf = 1.5\ng = 2e3\nb = false\n',
    '[a]\nlist = [\n  "x",  # one\n  "y",\n]\nempty = []\nints = [1, 2_000]\n',
    '\r\n[a]\r\nk = \'C:\\path\'\r\n',
    '["quoted section"]\n"quoted key" = true\n',
    '[a]\nk="no spaces"\n[b]\n  indented = 1\n',
]
INVALID = [
    '[a]\nk = "x"\nk = "y"\n', "[a]\n[a]\n", "k = 1\n[k]\n", '[a]\nk = "unterminated\n', "[a]\nk = [1, 2\n",
    '[a]\nk = "bad \\q escape"\n', "[a]\nk =\n", "[a]\nk = 1 2\n", "[a\n", '[a]\nk = "\\ud800"\n',
    "[a]\nk = 01\n", "[a]\nk = nope\n", "[a]\nk = 1.\n", 'k = "a"\r"\n',
]


@pytest.mark.parametrize("text", VALID)
def test_the_subset_reader_gives_what_tomllib_gives(text: str) -> None:
    tomllib = pytest.importorskip("tomllib")
    doc, lines = _profile.parse_subset(text, "p.toml")
    assert doc == tomllib.loads(text)
    assert lines == _profile.key_lines(text)


@pytest.mark.parametrize("text", INVALID)
def test_the_subset_reader_refuses_what_tomllib_refuses_with_a_line(text: str) -> None:
    tomllib = pytest.importorskip("tomllib")
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(text)
    with pytest.raises(PolicyError, match=r"^p\.toml:\d+: "):
        _profile.parse_subset(text, "p.toml")


def test_the_subset_reader_names_the_line_of_the_fault() -> None:
    with pytest.raises(PolicyError, match=r"^p\.toml:4: k: defined twice$"):
        _profile.parse_subset('[a]\nk = 1\n# c\nk = 2\n', "p.toml")
    with pytest.raises(PolicyError, match=r"^p\.toml:2: inline tables are not read"):
        _profile.parse_subset('[a]\nk = {x = 1}\n', "p.toml")


# --- round trips ------------------------------------------------------------------------------

def test_a_dumped_profile_reads_back_as_the_same_options(tmp_path: Path) -> None:
    values: Dict[str, Any] = {"fs-read": ["/usr", 'we"ird\\ \u00e9\t'], "timeout": "10", "max-memory": "512M",
                              "clean-env": True, "env": ["A=1", "B=x=y"], "on-exit": "keep"}
    path = write(tmp_path / "p.toml", _profile.dump(values, KEYS))
    assert {k: e.value for k, e in _profile.load(str(path), PARSER).entries.items()} == values


def test_flags_to_profile_to_the_same_policy_in_process(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    flags = ["-r", "/usr", "-w", str(tmp_path / "w"), "--fs-deny", "/etc/shadow", "-m", "64M", "-P", "5",
             "-t", "9", "--clean-env", "--env", "A=1", "--net-allow", "example.com:443", "--deny-syscall", "ptrace",
             "--max-open-files", "100", "--no-default-view"]
    ns = parse(flags)
    path = write(tmp_path / "p.toml", _profile.dump(_profile.from_namespace(ns, KEYS), KEYS))
    assert sandlock._policy_from_args(parse(tokens_of(path))) == sandlock._policy_from_args(ns)
    assert sandlock.Sandbox.from_profile(str(path)).policy == sandlock._policy_from_args(ns)


def test_from_profile_overrides_add_to_lists_and_replace_values(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    path = write(tmp_path / "job.toml", '[filesystem]\nfs-read = ["/usr"]\n[limits]\ntimeout = 10\n'
                                        '[environment]\nenv = ["A=1"]\n')
    box = sandlock.Sandbox.from_profile(path, fs_readable=["/etc"], timeout=2, env={"B": "2"},
                                        fs_writable=[str(tmp_path / "w")])
    assert box.policy == sandlock.Sandbox(fs_readable=["/usr", "/etc"], timeout=2, env=["A=1", "B=2"],
                                          fs_writable=[str(tmp_path / "w")]).policy
    with pytest.raises(PolicyError, match="unknown policy field 'bogus'"):
        sandlock.Sandbox.from_profile(str(path), bogus=1)
    write(path, '[filesystem]\nfs_read = ["/usr"]\n')
    with pytest.raises(PolicyError, match=r"job\.toml:2: fs_read: unknown key"):
        sandlock.Sandbox.from_profile(str(path))


# --- the CLI, as root and unprivileged ------------------------------------------------------

def profile_home(who, scratch: Path) -> Dict[str, str]:
    config = who.make_dir(scratch / "config")
    who.make_dir(config / "sandlock")
    who.make_dir(config / "sandlock" / "profiles")
    return {"XDG_CONFIG_HOME": str(config)}


def test_profile_name_grants_what_it_says_and_a_flag_adds_to_it(who, scratch: Path) -> None:
    env = profile_home(who, scratch)
    out = who.make_dir(scratch / "out", 0o777)
    extra = who.make_dir(scratch / "extra", 0o777)
    who.make_file(scratch / "config" / "sandlock" / "profiles" / "job.toml",
                  f'[filesystem]\nfs-write = ["{out}"]\n[environment]\nenv = ["GREETING=hi"]\n')
    script = f'echo "$GREETING" > {out}/f && echo more > {extra}/g'
    r = who.run(["--profile", "job", "--", "sh", "-c", script], env=env)
    assert r.returncode != 0 and (out / "f").read_text() == "hi\n" and not (extra / "g").exists(), r.stderr
    r = who.run(["--profile", "job", "-w", str(extra), "--", "sh", "-c", script], env=env)
    assert r.returncode == 0, r.stderr
    assert (extra / "g").read_text() == "more\n"


def test_flags_print_profile_then_profile_file_give_the_same_rules(who, scratch: Path) -> None:
    out = who.make_dir(scratch / "out", 0o777)
    flags = ["-w", str(out), "--fs-deny", "/etc/shadow", "-m", "256M", "-P", "30", "--net-allow", "127.0.0.1:80",
             "--max-open-files", "200"]
    printed = who.run(flags + ["--print-profile"])
    assert printed.returncode == 0 and printed.stderr == "", printed.stderr
    path = who.make_file(scratch / "p.toml", printed.stdout)
    by_flags = who.run(flags + ["-v", "--", "true"])
    by_profile = who.run(["--profile-file", str(path), "-v", "--", "true"])
    assert by_flags.returncode == by_profile.returncode == 0, by_profile.stderr
    assert "Landlock rules" in by_flags.stderr and by_profile.stderr == by_flags.stderr
    again = who.run(["--profile-file", str(path), "--print-profile"])
    assert again.stdout == printed.stdout


def test_a_bad_profile_exits_125_with_one_line_and_changes_nothing(who, scratch: Path) -> None:
    work = who.make_dir(scratch / "work", 0o777)
    who.make_file(work / "keep", "data\n")
    path = who.make_file(scratch / "bad.toml", f'[workdir]\nworkdir = "{work}"\n[filesystem]\nfs-write = ["{work}"]\n'
                                               'fs_deny = ["/etc"]\n')
    before = tree_snapshot(scratch)
    r = who.run(["--profile-file", str(path), "--", "sh", "-c", f"rm {work}/keep"])
    assert r.returncode == 125
    assert one_line(r.stderr) == f"sandlock: {path}:5: fs_deny: unknown key in [filesystem] (did you mean fs-deny?)"
    assert tree_snapshot(scratch) == before


def test_profile_list_and_show_print_the_profiles_with_extends_merged(who, scratch: Path) -> None:
    env = profile_home(who, scratch)
    profiles = scratch / "config" / "sandlock" / "profiles"
    who.make_file(profiles / "base.toml", 'description = "the base"\n[limits]\nmax-memory = "64M"\n')
    who.make_file(profiles / "web.toml", 'extends = "base"\ndescription = "with network"\n'
                                         '[network]\nnet-allow = ["pypi.org:443"]\n')
    r = who.run(["profile", "list"], env=env)
    assert (r.returncode, r.stdout) == (0, "base  the base\nweb  with network\n"), r.stderr
    r = who.run(["profile", "show", "web"], env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ('description = "with network"\n\n[network]\nnet-allow = ["pypi.org:443"]\n\n'
                        '[limits]\nmax-memory = "64M"\n')
    r = who.run(["profile", "show", "nope"], env=env)
    assert r.returncode == 125 and one_line(r.stderr).startswith("sandlock: nope: no such profile")


def test_without_tomllib_the_cli_reads_the_same_profile(who, scratch: Path) -> None:
    """As on Python 3.9/3.10: the subset reader, same options, same errors."""
    path = who.make_file(scratch / "p.toml", '# job\n[limits]\nmax-memory = "64M"  # small\n'
                                             '[environment]\nenv = [\n  "A=1",\n  "B=2",\n]\n')
    code = ("import sys; sys.modules['tomllib'] = None; import sandlock; "
            "sys.exit(sandlock.main(sys.argv[1:]))")
    r = who.python(code, args=["--profile-file", str(path), "--print-profile"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == '[limits]\nmax-memory = "64M"\n\n[environment]\nenv = ["A=1", "B=2"]\n'
    who.make_file(scratch / "q.toml", "[limits]\nmax_memory = 1\n")
    r = who.python(code, args=["--profile-file", str(scratch / "q.toml"), "--", "true"])
    assert (r.returncode, r.stderr.decode()) == (
        125, f"sandlock: {scratch}/q.toml:2: max_memory: unknown key in [limits] (did you mean max-memory?)\n")


def test_profile_and_profile_file_together_and_print_profile_with_a_command_are_usage_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", "[limits]\ntimeout = 1\n")
    for args, message in ((["--profile", "x", "--profile-file", str(path), "--", "true"],
                           "--profile-file: not with --profile"),
                          (["--profile-file", str(path), "--print-profile", "--", "true"],
                           "--print-profile: prints the options as a profile and exits; it runs nothing"),
                          (["profile", "remove", "x"], "profile remove x: expected 'profile list' or 'profile show NAME'")):
        r = subprocess.run([sys.executable, "-m", "sandlock", *args], capture_output=True, text=True, timeout=60,
                           cwd=str(Path(sandlock.__file__).parent))
        assert r.returncode == 125 and one_line(r.stderr).startswith(f"sandlock: {message}"), r.stderr


def test_the_machine_options_are_profile_keys_too() -> None:
    assert (KEYS["hostname"].section, KEYS["no-coredump"].section) == ("machine", "machine")
    assert {KEYS[k].section for k in ("cpu-cores", "num-cpus", "cpu")} == {"machine"}


def test_a_profile_of_the_cpu_options_gives_the_policy_of_the_flags(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", '[machine]\ncpu-cores = "0"\nnum-cpus = 3\ncpu = 50\n')
    assert vars(parse(tokens_of(path))) == vars(parse(["--cpu-cores=0", "--num-cpus=3", "--cpu=50"]))


def test_what_the_subset_reader_accepts_tomllib_reads_the_same_way() -> None:
    """2000 mutations (fixed seed) of a profile: whenever the subset reader accepts one,
    tomllib accepts it too and gives the same document (it never reads TOML differently)."""
    tomllib = pytest.importorskip("tomllib")
    import random
    seed = ('description = "x"\n[filesystem]\nfs-read = ["/usr", \'/l\\\\ib\']  # c\n'
            '[limits]\ntimeout = 1.5\nmax-processes = 20\n[environment]\nclean-env = true\nenv = [\n "A=\\u00e9",\n]\n')
    pieces = list('[]"\'=,.#\\\n\r\t -_+0123456789eEtruefalsxu{}')
    rng = random.Random(20261206)
    accepted = 0
    for _ in range(2000):
        text = list(seed)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text) + 1)
            kind = rng.random()
            if kind < 0.4 and text:
                del text[min(at, len(text) - 1)]
            elif kind < 0.8:
                text.insert(at, rng.choice(pieces))
            elif text:
                text[min(at, len(text) - 1)] = rng.choice(pieces)
        doc = "".join(text)
        try:
            ours, _ = _profile.parse_subset(doc, "p.toml")
        except PolicyError:
            continue
        accepted += 1
        assert ours == tomllib.loads(doc), doc
    assert accepted > 200  # the mutations do reach documents both accept
