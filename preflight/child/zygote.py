"""The fork server: TensorFlow and Keras imported once, a fresh dry-run child forked from it per job.

A dry-run child pays about 5 s of CPU to import TensorFlow and Keras before it builds anything; a check
starts several (the probes after an out-of-memory, each what-if, each confirming run). This process imports
them once, touches nothing that starts TensorFlow's runtime (no device, no allocator, no op), and forks a
child per request: the child's allocator, devices and memory limit are made after the fork from the job's
own environment (`TF_CPU_BFC_MEM_LIMIT_IN_MB` is read when the allocator is created), so every child is as
fresh as a new process, only without the import. The parent side is preflight.engine.zygote.

Protocol, over a SOCK_SEQPACKET Unix socket: the parent sends the path of a request file (job, environment,
working folder) with two file descriptors (the child's log, the events pipe's write end); the server forks,
answers {"pid"}, and once the child ended {"exit": returncode as subprocess gives it}. The server leaves
when its standard input closes (the parent is gone) or after `IDLE_SECONDS` with nothing to do (a server
shared with other processes, `--shared`, only with its parent).

    python -m preflight.child.zygote SOCKET_PATH [--shared]
"""
from __future__ import annotations

import gc
import json
import os
import selectors
import socket
import sys
import time
from pathlib import Path

IDLE_SECONDS = 60.0


def main(argv: list[str]) -> int:
    started = time.monotonic()
    import keras  # noqa: F401 - imported here so that no child imports it again
    import tensorflow  # noqa: F401

    import preflight.child.job  # noqa: F401 - and the child's own modules
    import_seconds = time.monotonic() - started
    # The imports' objects frozen out of the collector: each child starts with the same collector counts
    # (the peak of a step depends on when Python frees tensors) and its pages stay shared.
    gc.collect()
    gc.freeze()

    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    idle_seconds = float("inf") if "--shared" in argv[1:] else IDLE_SECONDS
    server.bind(argv[0])
    server.listen(16)
    print(json.dumps({"ready": True, "import_seconds": import_seconds}), flush=True)

    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin, selectors.EVENT_READ, "parent")
    waiting: dict[int, socket.socket] = {}  # child pid -> the connection its exit goes back on
    idle_since = time.monotonic()
    while True:
        for key, _ in selector.select(timeout=0.1):
            if key.data == "parent":
                if not sys.stdin.buffer.read1(4096):
                    return 0  # the parent is gone
            elif key.data == "accept":
                connection, _ = server.accept()
                pid = _fork_child(connection, server, import_seconds)
                if pid is None:
                    connection.close()
                else:
                    waiting[pid] = connection
        for pid, returncode in _reaped():
            connection = waiting.pop(pid, None)
            if connection is not None:
                try:
                    connection.send(json.dumps({"exit": returncode}).encode())
                except OSError:
                    pass  # the parent stopped listening
                connection.close()
        if waiting:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > idle_seconds:
            return 0


def _fork_child(connection: socket.socket, server: socket.socket, import_seconds: float) -> int | None:
    try:
        message, fds, _, _ = socket.recv_fds(connection, 4096, 2)
        request = json.loads(Path(message.decode()).read_text(encoding="utf-8"))
        log_fd, events_fd = fds
    except (OSError, ValueError):
        return None
    pid = os.fork()
    if pid == 0:  # the child: never returns
        server.close()
        connection.close()
        _run_child(request, log_fd, events_fd, import_seconds)
    os.close(log_fd)
    os.close(events_fd)
    connection.send(json.dumps({"pid": pid}).encode())
    return pid


def _run_child(request: dict, log_fd: int, events_fd: int, import_seconds: float) -> None:
    code = 1
    try:
        os.setsid()  # its own process group: the parent kills the group on a timeout
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        if sys.path and sys.path[0] == os.getcwd():  # where `python -m preflight.child` there would look first
            sys.path[0] = request["cwd"]
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["PREFLIGHT_EVENTS_FD"] = str(events_fd)
        # the child's clock starts where a fresh process's would: before the imports done here
        os.environ["PREFLIGHT_STARTUP_SECONDS"] = f"{import_seconds:.3f}"
        for entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
            if entry and entry not in sys.path:
                sys.path.insert(0, entry)
        sys.argv = ["preflight.child", request["job_path"]]
        gc.collect()  # the collector's counts as every child's, whatever the server did before the fork
        from preflight.child.job import main as child_main

        code = child_main([request["job_path"]])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - what a fresh process would print before it died
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reaped() -> list[tuple[int, int]]:
    """Children that ended, with their return code as subprocess gives it (-signal when killed)."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
