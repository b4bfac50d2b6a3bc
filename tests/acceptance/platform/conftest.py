"""The gateway as its users run it: the real command line in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def smsgate(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smsgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Gateway:
    def __init__(self, env: dict[str, str], port: int, args: list[str]) -> None:
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.args = args
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smsgate", "serve", *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gateway exited: {self.process.stdout.read() if self.process.stdout else ''}"
                )
            try:
                if httpx2.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("gateway did not become ready in 30 s")

    def stop(self) -> str:
        assert self.process is not None
        self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output


@pytest.fixture
def gateway_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SMSGATE_DATABASE_URL=database_url,
        SMSGATE_HTTP_PORT=str(free_port()),
        SMSGATE_WEBHOOK_ALLOW_PRIVATE="true",
        SMSGATE_ADMIN_TOKEN="admin-test-token",
    )
    return env


@pytest.fixture
def gateway(gateway_env: dict[str, str]) -> Iterator[Gateway]:
    gw = Gateway(gateway_env, int(gateway_env["SMSGATE_HTTP_PORT"]), ["--no-links"])
    yield gw
    if gw.process is not None and gw.process.poll() is None:
        gw.stop()
