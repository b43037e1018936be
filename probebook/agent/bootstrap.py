"""Start the agent in this process: engine, audit log, control API, HTTP server, broker link.

>>> import probebook.agent as pa
>>> running = pa.start(name="shop", token="a-long-random-token")         # doctest: +SKIP
>>> running.url                                                           # doctest: +SKIP
'http://127.0.0.1:40123'

`start` is idempotent within a process. Each argument falls back to an environment variable
(``PROBEBOOK_NAME``, ``_HOST``, ``_PORT``, ``_TOKEN``, ``_TOKEN_FILE``, ``_BROKER``,
``_PORT_FILE``, ``_AUDIT``, ``_TLS_CERT``, ``_TLS_KEY``, ``_READ_TIMEOUT``), so containers and
`probebook agent run` need no code change. After ``fork`` (pre-fork servers such as gunicorn),
the child retires the inherited agent -- restoring any probed code -- and starts a fresh one with
its own instance id, on a new port, recorded in its own port file, holding the parent's live
probes (same ids, what is left of their TTL) before the worker serves anything.

Where it listens is written to `port_file` as ``{"url", "pid", "ppid", "instance_id", "service"}``;
a directory (existing, or a path ending in ``/``) gets one ``<pid>.json`` per process.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from probebook.errors import ProbebookError
from probebook.protocol.kinds import ENDED
from probebook.protocol.portfiles import remove_ended_children, remove_own
from probebook.protocol.tokens import Tokens, private_dir, write_token_file

from .control.audit import AuditLog, read_key
from .control.control import ControlAPI
from .engine import Agent, backend_problem
from .control.server import DEFAULT_READ_TIMEOUT, AgentServer

__all__ = ["RunningAgent", "start", "current", "AgentConfig"]


@dataclass(frozen=True)
class AgentConfig:
    """Everything `start` was asked for, after environment fallbacks."""

    name: str
    host: str
    port: int
    tokens: Tokens
    token_file: Optional[str]
    broker: Optional[str]
    tls_cert: Optional[str]
    tls_key: Optional[str]
    audit_path: str
    audit_key: Optional[bytes]
    port_file: Optional[str]
    read_timeout: float


@dataclass
class RunningAgent:
    """The agent running in this process and where it can be reached."""

    config: AgentConfig
    agent: Agent
    control: ControlAPI
    audit: AuditLog
    instance_id: str
    pid: int
    server: Optional[AgentServer] = None
    broker: Any = None
    port_file: Optional[str] = None
    problems: List[str] = field(default_factory=list)

    @property
    def service(self) -> str:
        return self.config.name

    @property
    def url(self) -> str:
        return self.server.url if self.server is not None else ""

    def stop(self) -> None:
        """Stop serving, remove every probe (restoring the code) and the port file."""
        global _RUNNING
        for part in (self.broker, self.server):
            try:
                if part is not None and hasattr(part, "stop"):
                    part.stop()
            except Exception:
                pass
        self.agent.close()
        remove_own(self.port_file, self.pid)
        with _LOCK:
            if _RUNNING is self:
                _RUNNING = None


_LOCK = threading.RLock()
_RUNNING: Optional[RunningAgent] = None
_FORK_HOOKS = False
_HELD: List[Any] = []
_CHILD = False  # set in a forked child: fixed ports and port files belong to the parent


def current() -> Optional[RunningAgent]:
    """The agent started in this process, if any."""
    running = _RUNNING
    return running if running is not None and running.pid == os.getpid() else None


def start(name: Optional[str] = None, host: Optional[str] = None, port: Optional[int] = None,
          token: Optional[str] = None, token_file: Optional[str] = None, broker: Optional[str] = None,
          tls_cert: Optional[str] = None, tls_key: Optional[str] = None, audit_path: Optional[str] = None,
          port_file: Optional[str] = None) -> RunningAgent:
    """Start the agent once per process (a second call returns the first one's `RunningAgent`).

    Raises `ProbebookError` only for configuration mistakes (unreadable token file, bad port);
    a server that cannot listen is reported in health and on stderr, never raised.
    """
    global _RUNNING
    with _LOCK:
        running = current()
        if running is not None:
            return running
        config = _resolve(name, host, port, token, token_file, broker, tls_cert, tls_key, audit_path, port_file)
        _RUNNING = _launch(config)
        _install_fork_hooks()
        _leave_on_sigterm()
        return _RUNNING


# ---------------------------------------------------------------- configuration
def _resolve(name: Optional[str], host: Optional[str], port: Optional[int], token: Optional[str],
             token_file: Optional[str], broker: Optional[str], tls_cert: Optional[str], tls_key: Optional[str],
             audit_path: Optional[str], port_file: Optional[str]) -> AgentConfig:
    env = os.environ
    name = name or env.get("PROBEBOOK_NAME") or _default_name()
    raw_port = port if port is not None else env.get("PROBEBOOK_PORT", "0")
    try:
        port_num = int(raw_port)
        if not 0 <= port_num <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        raise ProbebookError(f"port: expected a number from 0 to 65535, got {raw_port!r}") from None
    token = token or env.get("PROBEBOOK_TOKEN") or None
    token_file = token_file or env.get("PROBEBOOK_TOKEN_FILE") or None
    if token:
        tokens = Tokens.single(token)
    elif token_file:
        tokens = Tokens.from_file(token_file)
    else:
        token_file, secret = write_token_file()
        tokens = Tokens.single(secret)
        print(f"probebook: no token given; generated one in {token_file}", file=sys.stderr)
    try:
        read_timeout = float(env.get("PROBEBOOK_READ_TIMEOUT", DEFAULT_READ_TIMEOUT))
    except ValueError:
        raise ProbebookError("PROBEBOOK_READ_TIMEOUT: expected a number of seconds") from None
    audit = audit_path or env.get("PROBEBOOK_AUDIT") or _default_audit_path(name)
    try:
        audit_key = read_key(env["PROBEBOOK_AUDIT_KEY_FILE"]) if env.get("PROBEBOOK_AUDIT_KEY_FILE") else None
    except ValueError as exc:
        raise ProbebookError(f"PROBEBOOK_AUDIT_KEY_FILE: {exc}") from None
    if _names_dir(audit):
        audit = os.path.join(audit, f"audit-{_safe(name)}.jsonl")
    return AgentConfig(
        name=name, host=host or env.get("PROBEBOOK_HOST") or "127.0.0.1", port=port_num, tokens=tokens,
        token_file=os.path.abspath(token_file) if token_file else None,
        broker=broker or env.get("PROBEBOOK_BROKER") or None,
        tls_cert=tls_cert or env.get("PROBEBOOK_TLS_CERT") or None,
        tls_key=tls_key or env.get("PROBEBOOK_TLS_KEY") or None,
        audit_path=os.path.abspath(audit), audit_key=audit_key,
        port_file=_absolute(port_file or env.get("PROBEBOOK_PORT_FILE")),
        read_timeout=read_timeout,
    )


def _absolute(path: Optional[str]) -> Optional[str]:
    """An absolute path that keeps a trailing separator (it marks a directory)."""
    if not path:
        return None
    return os.path.abspath(path) + (os.sep if path.endswith(("/", os.sep)) else "")


def _default_name() -> str:
    """The program's name: the script, the ``-m`` module, or the executable."""
    argv = list(getattr(sys, "orig_argv", None) or getattr(sys, "argv", None) or [])
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            return argv[i + 1].split(".")[0]
        if i > 0 and arg.endswith(".py"):
            return os.path.splitext(os.path.basename(arg))[0]
    exe = os.path.basename(argv[0]) if argv and argv[0] else "python"
    return exe if not exe.startswith("python") else "python"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "service"


def _default_audit_path(name: str) -> str:
    return os.path.join(private_dir(), f"audit-{_safe(name)}.jsonl")


# ---------------------------------------------------------------- launching
def _launch(config: AgentConfig) -> RunningAgent:
    agent = Agent()
    audit = AuditLog(config.audit_path, config.audit_key)
    instance_id = f"{_safe(socket.gethostname())}-{os.getpid()}-{os.urandom(3).hex()}"
    control = ControlAPI(agent, audit, config.name, instance_id)
    running = RunningAgent(config, agent, control, audit, instance_id, os.getpid())
    if audit.append("agent", "start", instance_id, "ok") is None:  # health reports it while it lasts
        print(f"probebook: {audit.error}", file=sys.stderr)
    port = 0 if _CHILD else config.port
    try:
        running.server = _serve(running, port)
    except ProbebookError as exc:
        if port == 0:
            _report(running, str(exc))
        else:  # a fixed port taken (another worker, a stale process): serve anyway, the port file says where
            _report(running, f"{exc}; listening on a free port instead")
            try:
                running.server = _serve(running, 0)
            except ProbebookError as exc2:
                _report(running, str(exc2))
    if backend_problem():  # it serves (health says why), but refuses every probe with this line
        _report(running, backend_problem())
    if running.server is not None:
        running.port_file = _write_port_file(config.port_file, running)
    if config.broker:
        running.broker = _start_broker(running)
    atexit.register(_at_exit, running)
    return running


def _serve(running: RunningAgent, port: int) -> AgentServer:
    cfg = running.config
    server = AgentServer(running.control, cfg.tokens, cfg.host, port, cfg.tls_cert, cfg.tls_key,
                         read_timeout=cfg.read_timeout,
                         on_moved=lambda url: _write_port_file(cfg.port_file, running))
    server.start()
    return server


def _report(running: RunningAgent, problem: str) -> None:
    running.problems.append(problem)
    running.control.add_health_check("start", lambda: {"ok": False, "error": "; ".join(running.problems)})
    print(f"probebook: {problem}", file=sys.stderr)


def _start_broker(running: RunningAgent) -> Any:
    try:
        from .control.broker import BrokerLink

        link = BrokerLink(running.control, running.config.broker, running.service, running.instance_id,
                          running.config.tokens)
        link.start()
        return link
    except Exception as exc:  # the broker is optional: serve over HTTP regardless
        _report(running, f"broker {running.config.broker}: {type(exc).__name__}: {exc}")
        return None


# ---------------------------------------------------------------- port files
def _names_dir(path: str) -> bool:
    """A path that names a directory: an existing one, or one written with a trailing separator."""
    return path.endswith(("/", os.sep)) or os.path.isdir(path)


def _port_file_path(spec: Optional[str]) -> Optional[str]:
    if not spec:
        return None
    if _names_dir(spec):
        return os.path.join(spec, f"{os.getpid()}.json")
    if _CHILD:  # the named file is the parent's
        root, ext = os.path.splitext(spec)
        return f"{root}.{os.getpid()}{ext or '.json'}"
    return spec


def _write_port_file(spec: Optional[str], running: RunningAgent) -> Optional[str]:
    path = _port_file_path(spec)
    if path is None:
        return None
    info: Dict[str, Any] = {"url": running.url, "pid": running.pid, "ppid": os.getppid(),
                            "instance_id": running.instance_id, "service": running.service}
    if running.config.token_file:
        info["token_file"] = running.config.token_file
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(info, fh)
        os.replace(tmp, path)
    except OSError as exc:
        _report(running, f"cannot write port file {path}: {exc.strerror or exc}")
        return None
    return path


def _at_exit(running: RunningAgent) -> None:
    if os.getpid() == running.pid:
        try:  # a reader following this process reads its last events before it goes
            running.control.wait_read(_exit_wait())
        except Exception:  # noqa: BLE001 - exiting must never fail here
            pass
        remove_own(running.port_file, running.pid)
        spec = running.config.port_file  # a supervisor leaves after its workers: those SIGKILLed left files
        if spec and _names_dir(spec):
            remove_ended_children(spec, running.pid)


def _exit_wait() -> float:
    try:
        return max(0.0, float(os.environ.get("PROBEBOOK_EXIT_WAIT", "2")))
    except ValueError:
        return 2.0


# ---------------------------------------------------------------- SIGTERM
def _leave_on_sigterm() -> None:
    """Where the program leaves SIGTERM at its default, the process dies of it without running `atexit`,
    and its port file stays behind (uvicorn's workers restore the default and raise the signal again
    after their own shutdown). This handler does what the exit would have done, then dies of the same
    signal: the exit status is the program's. A program that sets its own handler replaces this one."""
    if os.name != "posix" or threading.current_thread() is not threading.main_thread() or \
            os.environ.get("PROBEBOOK_SIGTERM", "1") == "0":
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or signals unavailable: leave them be
        pass


def _on_sigterm(signum: int, _frame: Any) -> None:
    running = current()
    if running is not None:
        # the last events are read as at a normal exit, from a thread of its own: the signal may have
        # come while this thread held one of the agent's locks, so the wait must never hold the exit
        waiter = threading.Thread(target=_at_exit, args=(running,), name="probebook-exit", daemon=True)
        waiter.start()
        waiter.join(_exit_wait() + 0.5)
        if waiter.is_alive():  # the wait did not finish: the port file still goes
            remove_own(running.port_file, running.pid)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


# ---------------------------------------------------------------- fork
def _fork_locks(agent: Agent) -> List[Any]:
    """The locks a fork must not catch half-held, in the order the engine takes them."""
    locks = [getattr(agent, "_lock", None)]
    backend = getattr(agent, "_backend", None)
    locks.append(getattr(backend, "_lock", None))
    locks.append(getattr(getattr(agent, "buffer", None), "_cond", None))
    return [lock for lock in locks if lock is not None]


def _before_fork() -> None:
    _LOCK.acquire()
    running = current()
    if running is not None:
        locks = _fork_locks(running.agent) + [running.audit._lock]
        for lock in locks:
            lock.acquire()
        _HELD[:] = locks


def _release_held() -> None:
    for lock in reversed(_HELD):
        lock.release()
    del _HELD[:]
    _LOCK.release()


def _after_fork_in_parent() -> None:
    _release_held()


def _after_fork_in_child() -> None:
    global _RUNNING, _CHILD
    parent = _RUNNING
    _release_held()
    if parent is None:
        return
    _CHILD = True
    _RUNNING = None
    try:
        if parent.server is not None:
            parent.server.abandon()
        inherited = _live_specs(parent.agent)
        parent.agent.close()  # restore code the parent probed: this worker's agent starts afresh
        cfg = parent.config
        _RUNNING = _launch(cfg)
        _inherit(_RUNNING, inherited)
    except Exception as exc:  # a worker must start even when its agent cannot
        print(f"probebook: agent not started in worker {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)


def _live_specs(agent: Agent) -> List[Dict[str, Any]]:
    """The parent's live probes (pending ones included: a gunicorn master holds its workers' probes
    pending, never importing the app), each with what is left of its TTL, and `pending: true`: the parent
    took it, so a worker that has not imported its file yet holds it instead of refusing it."""
    now = time.monotonic()
    return [{**p.spec.to_dict(), "id": p.id, "ttl": max(1.0, round(p.expires_at - now, 3)), "pending": True}
            for p in list(agent._probes.values()) if p.status not in ENDED]


def _inherit(running: RunningAgent, specs: List[Dict[str, Any]]) -> None:
    """A worker forked from a probed parent starts with the parent's probes, before it serves its
    first request (a worker that replaces a recycled one is probed like the one it replaces). Each
    is audited; one that fails is said on stderr and the others still go on."""
    for spec in specs:
        try:
            running.agent.add_probe(spec)
            running.audit.append("agent", "inherit", str(spec["id"]), "ok")
        except Exception as exc:  # noqa: BLE001 - a probe the worker cannot take must not stop the worker
            running.audit.append("agent", "inherit", str(spec["id"]), f"error: {type(exc).__name__}: {exc}")
            print(f"probebook: worker {os.getpid()} could not take probe {spec['id']}: {exc}", file=sys.stderr)


def _install_fork_hooks() -> None:
    global _FORK_HOOKS
    if _FORK_HOOKS or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
    _FORK_HOOKS = True
