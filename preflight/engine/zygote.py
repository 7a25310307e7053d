"""Parent side of the fork server (preflight.child.zygote): dry-run children forked from a process that has
TensorFlow and Keras imported already, instead of a fresh interpreter that imports them each time.

Only TensorFlow-backend children on Linux use it (JAX's too under `all`, `usable`), and only while the
variables read when TensorFlow is imported (`IMPORT_TIME_VARIABLES`) are what the server was started with;
otherwise, or when the server cannot start, the runner starts a fresh process as before. One server per
parent process, started on the first child it can serve and stopped when the check that started it returns
(`scoped`, on check(), check_search() and the CLI's search check), so that no process holding TensorFlow's
import lingers beside a notebook.
`PREFLIGHT_FORK_SERVER=0` turns it off; `keep` keeps it between checks, for a process that runs many: it then
leaves by itself 60 s after its last child, or with its parent; `all` keeps it and forks the verdict's children
too (engine.runner.forkable: a test suite's setting). A process given `PREFLIGHT_FORK_SERVER_SOCKET` (a
server another process started with `share`: the test suite's, for the CLI processes its tests start) forks
its children there while that server's import-time variables are its children's.
"""
from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# Read as TensorFlow and Keras are imported (the rest, the allocator's and the devices', after the fork).
IMPORT_TIME_VARIABLES = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "TF_CPU_ALLOCATOR_USE_BFC", "TF_ENABLE_ONEDNN_OPTS",
                         "PYTHONPATH", "TF_USE_LEGACY_KERAS", "JAX_PLATFORMS", "JAX_ENABLE_X64")
START_SECONDS = 120.0

SHARED_VARIABLE = "PREFLIGHT_FORK_SERVER_SOCKET"

_lock = threading.Lock()
_server: "_Server | None" = None   # this process's own, started on its first child
_shared: "dict[tuple, _Server]" = {}  # those this process started for others too (share), by import key


