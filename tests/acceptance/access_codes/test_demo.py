"""``smsgate demo`` as a user runs it (a subprocess): the access-code walk-through it prints
works, from the subscriber's SMS to the merchant's check."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from tests.acceptance.access_codes.conftest import free_port


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smsgate",
            "demo",
            "--port",
            str(port),
            "--database",
            str(tmp_path / "demo.db"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the demo did not start in 30 s"
            try:
                links = httpx2.get(
                    f"{url}/api/v1/links", headers={"Authorization": "Bearer demo-admin"}
                )
                if links.status_code == 200 and "bound" in links.text:
                    break
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_the_demo_walk_through(demo: str) -> None:
    phone = "359888000001"
    with httpx2.Client(base_url=demo, timeout=10) as client:
        sent = client.post(
            "/sim/mo",
            json={"msisdn": phone, "short_number": "1851", "text": "KOD", "operator": "sim-bg"},
        )
        assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 10
        inbox: list[dict[str, str]] = []
        while not inbox:
            assert time.monotonic() < deadline, "no reply reached the handset in 10 s"
            inbox = client.get(f"/sim/inbox/{phone}").json()
            time.sleep(0.05)
        match = re.fullmatch(r"Your code: ([A-Z0-9]{8})", inbox[0]["text"])
        assert match, inbox
        params = {"user_id": 1, "service_id": 102, "code": match.group(1)}
        assert client.get("/users/check_code.php", params=params).text == "CODE_OK"
        assert client.get("/users/check_code.php", params=params).text == "CODE_EXPIRED"
