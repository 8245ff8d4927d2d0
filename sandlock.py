"""sandlock: a lightweight, unprivileged process sandbox for Linux, in pure Python.

Confines a command with Landlock (the wall), a seccomp-bpf filter and a
seccomp user-notification supervisor, without root, namespaces or a
compiled helper.

    python -m sandlock [OPTIONS] [--] COMMAND [ARGS...]

    import sandlock
    result = sandlock.Sandbox(fs_writable=["/tmp/x"]).run(["echo", "hi"])

This file is the public API and the CLI, and the package of the _*.py
modules beside it: they are imported as ``sandlock._name`` (or
``myapp._vendor.sandlock._name`` in a vendored copy), never under a
top-level name of their own (README "Installing and vendoring").  Under
``python -m sandlock`` this file runs as ``__main__`` only long enough to
import itself as ``sandlock`` and call main(), so each module, its state and
its exception classes exist once.
"""


import os
import sys
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Sequence, Union
    import signal as _signal
else:
    import _signal  # signal's C module, built in: no file to read, no enum (README "Start-up")

if sys.version_info < (3, 9):  # this file parses on 3.6+; the modules below need 3.9
    _TOO_OLD = "Python >= 3.9 is needed (this is Python %d.%d)" % sys.version_info[:2]
    if __name__ == "__main__":
        sys.stderr.write("sandlock: " + _TOO_OLD + "\n")
        sys.exit(125)
    raise ImportError(_TOO_OLD)

if __name__ == "__main__":
    # python -m sandlock, python sandlock.py: run the CLI of this file imported
    # under its own name, so its modules load once, as sandlock._name
    import importlib
    if globals().get("__spec__") is not None:  # python -m NAME
        _self = importlib.import_module(__spec__.name)
    elif os.path.realpath(getattr(sys.modules.get("sandlock"), "__file__", None) or "/") == os.path.realpath(__file__):
        _self = sys.modules["sandlock"]  # a script already imported as sandlock (runpy.run_path)
    else:  # a script: this very file as the module sandlock, wherever sys.path points
        import importlib.machinery
        import importlib.util
        _loader = importlib.machinery.SourceFileLoader("sandlock", os.path.realpath(__file__))
        _self = sys.modules["sandlock"] = importlib.util.module_from_spec(
            importlib.util.spec_from_loader("sandlock", _loader))  # type: ignore[arg-type]
        _loader.exec_module(_self)
    # the process's own program (python -m sandlock, python sandlock.py), or run by a
    # program that goes on afterwards (runpy.run_module(..., run_name="__main__"))?
    _callers = []
    _frame = sys._getframe().f_back
    while _frame is not None:
        _callers.append(_frame.f_code.co_name)
        _frame = _frame.f_back
    _self.cli(own_process=_callers in ([], ["_run_code", "_run_module_as_main"]))

if "__path__" not in globals():
    # Flat (a checkout, a vendored copy): this file is the package whose modules are
    # the _*.py files beside it, imported only as <this module>._name, never under
    # a top-level name of their own (README "Installing and vendoring").
    __path__ = [os.path.dirname(os.path.realpath(__file__))]
    if __spec__ is not None:
        __spec__.submodule_search_locations = __path__
    __package__ = __name__

from . import _errors
from ._errors import (CommandNotExecutableError, CommandNotFoundError, ExecError, PolicyError, PolicyTypeError,
                      SandlockError, SetupError)
from ._policy import Policy, child_environment, make_policy, normalise_argv

__version__ = "0.1.0"
__all__ = ["Sandbox", "Result", "confine", "SandlockError", "PolicyError", "SetupError", "ExecError",
           "SandboxCalledProcessError", "__version__", "Process", "Stage", "Pipeline", "PipelineResult",
           "PIPE", "STDOUT", "DEVNULL", "Change", "PolicyTypeError", "CommandNotFoundError",
           "CommandNotExecutableError"]

# subprocess's values: sandlock.PIPE and subprocess.PIPE are the same (README "Processes")
PIPE = -1
STDOUT = -2
DEVNULL = -3
_DEFAULT: "Any" = object()   # run(): a stream argument not given

if TYPE_CHECKING:
    PathLike = Union[str, bytes, "os.PathLike[str]"]


def _result_class() -> type:
    import subprocess

    class Result(subprocess.CompletedProcess):
        """What a sandboxed run gave: a CompletedProcess plus sandlock's view.

        returncode is as subprocess gives it (-N for a death by signal N);
        exit_code is the shell's view (128+N), 124 on timeout.
        """

        def __init__(self, args: "Sequence[object]", returncode: int, stdout: "Optional[bytes]",
                     stderr: "Optional[bytes]", *, exit_code: int, signal: "Optional[int]", timed_out: bool,
                     reason: str, changes: "Sequence[str]" = (), workdir_note: str = "",
                     outcome: "Any" = None) -> None:
            super().__init__(args, returncode, stdout, stderr)  # type: ignore[arg-type]
            self.exit_code = exit_code
            self.signal = signal
            self.timed_out = timed_out
            self.reason = reason
            # with a workdir: "A path", "M path", "D path" (relative to it, sorted: Change,
            # a str with .kind and .path), and what became of them (empty when committed)
            self.changes: List[str] = list(changes)
            self.workdir_note = workdir_note
            # the report (README "Results and denials")
            self.duration: float = getattr(outcome, "duration", 0.0)
            self.peak_memory: "Optional[int]" = getattr(outcome, "peak_memory", None)
            self.processes_started: "Optional[int]" = getattr(outcome, "processes", None)
            self.denials: "List[Any]" = list(getattr(outcome, "denials", ()))
            self.denials_dropped: "Dict[str, int]" = dict(getattr(outcome, "denials_more", ()))
            self.filter_denied: "List[str]" = list(getattr(outcome, "filter_denied", ()))

        def as_dict(self) -> "Dict[str, Any]":
            """The JSON object of --result-json (docs/result.schema.json)."""
            return _report(self.args, self.exit_code, self.returncode, self.signal, self.timed_out, self.reason,
                           self.duration, self.peak_memory, self.processes_started, self.changes,
                           self.workdir_note, self.denials, self.denials_dropped, self.filter_denied)

        @property
        def success(self) -> bool:
            return self.exit_code == 0 and not self.timed_out

        def check_returncode(self) -> None:
            if not self.success:
                raise _errors.SandboxCalledProcessError(self.returncode, self.args, self.stdout,
                                                        self.stderr, self.reason)

    Result.__module__ = __name__
    return Result


if TYPE_CHECKING:  # what a type checker sees of the class _result_class makes at run time
    import subprocess
    from ._process import Pipeline, PipelineResult, Process, Stage  # noqa: F401  (made on first use, PEP 562)

    class Result(subprocess.CompletedProcess):  # type: ignore[type-arg]
        exit_code: int
        signal: Optional[int]
        timed_out: bool
        reason: str
        changes: List[str]
        workdir_note: str
        duration: float
        peak_memory: Optional[int]
        processes_started: Optional[int]
        denials: List[Any]
        denials_dropped: Dict[str, int]
        filter_denied: List[str]

        def as_dict(self) -> Dict[str, Any]: ...

        @property
        def success(self) -> bool: ...


def __getattr__(name: str) -> "Any":
    # Result and SandboxCalledProcessError subclass subprocess classes, whose
    # import the CLI does not need: made on first use (PEP 562).
    if name == "Result":
        globals()["Result"] = cls = _result_class()
        return cls
    if name == "SandboxCalledProcessError":
        return _errors.SandboxCalledProcessError
    if name in ("Process", "Stage", "Pipeline", "PipelineResult"):
        from . import _process
        return getattr(_process, name)
    raise AttributeError(name)


