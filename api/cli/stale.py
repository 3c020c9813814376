"""The owner record of an embedded stack's data directory, and clearing what a crashed stack
left there.

A running stack writes ``<data dir>/aer-serve.json`` (its pid and start time, its Redis socket,
its Celery worker's pid). A stack that starts on the same data directory refuses when that
owner is alive; when it is dead, it stops the worker pool and the Redis the owner left behind
and removes a socket file that nobody answers on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

#: File name of the owner record under the data directory.
OWNER_FILE = "aer-serve.json"
#: Seconds to wait for an orphan Redis to go once told to.
SHUTDOWN_TIMEOUT_S = 10.0


class EmbeddedError(RuntimeError):
    """A part of the embedded stack could not start."""


def redis_ping(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis answers PING at the redis-py ``url``."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


@contextmanager
def owned_data_dir(data_dir: Path, socket_path: Path | None) -> Iterator[Callable[[int], None]]:
    """Take ``data_dir`` for this process until the block exits; yields a function that records
    the Celery worker's pid.

    Raises:
        EmbeddedError: a live stack owns the data directory, or a Redis that no crashed stack
            left answers on ``socket_path``.
    """
    path = data_dir / OWNER_FILE
    previous = _read(path)
    owner = _process(previous.get("pid"), previous.get("started"))
    if owner is not None:
        raise EmbeddedError(f"AER is already running on {data_dir} (pid {owner.pid})")
    if previous:
        _kill_group(previous.get("worker"), previous.get("worker_started"))
    if socket_path is not None:
        _clear_socket(socket_path, owner_died=bool(previous))
    me = {"pid": os.getpid(), "started": psutil.Process().create_time(), "socket": str(socket_path)}
    _write(path, me)

    def record_worker(pid: int) -> None:
        me.update(worker=pid, worker_started=psutil.Process(pid).create_time())
        _write(path, me)

    try:
        yield record_worker
    finally:
        if _read(path).get("pid") == os.getpid():
            path.unlink(missing_ok=True)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def _process(pid: int | None, started: float | None) -> psutil.Process | None:
    """The process ``pid`` if it still runs and is the one started at ``started`` (not a later
    process that reuses the pid)."""
    if not pid or started is None:
        return None
    try:
        proc = psutil.Process(pid)
        alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        return proc if alive and abs(proc.create_time() - started) < 1.0 else None
    except psutil.Error:
        return None


def _kill_group(pid: int | None, started: float | None) -> None:
    """Kill the process group of a dead stack's worker (its pool and beat), if it runs on."""
    proc = _process(pid, started)
    if proc is None:
        return
    log.warning("stopping the worker pool (pid %s) a crashed AER left running", proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # started in its own session: group id = pid
    except (ProcessLookupError, PermissionError):
        pass


def _clear_socket(socket_path: Path, *, owner_died: bool) -> None:
    """Remove a socket nobody answers on; stop a Redis a dead stack left on it."""
    if not socket_path.exists():
        return
    url = f"unix://{socket_path}"
    if not redis_ping(url):
        log.warning("removing the stale Redis socket %s", socket_path)
        socket_path.unlink(missing_ok=True)
        return
    server = listening_process(socket_path)
    orphan = server is not None and server.ppid() == 1
    if not (owner_died or orphan):
        raise EmbeddedError(
            f"a Redis already answers on {socket_path} and no crashed AER left it: "
            "is AER already running?"
        )
    log.warning("stopping the Redis a crashed AER left on %s", socket_path)
    _shutdown(url, server)
    socket_path.unlink(missing_ok=True)


def listening_process(socket_path: Path) -> psutil.Process | None:
    """The process listening on the unix socket ``socket_path``, if one is found."""
    for conn in psutil.net_connections("unix"):
        if conn.laddr == str(socket_path) and conn.pid:
            try:
                return psutil.Process(conn.pid)
            except psutil.Error:
                return None
    return None


def _shutdown(url: str, server: psutil.Process | None) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.shutdown(nosave=True)
    except (redis.ConnectionError, redis.ResponseError, OSError):
        pass  # the server closes the connection as it goes
    finally:
        client.close()
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    while redis_ping(url, timeout=0.5):
        if time.monotonic() > deadline:
            if server is None:
                raise EmbeddedError(f"the Redis on {url} did not stop")
            server.kill()
        time.sleep(0.1)
