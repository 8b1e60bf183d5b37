"""A real server for tests that need one: `ehospital demo` then `ehospital serve` as a subprocess
on a fresh data directory and a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(base: str, server: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not become healthy in {seconds} s:\n{log.read_text(errors='replace')}")


def ehospital_command() -> Path:
    exe = Path(sys.executable).parent / "ehospital"
    if not exe.exists():
        found = shutil.which("ehospital")
        assert found, "the ehospital command is not installed next to the interpreter"
        exe = Path(found)
    return exe


@contextmanager
def live_server(data: Path, env_extra: dict[str, str] | None = None) -> Iterator[str]:
    """The demo hospital served from `data`; yields the base URL, stops the server after."""
    with live_cluster(data, 1, env_extra) as cluster:
        yield cluster.bases[0]


class Cluster:
    """Server processes of one deployment: their URLs, and the means to stop one."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data = data
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.bases: list[str] = []

    def start(self) -> str:
        n = len(self.procs)
        port = free_port()
        log = self.data / f"server-{n}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [str(ehospital_command()), "serve", "--port", str(port), "--log-level", "warning"],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        self.procs.append(proc)
        self.bases.append(base)
        wait_healthy(base, proc, log)
        return base

    def kill(self, index: int) -> None:
        """Stop one process at once (SIGKILL: no goodbye to its sockets)."""
        self.procs[index].kill()
        self.procs[index].wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@contextmanager
def live_cluster(data: Path, processes: int, env_extra: dict[str, str] | None = None) -> Iterator[Cluster]:
    """`ehospital demo` once, then `processes` separate `ehospital serve` processes of the same
    deployment (same data directory and database, each on its own port)."""
    exe = ehospital_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHOSPITAL_")}
    env["EHOSPITAL_DATA_DIR"] = str(data)
    env.update(env_extra or {})
    seeded = subprocess.run([str(exe), "demo"], env=env, capture_output=True, text=True, timeout=180)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    cluster = Cluster(data, env)
    try:
        for _ in range(processes):
            cluster.start()
        yield cluster
    finally:
        cluster.stop()