def _policy_fn(fn: "Any", timeout: "Any") -> "Any":
    """(fn, seconds) of Sandbox(policy_fn=, policy_fn_timeout=), or None (README "Policy callback")."""
    if fn is None:
        if timeout is not None:
            raise PolicyError("policy_fn_timeout: given without policy_fn")
        return None
    if not callable(fn):
        raise PolicyTypeError(f"policy_fn: expected a callable fn(event, ctx), got {fn!r}")
    if timeout is None:
        timeout = 1.0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise PolicyError(f"policy_fn_timeout: expected seconds in (0, 60], got {timeout!r}")
    return fn, float(timeout)


class Sandbox:
    """A policy, validated at construction; run() any number of commands under it.

    Keyword arguments follow the Rust sandlock's Python SDK: fs_readable,
    fs_writable, fs_denied, max_memory, max_processes, max_open_files, env,
    clean_env, cwd, timeout, extra_deny_syscalls, best_effort, net_allow, net_deny,
    net_allow_bind, net_deny_bind, hostname, no_coredump, cpu_cores, num_cpus, cpu;
    default_view=False starts from nothing instead of
    the system directories (README "Default filesystem view");
    policy_fn=fn(event, ctx) and policy_fn_timeout= (seconds, default 1) for a
    callback asked about execs, opens for writing, connects, sends and binds
    (README "Policy callback").

    Raises:
        PolicyError: a field is unknown or its value is wrong (before any fork).
    """

    def __init__(self, **policy: "Any") -> None:
        import threading  # here, not at the top: `import sandlock` stays small (README "Start-up")
        import weakref
        self._policy_fn = _policy_fn(policy.pop("policy_fn", None), policy.pop("policy_fn_timeout", None))
        self.policy: Policy = make_policy(**policy)
        self._prepared: Any = None
        self._lock = threading.Lock()
        self._running: "weakref.WeakSet[Any]" = weakref.WeakSet()  # processes not yet waited for (cancel)
        self._running_lock = threading.Lock()  # popen, cancel and the ends of runs come from any thread
        self._release: Any = None   # the finalizer that closes the prepared rulesets
        self._runs = 0
        self._server: Any = None   # the fork server, from the second run (README "Fork server")

    @classmethod
    def from_profile(cls, name_or_path: "PathLike", **overrides: "Any") -> "Sandbox":
        """A Sandbox of a profile (README "Profiles"): a name of the user's profile
        directory, or a file (a path with a slash, or ending in .toml).

        overrides are keyword arguments as for Sandbox(), taken as the CLI takes
        flags: a list adds to the profile's (env too), any other value replaces it.

        Raises:
            PolicyError: the profile or an override is wrong (naming the file, line, key).
        """
        import collections.abc
        from . import _profile
        spec = os.fsdecode(os.fspath(name_or_path))
        parser = _parser()
        profile = _profile.load(spec, parser, by_path=not isinstance(name_or_path, str) or _profile.is_path(spec))
        ns = parser.parse_args(_profile.argv(profile, _profile.schema(parser)))
        kwargs = _policy_kwargs(ns)
        if "root" in overrides:
            overrides = dict(overrides)
            overrides["chroot"] = overrides.pop("root")
        for key, value in overrides.items():
            if key == "env" and isinstance(value, collections.abc.Mapping):
                value = [f"{k}={v}" for k, v in value.items()]
            base = kwargs.get(key)
            if isinstance(base, (list, tuple)) and base and isinstance(value, (list, tuple)):
                value = list(base) + list(value)
            kwargs[key] = value
        return cls(**kwargs)

    def _prepare(self) -> "Any":
        """Filter and Landlock rulesets, built once per Sandbox and kept (see _supervisor.Prepared).

        Only the policy given at construction shapes them: a run's timeout
        or cwd does not.
        """
        from . import _supervisor
        with self._lock:
            if self._prepared is None:
                import weakref
                self._prepared = _supervisor.prepare(self.policy, counted=self._policy_fn is not None)
                self._release = weakref.finalize(self, _supervisor.close_prepared, self._prepared)
        return self._prepared

    def _fork_server(self, prepared: "Any") -> "Any":
        """The Sandbox's fork server, started (in the background) at its second run."""
        with self._lock:
            self._runs += 1
            if self._server is None and self._runs == 2:
                from . import _forkserver
                # every policy: what a direct launch does in the supervising thread before it
                # confines itself is done in the caller's thread (_handoff)
                if _forkserver.enabled():
                    import weakref
                    try:
                        home, owned = _forkserver.home_ruleset(prepared, self.policy.chroot is not None)
                    except (SetupError, OSError):  # a rule refused, /proc/self/maps unreadable
                        return None   # every run launches directly
                    self._server = _forkserver.Server(home, prepared.child_ruleset, prepared.scope_ruleset,
                                                      prepared.program, own_ruleset=owned)
                    weakref.finalize(self, self._server.close)
            return self._server

    def popen(self, argv: "Sequence[PathLike]", *, stdin: "Any" = None, stdout: "Any" = None, stderr: "Any" = None,
              cwd: "Optional[PathLike]" = None, env: "Optional[Mapping[str, str]]" = None,
              timeout: "Optional[float]" = None, text: "Optional[bool]" = None, encoding: "Optional[str]" = None,
              errors: "Optional[str]" = None, universal_newlines: "Optional[bool]" = None,
              bufsize: int = -1) -> "Process":
        """Start argv in the sandbox and return at once, as subprocess.Popen does.

        Args:
            argv: the command and its arguments (PATH is searched).
            stdin, stdout, stderr: PIPE, DEVNULL, STDOUT (stderr only), a file object,
                a file descriptor, or None to inherit the caller's (README "Processes").
            cwd, env: as for run().
            timeout: seconds before the whole sandbox is killed (returncode 124).
            text, encoding, errors, universal_newlines: the PIPE streams and
                communicate() speak str, as with subprocess.
            bufsize: of the PIPE streams' buffers, as with subprocess.

        Raises:
            PolicyError (PolicyTypeError for a wrong type), SetupError, ExecError:
            CommandNotFoundError (a FileNotFoundError) when argv[0] is not found,
            CommandNotExecutableError (a PermissionError) when it may not be run.
        """
        from . import _process
        from . import _supervisor
        policy = self.policy.with_timeout(timeout)
        if cwd is not None:
            policy = _with_cwd(policy, cwd)
        args = normalise_argv(argv)
        if env is None and not policy.clean_env and policy.chroot is None:
            # os.environ's own bytes (os.environb shares its data): 30-90 us less per run than
            # decoding every variable and encoding it back
            environment = dict(os.environb)
            environment.update(_env_bytes(dict(policy.env)))
        else:
            environment = _env_bytes(child_environment(policy, _base_env(env)))
        mode = _process.TextMode(text, encoding, errors, universal_newlines)
        if isinstance(bufsize, bool) or not isinstance(bufsize, int):
            raise PolicyTypeError(f"bufsize: expected an integer, got {bufsize!r}")
        prepared = self._prepare()
        # first: it may raise (a workdir's layer, a fake root's record) before anything is opened
        handoff = _handoff(self._fork_server(prepared), policy, prepared, self._policy_fn is not None)
        streams = None
        try:
            streams = _process.streams(stdin, stdout, stderr)  # PolicyTypeError for a wrong one
            process = _process.Process(list(argv), _result, mode, on_end=self._forget)
        except BaseException:
            if streams is not None:
                streams.close()
            if handoff is not None:
                handoff.close()
            raise

        def session(**options: "Any") -> "Any":
            try:
                return _supervisor.Session(policy, prepared, args, environment, policy_fn=self._policy_fn, **options,
                                           handoff=handoff if handoff is not None and not handoff.closed else None)
            except BaseException:
                if handoff is not None:
                    handoff.close()
                raise
        with self._running_lock:
            self._running.add(process)
        try:
            process.start(session, streams, bufsize, spawn=handoff.spawn if handoff is not None else None)
        except BaseException:
            process.kill()   # interrupted while it started (KeyboardInterrupt): it must not run on
            self._forget(process)
            raise
        return process

    def _forget(self, process: "Process") -> None:
        with self._running_lock:
            self._running.discard(process)

    def _now_running(self) -> "List['Process']":
        with self._running_lock:
            return list(self._running)

    def run(self, argv: "Sequence[PathLike]", *, timeout: "Optional[float]" = None, input: "Optional[Any]" = None,
            capture_output: bool = True, cwd: "Optional[PathLike]" = None, env: "Optional[Mapping[str, str]]" = None,
            check: bool = False, stdin: "Any" = _DEFAULT, stdout: "Any" = _DEFAULT, stderr: "Any" = _DEFAULT,
            text: "Optional[bool]" = None, encoding: "Optional[str]" = None, errors: "Optional[str]" = None) -> "Result":
        """Run argv in the sandbox and wait for every process of it to end (popen, then communicate).

        Args:
            argv: the command and its arguments (PATH is searched).
            timeout: seconds before the whole sandbox is killed (exit_code 124).
            input: bytes (str in text mode) fed to the command's stdin.
            capture_output: collect stdout and stderr into the Result (unless
                stdout=/stderr= say otherwise).
            cwd: the command's working directory.
            env: the base environment (default: os.environ), before the policy's.
            check: raise SandboxCalledProcessError unless the command succeeds.
            stdin, stdout, stderr: as for popen() (default: inherited stdin,
                captured stdout and stderr).
            text, encoding, errors: input and the captured output as str.

        Raises:
            PolicyError, SetupError, ExecError (see popen()).
        """
        if input is not None and stdin is not _DEFAULT:
            raise PolicyError("input and stdin: pass one of them")
        if input is not None:  # checked before anything runs
            from . import _process
            _process.TextMode(text, encoding, errors).encode(input)
        captured = PIPE if capture_output else None
        with self.popen(argv, stdin=PIPE if input is not None else (None if stdin is _DEFAULT else stdin),
                        stdout=captured if stdout is _DEFAULT else stdout,
                        stderr=captured if stderr is _DEFAULT else stderr,
                        timeout=timeout, cwd=cwd, env=env, text=text, encoding=encoding, errors=errors) as process:
            process.communicate(input)   # the policy's timeout ends the sandbox
            result = process.result()
        if check:
            result.check_returncode()
        return result

    def cmd(self, argv: "Sequence[PathLike]", *, cwd: "Optional[PathLike]" = None,
            env: "Optional[Mapping[str, str]]" = None, timeout: "Optional[float]" = None) -> "Stage":
        """A stage of a pipeline: `box1.cmd([...]) | box2.cmd([...])`, then .run() (README "Pipelines")."""
        from . import _process
        normalise_argv(argv)  # checked now, not when the pipeline starts
        _base_env(env)
        return _process.Stage(self, argv, {"cwd": cwd, "env": env, "timeout": timeout})

    def cancel(self) -> int:
        """Kill every sandbox this Sandbox runs now (run() from other threads, popen()):
        each run ends with reason "killed".  From any thread; how many were running."""
        running = self._now_running()
        for process in running:
            process.kill()
        return len(running)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill what still runs, wait for it, and release the prepared rulesets now."""
        running = self._now_running()
        for process in running:
            process.kill()
        for process in running:
            try:
                process.wait()
            except SandlockError:
                pass
        with self._lock:
            release, self._release = self._release, None
            self._prepared = None
            server, self._server, self._runs = self._server, None, 0
        if server is not None:
            server.close()   # its home thread, pooled threads and process end (their runs are over)
        if release is not None:
            release()  # close_prepared, once (a later run prepares again)


def _base_env(env: "Optional[Mapping[str, str]]") -> "Mapping[str, str]":
    """env= of popen/run/cmd: a mapping of str (or bytes) to str (or bytes), else PolicyTypeError."""
    import collections.abc  # here: `import sandlock` stays small (README "Start-up")
    if env is None:
        return os.environ
    if not isinstance(env, collections.abc.Mapping):
        raise PolicyTypeError(f"env: expected a mapping of names to values, got {type(env).__name__}")
    for key, value in env.items():
        if not isinstance(key, (str, bytes)):
            raise PolicyTypeError(f"env: a name must be str, got {type(key).__name__} ({key!r})")
        if not isinstance(value, (str, bytes)):
            raise PolicyTypeError(f"env: the value of {os.fsdecode(key)} must be str, "
                                  f"got {type(value).__name__} ({value!r})")
        if b"\0" in os.fsencode(key) + os.fsencode(value) or not key or "=" in os.fsdecode(key):
            raise PolicyError(f"env: invalid variable {os.fsdecode(key)!r}")
    return env


def _with_cwd(policy: Policy, cwd: "PathLike") -> Policy:
    return policy.replace(cwd=make_policy(labels=policy.labels, cwd=cwd, chroot=policy.chroot,
                                          fs_mount=[f"{v}:{h}" for v, h, _ in policy.fs_mount]).cwd)


def _env_bytes(env: "Mapping[str, str]") -> "Dict[bytes, bytes]":
    return {os.fsencode(k): os.fsencode(v) for k, v in env.items()}


def _handoff(server: "Any", policy: "Policy", prepared: "Any", callback: bool = False) -> "Any":
    """A run's hand-off to the Sandbox's fork server (_forkserver.Handoff: the caller's cwd,
    umask and stdio, taken here in the caller's thread), or None: launched directly.
    What the direct launch does in the supervising thread before it confines itself is
    done here, in the caller's thread, for the run's thread is confined from its start
    (the home thread's): the imports (_supervisor.preload), the writer of read-only pages
    (Server.memory_writer: a root, a workdir, --random-seed/--time-start's vDSO), a
    workdir's upper layer and a fake root's record of owners (both raise SetupError), the
    resolvers and hosts DNS policing reads.  callback: the Sandbox has a policy_fn (its
    _policyfn.Gate is made by the run's thread, confined, from modules imported here)."""
    if server is None:
        return None
    from . import _forkserver
    try:
        ignored, state = _forkserver.snapshot()
        if not server.usable(state):
            return None
        from . import _supervisor
        net = prepared.net_rules
        networked = net is not None and net.any_network()
        # its supervising thread is confined from its start: nothing may be left to import
        _supervisor.preload(policy, net, callback=callback)
        handoff = _forkserver.Handoff(server, ignored, _supervisor.writes_pages(policy, prepared))
    except OSError:   # a state that cannot be read, or a caller the server cannot stand for
        return None
    try:
        if prepared.layers is not None:
            handoff.upper = _supervisor.new_upper(prepared, policy)
        if networked and not net.deny_mode:
            handoff.net_dns = _supervisor.run_dns(policy, net)
        if policy.fake_root:
            handoff.fake = _supervisor.fake_owners(policy)
    except BaseException:
        handoff.close()
        raise
    return handoff


def _status(outcome) -> tuple:
    """(exit_code, returncode, signal) of an outcome."""
    status = outcome.status
    if outcome.timed_out:
        return 124, 124, _signal.SIGKILL
    if status is None:
        return 128 + _signal.SIGKILL, -_signal.SIGKILL, _signal.SIGKILL
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, -sig, sig
    code = os.WEXITSTATUS(status)
    return code, code, None


def _result(args: "Sequence[object]", outcome) -> "Result":
    code, returncode, sig = _status(outcome)
    result_class = globals().get("Result") or __getattr__("Result")  # made once (one class for every run)
    return result_class(args, returncode, outcome.stdout, outcome.stderr, exit_code=code, signal=sig,
                        timed_out=outcome.timed_out, reason=outcome.reason,
                        changes=[Change(c.kind, c.path) for c in outcome.changes], workdir_note=outcome.workdir_note,
                        outcome=outcome)


class Change(str):
    """A change of a workdir run: the string "A path", "M path" or "D path" as before,
    with its parts as .kind ("A", "M", "D") and .path (relative to the workdir)."""

    kind: str
    path: str

    def __new__(cls, kind: str, path: str) -> "Change":
        self = super().__new__(cls, f"{kind} {path}")
        self.kind = kind
        self.path = path
        return self

    def __reduce__(self) -> "Any":
        return (Change, (self.kind, self.path))


RESULT_SCHEMA = "sandlock-result/1"   # docs/result.schema.json
# What the report cannot list (README "Results and denials"): said in every report.
NOT_SEEN = ("Refusals the kernel makes by itself are not seen by the supervisor and are not listed: "
            "Landlock's EACCES/EPERM on calls the filter lets through untrapped or that the supervisor "
            "continues (mkdir, unlink, rmdir, symlink, truncate, writes to an fd already open, "
            "the command's own TCP connect and bind, signals beyond the sandbox under the signal scope), "
            "and the filter's errno for the syscalls in "
            "filter_denied and for argument rules (socket families, ioctls).")


def _signal_name(sig: int) -> str:
    """SIGTERM, SIGCHLD, ...: signal.Signals' name (of aliases the first in alphabetical order:
    SIGABRT, not SIGIOT); a real-time signal between the two it names as SIGRTMIN+N, which
    Signals does not know (ValueError).  From _signal: without enum (README "Start-up"),
    and nothing to read once the CLI's thread is confined."""
    if _signal.SIGRTMIN < sig < _signal.SIGRTMAX:
        return f"SIGRTMIN+{sig - _signal.SIGRTMIN}"
    names = sorted(name for name, value in vars(_signal).items()
                   if value == sig and name.startswith("SIG") and not name.startswith("SIG_") and type(value) is int)
    return names[0] if names else f"SIG{sig}"


def _report(args: "Sequence[object]", exit_code: int, returncode: int, sig: "Optional[int]", timed_out: bool,
            reason: str, duration: float, peak_memory: "Optional[int]", processes: "Optional[int]",
            changes: "Sequence[Any]", workdir_note: str, denials: "Sequence[Any]", dropped: "Mapping[str, int]",
            filter_denied: "Sequence[str]") -> "Dict[str, Any]":
    """The JSON object of --result-json and --status-fd (docs/result.schema.json)."""
    return {
        "schema": RESULT_SCHEMA,
        "argv": [os.fsdecode(a) if isinstance(a, (str, bytes, os.PathLike)) else str(a) for a in args],
        "exit_code": exit_code, "returncode": returncode, "signal": sig,
        "signal_name": _signal_name(sig) if sig else None,
        "timed_out": timed_out, "reason": reason, "duration": round(duration, 6),
        "peak_memory": peak_memory, "processes_started": processes,
        "changes": [{"kind": c.kind, "path": c.path} for c in changes], "workdir_note": workdir_note,
        "denials": [d.as_dict() for d in denials],
        "denials_dropped": dict(dropped),
        "filter_denied": list(filter_denied),
        "not_seen": NOT_SEEN,
    }


def confine(*, fs_readable: "Sequence[PathLike]" = (), fs_writable: "Sequence[PathLike]" = (),
            best_effort: bool = False, default_view: bool = True) -> None:
    """Apply Landlock filesystem rules to the calling thread, for good.

    Landlock restricts the thread that asks (and what it starts later);
    call it before starting other threads to cover the whole program.
    """
    from . import _landlock
    from . import _launch
    policy = make_policy(fs_readable=list(fs_readable), fs_writable=list(fs_writable), best_effort=best_effort,
                         default_view=default_view)
    abi = _landlock.check_kernel(policy)
    if abi == 0:
        return
    fd = _landlock.create_ruleset(_landlock.plan(policy, abi, keep_proc=True))  # no supervisor: /proc as given
    try:
        from . import _syscalls
        _syscalls.prctl(_launch.PR_SET_NO_NEW_PRIVS, 1)
        _syscalls.landlock_restrict_self(fd)
    finally:
        os.close(fd)


# --- CLI --------------------------------------------------------------------------------------

EXAMPLES = """\
examples:
  python -m sandlock -- ls /usr
      run with the default view: system directories read-only, nothing writable
  python -m sandlock -r /usr -r /lib -r /bin -r /etc -w /tmp/out -- sh -c 'echo hi > /tmp/out/f'
      only these paths; writes only under /tmp/out
  python -m sandlock --fs-deny /etc/shadow --fs-deny ~/.ssh -- make
      the default view minus secrets (the denial wins over every rule)
  python -m sandlock --root ./rootfs -w /tmp -- /bin/sh -c 'cat /etc/os-release; echo hi > /tmp/f'
      a distribution's programs in ./rootfs, seen as /; only its /tmp writable
  python -m sandlock --workdir ./project -w ./project --dry-run -- sh -c 'cd project && make'
      build in a copy-on-write view of ./project; list what would change, change nothing
  python -m sandlock -t 10 -P 20 -m 512M -- python3 untrusted.py
      at most 10 s, 20 processes at once, 512 MiB in all
  python -m sandlock --cpu-cores 0 --num-cpus 1 --cpu 50 -- sh -c 'make -j$(nproc)'
      one CPU seen and used, at most half of it (nproc says 1)
  python -m sandlock --net-allow pypi.org:443 --net-allow files.pythonhosted.org:443 -- pip download x
      network only to these hosts and port (none by default)
  python -m sandlock --clean-env --env HOME=/tmp -- env
      a minimal environment
  python -m sandlock --profile job -w ./build -- make
      the profile ~/.config/sandlock/profiles/job.toml, plus one writable directory
  python -m sandlock -w /tmp/out -m 512M --print-profile > ~/.config/sandlock/profiles/job.toml
      save these options as the profile job (python -m sandlock profile list|show NAME)
  python -m sandlock --result-json run.json -- sh -c 'cat ~/.ssh/id_rsa; echo x > /usr/x'
      write exit status, duration and the denied operations (syscall, path, errno, rule) to run.json
  python -m sandlock --status-fd 3 -- make 3>status.json
      the same JSON object on fd 3 (a pipe to a supervising program, or a file)
  python -m sandlock --check
      what this kernel supports

exit status:
  the command's exit status; 128+N if it died of signal N; 124 on timeout;
  125 if sandlock itself failed (bad option, unsupported kernel, setup error);
  126 if the command was found but could not be executed; 127 if not found.
"""
EXIT_STATUS_HEADER = "EXIT STATUS"

LABELS = {
    "fs_readable": "--fs-read", "fs_writable": "--fs-write", "fs_denied": "--fs-deny",
    "max_memory": "--max-memory", "max_processes": "--max-processes", "max_open_files": "--max-open-files",
    "timeout": "--timeout", "env": "--env", "cwd": "--cwd", "extra_deny_syscalls": "--deny-syscall",
    "chroot": "--root", "fs_mount": "--fs-mount", "workdir": "--workdir", "on_exit": "--on-exit",
    "on_error": "--on-error", "dry_run": "--dry-run", "max_disk": "--max-disk",
    "net_allow": "--net-allow", "net_deny": "--net-deny", "net_allow_bind": "--net-allow-bind",
    "net_deny_bind": "--net-deny-bind", "fake_root": "--fake-root",
    "hostname": "--hostname", "no_coredump": "--no-coredump",
    "random_seed": "--random-seed", "time_start": "--time-start", "no_randomize_memory": "--no-randomize-memory",
    "deterministic_dirs": "--deterministic-dirs",
    "cpu_cores": "--cpu-cores", "num_cpus": "--num-cpus", "cpu": "--cpu",
}


class _UsageError(Exception):
    pass


def _parser(argparse: "Any" = None):  # type: ignore[no-untyped-def]
    """The CLI's argparse parser; given _Options for argparse, its list of options (_quick_args)."""
    if argparse is None:
        import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise _UsageError(message)

    p = _Parser(prog=_prog(), allow_abbrev=False, add_help=False,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Run COMMAND confined by Landlock, a seccomp-bpf filter and a supervisor.",
                epilog=EXAMPLES.replace("exit status:", EXIT_STATUS_HEADER + ":").replace("python -m sandlock", _prog()))
    fs = p.add_argument_group("filesystem")
    fs.add_argument("-r", "--fs-read", action="append", default=[], metavar="PATH",
                    help="allow reading and executing PATH too (repeatable; the default view stays)")
    fs.add_argument("--no-default-view", action="store_true",
                    help="start from nothing: only what -r/-w name (not the system directories, or / of a root)")
    fs.add_argument("-w", "--fs-write", action="append", default=[], metavar="PATH",
                    help="allow reading, writing, creating and removing under PATH (repeatable)")
    fs.add_argument("--fs-deny", action="append", default=[], metavar="PATH",
                    help="refuse PATH whatever else allows it (repeatable)")
    fs.add_argument("--root", "--chroot", dest="root", metavar="DIR",
                    help="emulated root: the command sees DIR as / (paths of -r/-w/--fs-deny/--cwd are inside it)")
    fs.add_argument("--fs-mount", action="append", default=[], metavar="VIRT:HOST[:ro]",
                    help="with --root: show host directory HOST at VIRT (writable unless :ro; repeatable)")
    fs.add_argument("--fake-root", action="store_true",
                    help="with --root: the command is uid 0 over the root's files; owners, modes and "
                         "device nodes it sets are recorded next to the root, never made real")
    cow = p.add_argument_group("copy-on-write workdir")
    cow.add_argument("--workdir", metavar="DIR",
                     help="writes under DIR go to a private upper layer, applied at the end (see --on-exit)")
    cow.add_argument("--on-exit", choices=("commit", "abort", "keep"),
                     help="what to do with the changes after exit status 0 (default commit)")
    cow.add_argument("--on-error", choices=("commit", "abort", "keep"),
                     help="... after any other end, timeout included (default abort)")
    cow.add_argument("--max-disk", metavar="SIZE",
                     help="the upper layer may hold at most SIZE (ENOSPC, or the run is killed past it)")
    cow.add_argument("--dry-run", action="store_true",
                     help="run, print the changes (A/M/D path, on stderr) and discard them")
    net = p.add_argument_group("network (default: none; README \"Network\")")
    net.add_argument("--net-allow", action="append", default=[], metavar="SPEC",
                     help="allow [tcp://|udp://|icmp://]TARGET[:PORT[,PORT...]] (repeatable); TARGET: "
                          "host, *.domain, IPv4, [IPv6], CIDR or *")
    net.add_argument("--net-deny", action="append", default=[], metavar="SPEC",
                     help="allow every destination but these literal IPs/CIDRs (repeatable; not with --net-allow)")
    net.add_argument("--net-allow-bind", action="append", default=[], metavar="PORTS",
                     help="allow bind/listen on these ports, e.g. 8080,9000-9005 or * (repeatable)")
    net.add_argument("--net-deny-bind", action="append", default=[], metavar="PORTS",
                     help="allow bind/listen on every port but these (repeatable; not with --net-allow-bind)")
    res = p.add_argument_group("resources")
    res.add_argument("-t", "--timeout", metavar="SECONDS", help="kill the sandbox after SECONDS (exit 124)")
    res.add_argument("-m", "--max-memory", metavar="SIZE", help="memory of all processes together, e.g. 512M")
    res.add_argument("-P", "--max-processes", metavar="N", help="at most N processes at once (fork gets EAGAIN)")
    res.add_argument("--max-open-files", metavar="N", help="RLIMIT_NOFILE of every process")
    env = p.add_argument_group("environment")
    env.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set a variable (repeatable)")
    env.add_argument("--clean-env", action="store_true", help="start from PATH, HOME, USER, TERM, LANG only")
    env.add_argument("--cwd", metavar="DIR", help="working directory of the command")
    machine = p.add_argument_group("machine (what the command sees of it)")
    machine.add_argument("--hostname", metavar="NAME",
                         help="the host name the command sees: uname, /proc/sys/kernel/hostname, /etc/hostname")
    machine.add_argument("--no-coredump", action="store_true",
                         help="no core dumps: RLIMIT_CORE 0, soft and hard (the command cannot raise it)")
    machine.add_argument("--random-seed", metavar="N",
                         help="getrandom, /dev/urandom, /dev/random and AT_RANDOM give the same bytes run after run, "
                              "from seed N (README \"Deterministic runs\")")
    machine.add_argument("--time-start", metavar="T",
                         help="the wall clock (time, gettimeofday, clock_gettime REALTIME, the vDSO's too) starts at "
                              "T, a Unix time or an ISO 8601 date, and runs from there")
    machine.add_argument("--deterministic-dirs", action="store_true",
                         help="directory listings (getdents64: ls -f, os.listdir, readdir) sorted by name")
    machine.add_argument("--no-randomize-memory", action="store_true",
                         help="no address space layout randomisation for the command (ADDR_NO_RANDOMIZE)")
    machine.add_argument("--cpu-cores", metavar="LIST",
                         help="run on these CPUs only, e.g. 0,2-3 (an affinity the command cannot widen)")
    machine.add_argument("--num-cpus", metavar="N",
                         help="a machine of N CPUs: nproc, sysconf, sched_getaffinity, /proc/cpuinfo, /proc/stat, "
                              "/sys/devices/system/cpu/online")
    machine.add_argument("--cpu", metavar="PCT",
                         help="CPU time of the whole sandbox held to PCT percent of one core")
    prof = p.add_argument_group("profiles (README \"Profiles\")")
    prof.add_argument("--profile", metavar="NAME",
                      help="start from the profile NAME ($XDG_CONFIG_HOME/sandlock/profiles/NAME.toml); "
                           "flags override its values and add to its lists")
    prof.add_argument("--profile-file", metavar="FILE", help="start from the profile in FILE")
    prof.add_argument("--print-profile", action="store_true",
                      help="print the options given (profile and flags) as a profile and exit")
    other = p.add_argument_group("other")
    other.add_argument("--deny-syscall", action="append", default=[], metavar="NAME",
                       help="refuse this syscall with EPERM too (repeatable)")
    other.add_argument("--best-effort", action="store_true",
                       help="run even if the kernel cannot enforce part of the policy")
    other.add_argument("--result-json", metavar="FILE",
                       help="write the run's result as one JSON object to FILE: status, duration, changes and "
                            "the operations the supervisor denied (README \"Results and denials\")")
    other.add_argument("--status-fd", metavar="N",
                       help="write the same JSON object to the open file descriptor N (e.g. 3>status.json)")
    other.add_argument("-v", "--verbose", action="store_true",
                       help="print the effective rules to stderr, and after the run what was denied")
    other.add_argument("--debug", action="store_true", help="tracebacks and handler failures on stderr")
    other.add_argument("--dump-filter", action="store_true", help="print the BPF program and exit")
    other.add_argument("--check", action="store_true", help="report what this kernel supports and exit")
    other.add_argument("--json", action="store_true", help="with --check: machine-readable output")
    other.add_argument("--version", action="store_true", help="print the version and exit")
    other.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="the command and its arguments (none: $SHELL, inside a root if it exists there, else /bin/sh)")
    return p


class _Options:
    """Stands in for the argparse module while _parser() runs: it keeps the list of
    options, so the CLI reads a plain command line without importing and building
    argparse (several ms of the start: README "Start-up")."""

    REMAINDER = "..."

    class RawDescriptionHelpFormatter:
        pass

    class ArgumentParser:
        def __init__(self, *args: "Any", **kwargs: "Any") -> None:
            self.options: List[Any] = []

        def add_argument_group(self, *args: "Any", **kwargs: "Any") -> "Any":
            return self

        def add_argument(self, *names: str, **kwargs: "Any") -> None:
            self.options.append((names, kwargs))


_QUICK_KEYS = frozenset({"action", "default", "metavar", "help", "choices", "dest", "nargs"})


def _quick_table() -> "Optional[tuple]":
    """({option string: (dest, action, choices)}, {dest: default}, the positional's dest), or None
    if the parser uses a feature _quick_args does not reproduce."""
    options: Dict[str, tuple] = {}
    defaults: Dict[str, Any] = {}
    positional = None
    for names, kwargs in _parser(_Options).options:
        action = kwargs.get("action", "store")
        if not _QUICK_KEYS.issuperset(kwargs) or action not in ("store", "store_true", "append"):
            return None
        if not names[0].startswith("-"):
            if positional is not None or kwargs.get("nargs") != _Options.REMAINDER:
                return None
            positional = names[0]
            continue
        if "nargs" in kwargs:
            return None
        dest = kwargs.get("dest") or next((n for n in names if n.startswith("--")), names[0]).lstrip("-").replace("-", "_")
        defaults[dest] = kwargs.get("default", False if action == "store_true" else None)
        for name in names:
            options[name] = (dest, action, kwargs.get("choices"))
    return (options, defaults, positional) if positional is not None else None


def _quick_args(argv: "List[str]") -> "Any":
    """argv parsed as argparse parses it, for the plain forms only (`-w DIR`, `--opt=VALUE`,
    flags, then `--` or the command); None for anything else, which argparse then parses
    and, if it is wrong, reports (one message for each mistake, whichever parser is used)."""
    table = _quick_table()
    if table is None:
        return None
    options, defaults, positional = table
    values = {dest: list(default) if isinstance(default, list) else default for dest, default in defaults.items()}
    values[positional] = []
    i = 0
    while i < len(argv):
        item = argv[i]
        if item == "--" or not item.startswith("-"):
            values[positional] = argv[i:]  # from "--" on, as argparse keeps it (_main drops it)
            break
        name, equals, value = item.partition("=") if item.startswith("--") else (item, "", "")
        if name not in options:
            return None
        dest, action, choices = options[name]
        if action == "store_true":
            if equals:
                return None
            values[dest] = True
            i += 1
            continue
        if not equals:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            i += 1
        i += 1
        if not value or value.startswith("-") or (choices is not None and value not in choices):
            return None  # argparse's own rules (and messages) for these
        if action == "append":
            values[dest].append(value)
        else:
            values[dest] = value
    import types
    return types.SimpleNamespace(**values)


def _policy_from_args(ns: "Any") -> Policy:
    return make_policy(labels=LABELS, **_policy_kwargs(ns))


def _policy_kwargs(ns: "Any") -> "Dict[str, Any]":
    """The API keywords of parsed arguments."""
    kwargs: Dict[str, Any] = dict(fs_readable=ns.fs_read, fs_writable=ns.fs_write, fs_denied=ns.fs_deny,
                                  env=ns.env, clean_env=ns.clean_env, best_effort=ns.best_effort,
                                  extra_deny_syscalls=ns.deny_syscall, fs_mount=ns.fs_mount, dry_run=ns.dry_run,
                                  default_view=not ns.no_default_view, fake_root=ns.fake_root,
                                  net_allow=ns.net_allow, net_deny=ns.net_deny,
                                  net_allow_bind=ns.net_allow_bind, net_deny_bind=ns.net_deny_bind,
                                  no_coredump=ns.no_coredump, no_randomize_memory=ns.no_randomize_memory,
                                  deterministic_dirs=ns.deterministic_dirs)
    for key, value in (("timeout", ns.timeout), ("max_memory", ns.max_memory),
                       ("max_processes", ns.max_processes), ("max_open_files", ns.max_open_files),
                       ("cwd", ns.cwd), ("chroot", ns.root), ("workdir", ns.workdir),
                       ("on_exit", ns.on_exit), ("on_error", ns.on_error), ("max_disk", ns.max_disk),
                       ("hostname", ns.hostname), ("random_seed", ns.random_seed), ("time_start", ns.time_start),
                       ("cpu_cores", ns.cpu_cores), ("num_cpus", ns.num_cpus), ("cpu", ns.cpu)):
        if value is not None:
            kwargs[key] = value
    return kwargs


def main(argv: "Optional[Sequence[str]]" = None) -> int:
    """The CLI; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("SANDLOCK_DEBUG") == "1" or "--debug" in argv
    try:
        return _main(argv, debug)
    except _UsageError as exc:
        message = str(exc)
        if message.startswith("argument "):  # argparse's "argument -m/--max-memory: ..."
            message = message[len("argument "):]
        elif message.startswith("unrecognized arguments: "):
            message = f"{message[len('unrecognized arguments: '):]}: unknown option"
        return _fail(f"{message} (see {_prog()} --help)")
    except ExecError as exc:
        _say(str(exc))
        return exc.exit_code
    except SandlockError as exc:
        if debug:
            import traceback
            traceback.print_exc()
        hint = getattr(exc, "hint", "")
        return _fail(f"{exc}" + (f" ({hint})" if hint else ""))
    except OSError as exc:
        if debug:
            import traceback
            traceback.print_exc()
        name = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes)) else ""
        return _fail(f"{_errors.shown(name) + ': ' if name else ''}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return 128 + _signal.SIGINT


def cli(own_process: bool = True) -> None:
    """The `sandlock` script and `python -m sandlock`: main(), then the end of the process.

    Once main() has returned nothing of sandlock's is left to finalize: its
    threads are daemons and done, its directories removed, nothing waits in
    atexit (weakref.finalize's function stays registered once a run used a
    finalizer, with none left to call).  So the process ends with os._exit once its output is flushed,
    sparing the teardown of every module the supervisor loaded (about 8 ms of
    CPU: README "Start-up").  Anything else (a thread still running, an
    atexit callback, output that cannot be flushed, a program that called
    this and goes on: own_process=False) takes the ordinary exit, SystemExit.
    """
    code = main()
    if not own_process:
        sys.exit(code)
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: the fd was closed when Python started
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)
    import atexit
    waiting = getattr(atexit, "_ncallbacks", lambda: 1)()
    if waiting == 1 and _finalize_idle():
        waiting = 0  # weakref.finalize's exit function, with nothing left to call
    threading = sys.modules.get("threading")  # none loaded: no thread of threading's to wait for
    if waiting or (threading is not None and any(t.is_alive() and not t.daemon and t is not threading.main_thread()
                                                 for t in threading.enumerate())):
        sys.exit(code)
    os._exit(code)


def _finalize_idle() -> bool:
    """Has weakref.finalize registered its atexit function (it does on its first use: a
    run's resolver makes one) with no finalizer left that it would call at exit?"""
    finalize = getattr(sys.modules.get("weakref"), "finalize", None)
    registry = getattr(finalize, "_registry", None)
    return (getattr(finalize, "_registered_with_atexit", False) is True and isinstance(registry, dict)
            and not any(f.atexit for f in list(registry)))


def _joined_values(parser: "Any", argv: "List[str]") -> "List[str]":
    """`-m -5M` as `--max-memory=-5M`: argparse takes a value that starts with '-'
    for an option, so the validator (not "expected one argument") names what is wrong."""
    takes_value = {opt: action.option_strings[-1] for action in parser._actions
                   if action.nargs is None and action.option_strings for opt in action.option_strings}
    flags = {opt for action in parser._actions for opt in action.option_strings}
    out: List[str] = []
    i = 0
    while i < len(argv):
        item = argv[i]
        if item == "--" or not item.startswith("-") or item == "-":
            return out + argv[i:]  # the command
        if item in takes_value and i + 1 < len(argv):
            value = argv[i + 1]
            if value.startswith("-") and value != "--" and value.split("=")[0] not in flags:
                out.append(f"{takes_value[item]}={value}")
                i += 2
                continue
            out += argv[i:i + 2]
            i += 2
            continue
        out.append(item)
        i += 1
    return out


def _main(argv: "List[str]", debug: bool) -> int:
    if argv[:1] == ["profile"]:
        return _profile_command(argv[1:])
    parser = None
    ns = _quick_args(argv)
    if ns is None or ns.help:
        parser = _parser()
        ns = parser.parse_args(_joined_values(parser, argv))
        if ns.help:
            parser.print_help()
            return 0
    if ns.version:
        print(_version_line())
        return 0
    if ns.profile is not None or ns.profile_file is not None:
        parser = parser or _parser()
        ns = _with_profile(parser, ns, argv)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if ns.print_profile:
        if command or ns.check:
            raise _UsageError("--print-profile: prints the options as a profile and exits; it runs nothing")
        from . import _profile
        parser = parser or _parser()
        _policy_from_args(ns)  # a profile that would not run is not printed
        sys.stdout.write(_profile.dump(_profile.from_namespace(ns, _profile.schema(parser)),
                                       _profile.schema(parser)))
        return 0
    if ns.json and not ns.check:
        raise _UsageError("--json: only with --check")
    if ns.check:
        if command:
            raise _UsageError("--check: reports what this kernel supports and exits; it runs no command")
        return _check(ns.json)
    policy = _policy_from_args(ns)
    from . import _supervisor
    from . import _threads  # not threading: its import is ~3 ms of the CLI's start (README "Start-up")
    prepared = _supervisor.prepare(policy)
    # The run confines this thread (Landlock); the scratch and upper-layer
    # directories are removed at the end by a thread that is not confined.
    done = _threads.Event()

    def clean() -> None:
        done.wait()
        _supervisor.close_prepared(prepared)
    janitor = _threads.start(clean, (), "sandlock-cleanup")
    try:
        return _run_cli(ns, command, policy, prepared, debug or ns.debug)
    finally:
        done.set()
        janitor.join()


def _with_profile(parser: "Any", ns: "Any", argv: "List[str]") -> "Any":
    """The arguments with the profile's tokens before the user's: a flag then overrides
    the profile's value and adds to its lists (README "Profiles")."""
    from . import _profile
    if ns.profile is not None and ns.profile_file is not None:
        raise _UsageError("--profile-file: not with --profile (a profile names what it extends)")
    if ns.profile is not None:
        profile = _profile.load(ns.profile, parser, by_path=False)
    else:
        profile = _profile.load(ns.profile_file, parser, by_path=True)
    return parser.parse_args(_joined_values(parser, _profile.argv(profile, _profile.schema(parser)) + argv))


def _profile_command(args: "List[str]") -> int:
    """python -m sandlock profile list | show NAME|FILE."""
    from . import _profile
    if args in (["list"],):
        for name in _profile.names():
            try:
                description = _profile.load(name, _parser(), by_path=False).description
            except PolicyError as exc:
                description = f"(broken: {exc})"
            print(f"{name}  {description}".rstrip())
        return 0
    if len(args) == 2 and args[0] == "show":
        parser = _parser()
        profile = _profile.load(args[1], parser)
        keys = _profile.schema(parser)
        sys.stdout.write(_profile.dump({k: e.value for k, e in profile.entries.items()}, keys,
                                       profile.description))
        return 0
    if args in (["-h"], ["--help"]):
        print(f"usage: {_prog()} profile list | show NAME|FILE\n"
              f"  list: the profiles in {_profile.directory()}\n"
              f"  show: a profile with what it extends merged in (README \"Profiles\")\n"
              f"  (to run a program named profile: {_prog()} -- profile ...)")
        return 0
    raise _UsageError(f"{' '.join(['profile'] + args)}: expected 'profile list' or 'profile show NAME'")


def _run_cli(ns: "Any", command: "List[str]", policy: Policy, prepared: "Any", debug: bool) -> int:
    if ns.dump_filter:
        from . import _bpf
        from . import _syscalls
        print(_bpf.disassemble(prepared.program, _syscalls.names(prepared.arch)))
        return 0
    if not command:
        command = [_default_shell(policy)]
    sinks = _result_sinks(ns)  # opened now: once the run has confined this thread, maybe no longer
    try:
        return _run_reported(ns, command, policy, prepared, debug, sinks)
    finally:
        if sinks[0] >= 0:   # the --result-json file; --status-fd's stays the caller's
            os.close(sinks[0])


def _result_sinks(ns: "Any") -> "List[int]":
    """[fd of --result-json FILE, --status-fd N] (those given), checked before the run: exit 125 if not."""
    out: List[int] = []
    if ns.result_json is not None:
        try:
            out.append(os.open(ns.result_json, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666))
        except OSError as exc:
            raise _UsageError(f"--result-json: {_errors.shown(ns.result_json)}: {exc.strerror}") from None
    else:
        out.append(-1)
    if ns.status_fd is not None:
        fd = int(ns.status_fd) if ns.status_fd.isdigit() and len(ns.status_fd) < 10 else -1
        try:
            if fd < 0:
                raise OSError(0, "expected a file descriptor number")
            os.fstat(fd)
        except OSError as exc:
            if out[0] >= 0:
                os.close(out[0])
            raise _UsageError(f"--status-fd: {_errors.shown(ns.status_fd)}: {exc.strerror}") from None
        out.append(fd)
    if any(fd >= 0 for fd in out):
        import json  # noqa: F401  (now: nothing is imported once the run has confined this thread)
    return out


def _write_report(sinks: "List[int]", make: "Any") -> None:
    """Write the report make() builds to the sinks (nothing without --result-json/--status-fd)."""
    if not any(fd >= 0 for fd in sinks):
        return
    import json  # imported by _result_sinks, before the run
    report = make()
    data = (json.dumps(report, indent=2) + "\n").encode()
    for fd in sinks:
        if fd >= 0:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]


def _run_reported(ns: "Any", command: "List[str]", policy: Policy, prepared: "Any", debug: bool,
                  sinks: "List[int]") -> int:
    from . import _supervisor
    if ns.verbose:
        _verbose(policy, prepared)
    args = normalise_argv(command)
    env = _env_bytes(child_environment(policy, os.environ))
    interactive = _interactive()
    session = _supervisor.Session(policy, prepared, args, env, interactive=interactive,
                                  forward_signals=True, debug=debug, restore_signals=False, leave_stub=True)
    for leftover in prepared.leftovers:
        _say(f"an earlier run's upper layer is left at {leftover}: inspect it, then remove it")
    try:
        outcome = session.run()
    except ExecError as exc:  # the report says it too (status 126/127, nothing ran)
        _write_report(sinks, lambda: _report(command, exc.exit_code, exc.exit_code, None, False, str(exc), 0.0,
                                             None, None, (), "", (), {}, prepared.filter_denied))
        raise
    code, returncode, sig = _status(outcome)
    _write_report(sinks, lambda: _report(command, code, returncode, sig, outcome.timed_out, outcome.reason,
                                         outcome.duration, outcome.peak_memory, outcome.processes, outcome.changes,
                                         outcome.workdir_note, outcome.denials, dict(outcome.denials_more),
                                         outcome.filter_denied))
    if ns.verbose:
        _verbose_denials(outcome)
    if outcome.reason:
        _say(outcome.reason)
    if policy.dry_run:
        sys.stderr.write("".join(f"{change.line()}\n" for change in outcome.changes))  # quoted: README
    if outcome.workdir_note:
        _say(outcome.workdir_note)
    return _status(outcome)[0]


def _default_shell(policy: Policy) -> str:
    """$SHELL (inside the root: if it exists there), else /bin/sh."""
    shell = os.environ.get("SHELL") or "/bin/sh"
    if policy.chroot is not None:
        from . import _rootpolicy
        if not shell.startswith("/") or _rootpolicy.host_path(policy.chroot, policy.fs_mount, shell) is None:
            return "/bin/sh"
    return shell


def _interactive() -> bool:
    """stdin is this session's terminal, whether sandlock is the foreground job or a
    background one (`sandlock -- cat &`): job control then reaches the command."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) > 0  # ENOTTY: not our controlling terminal
    except OSError:
        return False


def _prog() -> str:
    """How the user ran sandlock: the installed script, or python -m sandlock."""
    return "sandlock" if os.path.basename(sys.argv[0] or "") == "sandlock" else "python -m sandlock"


def _say(message: str) -> None:
    sys.stderr.write(f"sandlock: {message}\n")
    sys.stderr.flush()


def _fail(message: str) -> int:
    _say(message)
    return 125


def _version_line() -> str:
    import platform
    from . import _syscalls
    try:
        abi = _syscalls.landlock_abi()
    except OSError:
        abi = 0
    return (f"sandlock {__version__} (Python {platform.python_version()}, Linux {platform.release()}, "
            f"Landlock ABI {abi})")


def _verbose(policy: Policy, prepared) -> None:
    from . import _landlock
    out = [f"sandlock: Landlock ABI {prepared.abi}, architecture {prepared.arch}", "sandlock: Landlock rules:"]
    out += [f"sandlock: {line}" for line in _landlock.rule_lines(prepared.child_plan)]
    out += [f"sandlock: network: {line}" for line in prepared.net_rules.describe()] if prepared.net_rules else []
    for right, how in _landlock.gaps(prepared.abi).items():
        out.append(f"sandlock: ABI lacks {right}: {how}")
    out.append(f"sandlock: trapped syscalls: {' '.join(sorted(prepared.traps))}")
    counts = ", ".join(f"{n} {action}" for action, n in sorted(prepared.filter_counts.items()))
    out.append(f"sandlock: BPF program: {len(prepared.program) // 8} instructions; syscalls: {counts}; "
               f"unknown numbers: enosys")
    sys.stderr.write("\n".join(out) + "\n")


def _verbose_denials(outcome: "Any") -> None:
    """-v: what the supervisor denied (all of what --result-json lists, one line each)."""
    out = [f"sandlock: denied {d.syscall} {_errors.shown(d.target) if d.target else '-'}: "
           f"{_errno_name(d.errno)} ({d.rule})" for d in outcome.denials]
    out += [f"sandlock: denied {name} {count} more time(s)" for name, count in outcome.denials_more]
    out.append(f"sandlock: {len(outcome.denials) + sum(n for _, n in outcome.denials_more)} operation(s) denied "
               f"by the supervisor; refusals by Landlock and the filter itself are not seen "
               f"(README \"Results and denials\")")
    sys.stderr.write("\n".join(out) + "\n")


def _errno_name(code: int) -> str:
    import errno
    return errno.errorcode.get(code, str(code))


def _check(as_json: bool) -> int:
    import json
    import platform
    from . import _landlock
    from . import _syscalls
    abi = _syscalls.kernel_landlock_abi()
    features = {
        "kernel": platform.release(),
        "arch": platform.machine(),
        "landlock_abi": abi,
        "landlock_rights": _landlock.describe(_landlock.fs_rights(min(abi, _syscalls.LANDLOCK_ABI_MAX))) if abi else "none",
        "landlock_scopes": abi >= 6,
        "landlock_net": abi >= 4,
        # README "Network": who enforces the network policy on this kernel
        "network_kernel": ("Landlock refuses the command's own TCP connect and bind; " if abi >= 4 else "")
                          + "the seccomp filter refuses raw, packet and other socket families, and UDP/ICMP "
                            "sockets no rule allows",
        "network_supervisor": "decides every IP connect, sendto/sendmsg/sendmmsg message, bind and listen "
                              "(on its own copy) and makes the allowed ones on behalf"
                              + ("" if abi >= 4 else " (alone for TCP: Landlock ABI < 4)")
                              + "; it answers NETLINK_ROUTE (read-only) and, with no network, interface "
                                "ioctls and /proc/net for lo only (README \"Network views\")",
        "seccomp_user_notif": _syscalls.has_user_notif(),
        "seccomp_addfd": _syscalls.has_addfd(),
        "seccomp_addfd_send": _syscalls.has_addfd_send(),
        "seccomp_sync_wake_up": _syscalls.has_sync_wake_up(),
        "seccomp_wait_killable_recv": _syscalls.has_wait_killable_recv(),
        "openat2": _syscalls.has_openat2(),
        "pidfd": _syscalls.has_pidfd(),
        "close_range": _syscalls.has_close_range(),
        "legacy_tiocsti": _syscalls.legacy_tiocsti(),
    }
    try:
        _syscalls.machine()
        arch_ok = True
    except OSError:
        arch_ok = False
    core = (arch_ok and abi >= 1 and features["seccomp_user_notif"] and features["seccomp_addfd_send"]
            and features["openat2"] and features["pidfd"])
    features["verdict"] = "ok" if core else "unsupported"
    if as_json:
        print(json.dumps(features, indent=2))
    else:
        width = max(len(k) for k in features)
        for key, value in features.items():
            mark = "ok" if value not in (False, 0, None, "none", "unsupported") else "missing"
            if key in ("kernel", "arch", "landlock_rights", "verdict", "network_kernel", "network_supervisor"):
                mark = ""
            elif key == "legacy_tiocsti":
                mark = "(TIOCSTI refused by the filter either way)"
            print(f"{key.ljust(width)}  {value}  {mark}".rstrip())
    return 0 if core else 125

