"""Servers the tests and the benchmarks start as real processes (no pytest here)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(folder: Path, timeout_s: float = 30) -> tuple[subprocess.Popen, str]:
    """A moto server process (S3's HTTP protocol) on a free port, logging to
    ``folder/moto.log``: the process and its endpoint URL, once it answers.

    Raises:
        RuntimeError: it did not start (the message holds its log).
    """
    port = free_port()
    with open(folder / "moto.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return proc, endpoint
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log_text = (folder / "moto.log").read_text()
                raise RuntimeError(f"moto server did not start: {log_text}") from None
            time.sleep(0.1)