class ForkedChild:
    """A forked child with what the runner uses of subprocess.Popen: pid, poll(), wait(), returncode."""

    def __init__(self, connection: socket.socket, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()
        self._connection = connection
        threading.Thread(target=self._await_exit, daemon=True).start()

    def _await_exit(self) -> None:
        try:
            message = self._connection.recv(4096)
            self.returncode = int(json.loads(message)["exit"]) if message else -9
        except (OSError, ValueError, KeyError):
            self.returncode = -9  # the server went away: the child is not ours to wait for any more
        finally:
            self._connection.close()
            self._ended.set()

    def poll(self) -> int | None:
        return self.returncode if self._ended.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired("preflight.child", timeout or 0)
        return self.returncode


class _Server:
    def __init__(self, env: dict[str, str], shared: bool = False):
        # the server's own environment: not one child's events pipe, nor where to find other servers
        env = {k: v for k, v in env.items() if k not in ("PREFLIGHT_EVENTS_FD", SHARED_VARIABLE)}
        self.key = _import_key(env)
        self.folder = tempfile.mkdtemp(prefix="preflight-zygote-")
        self.socket_path = os.path.join(self.folder, "socket")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "preflight.child.zygote", self.socket_path, *(["--shared"] if shared else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=os.getcwd())
        ready = _read_line(self.process, START_SECONDS)
        if not ready.get("ready"):
            self.stop()
            raise OSError("the fork server did not start")
        # what another process checks before it forks its children here (_shared_socket)
        Path(_key_path(self.socket_path)).write_text(json.dumps(self.key), encoding="utf-8")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for path in (self.socket_path, _key_path(self.socket_path)):
            try:
                os.unlink(path)
            except OSError:
                pass
        try:
            os.rmdir(self.folder)
        except OSError:
            pass


def _fork_at(socket_path: str, job_path: str, env: dict[str, str], log_fd: int, events_fd: int) -> ForkedChild:
    """Ask the server listening at socket_path for a child running job_path; OSError when it does not answer."""
    request = Path(job_path).with_name("fork-request.json")
    request.write_text(json.dumps({"job_path": job_path, "env": env, "cwd": os.getcwd()}), encoding="utf-8")
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(socket_path)
        socket.send_fds(connection, [str(request).encode()], [log_fd, events_fd])
        connection.settimeout(30)
        answer = connection.recv(4096)
        connection.settimeout(None)
        pid = int(json.loads(answer)["pid"])
    except (OSError, ValueError, KeyError):
        connection.close()
        raise OSError("the fork server did not start the child")
    return ForkedChild(connection, pid)


def _key_path(socket_path: str) -> str:
    return socket_path + ".key"


def _shared_socket(env: dict[str, str]) -> str | None:
    """The socket of a server shared with this process whose imports are this child's, or None."""
    key = _import_key(env)
    own = _shared.get(key)
    if own is not None and own.alive():
        return own.socket_path
    for path in filter(None, env.get(SHARED_VARIABLE, "").split(os.pathsep)):
        try:
            if tuple(json.loads(Path(_key_path(path)).read_text(encoding="utf-8"))) == key:
                return path
        except (OSError, ValueError, TypeError):
            continue  # gone with its parent
    return None


def _import_key(env: dict[str, str]) -> tuple:
    return tuple(env.get(name) for name in IMPORT_TIME_VARIABLES)


def _read_line(process: subprocess.Popen, timeout: float) -> dict:
    """The server's first line ({"ready": true, ...}), or {} when it ends or stays silent."""
    found: list[bytes] = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    try:
        return json.loads(found[0]) if found and found[0] else {}
    except ValueError:
        return {}


def usable(env: dict[str, str]) -> bool:
    """TensorFlow-backend children; JAX's too under `all` only: importing JAX starts a thread of its own, and
    forking past a thread is a risk a test suite may take (a hung child is a failed test), a user's check not."""
    mode = env.get("PREFLIGHT_FORK_SERVER", "1")
    backends = ("tensorflow", "jax") if mode == "all" else ("tensorflow",)
    return (sys.platform.startswith("linux") and env.get("KERAS_BACKEND") in backends and mode != "0"
            and hasattr(socket, "send_fds"))


def start_child(job_path: str, env: dict[str, str], log_fd: int, events_fd: int) -> ForkedChild | None:
    """A child forked from the server (started now if need be), or None: the caller starts a fresh process."""
    global _server
    if not usable(env):
        return None
    shared = _shared_socket(env)
    if shared is not None:
        try:
            return _fork_at(shared, job_path, env, log_fd, events_fd)
        except OSError:
            pass  # it went away: this process's own
    with _lock:
        if _server is not None and (not _server.alive() or _server.key != _import_key(env)):
            _server.stop()
            _server = None
        if _server is None:
            try:
                _server = _Server(env)
            except OSError:
                return None
        server = _server
    try:
        return _fork_at(server.socket_path, job_path, env, log_fd, events_fd)
    except OSError:
        return None


def share(env: dict[str, str]) -> str:
    """Start a server for children with this environment's imports that other processes may fork from too;
    the value they are given as PREFLIGHT_FORK_SERVER_SOCKET (the sockets of every server shared so far). It
    stays until this process ends or stop_shared(); stop() leaves it. OSError when it cannot start."""
    with _lock:
        key = _import_key(env)
        if key not in _shared or not _shared[key].alive():
            _shared[key] = _Server(env, shared=True)
        return os.pathsep.join(server.socket_path for server in _shared.values())


def stop_shared() -> None:
    with _lock:
        for server in _shared.values():
            server.stop()
        _shared.clear()


def stop() -> None:
    """Stop the server now (it also leaves by itself, idle or orphaned)."""
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


def scoped(function):
    """A check's door: the fork server it started is gone when the check returns (no process lingers in a
    notebook holding TensorFlow's import)."""
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            if os.environ.get("PREFLIGHT_FORK_SERVER") not in ("keep", "all"):
                stop()
    return wrapped


def server_pid() -> int | None:
    """This process's own running server's pid."""
    with _lock:
        return _server.process.pid if _server is not None and _server.alive() else None


def server_pids() -> set[int]:
    """The running servers this process started, its own and the shared ones (a test that looks for processes
    left behind knows they are meant to stay)."""
    with _lock:
        servers = [_server, *_shared.values()]
        return {server.process.pid for server in servers if server is not None and server.alive()}
