"""The demo's sample merchant: the callback receiver a merchant would write, checking each
callback's ``sign`` field the way docs/webhooks.md tells merchants to.

Only the demo keeps state in memory like this; the gateway itself never does.
"""

from __future__ import annotations

import html
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from smsgate.domain.signing import signing_key, verify_form_signature


class SampleMerchant:
    def __init__(self, secrets_by_service: Mapping[int, str], keep: int = 200) -> None:
        self._keys = {sid: signing_key(secret) for sid, secret in secrets_by_service.items()}
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)

    def receive(self, fields: Mapping[str, str]) -> bool:
        """Record one callback; True when its signature holds for one of our services."""
        valid = any(verify_form_signature(fields, key) for key in self._keys.values())
        self.events.appendleft(
            {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "valid": valid,
                "fields": dict(fields),
            }
        )
        return valid

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/merchant", include_in_schema=False)

        @router.api_route("/callbacks", methods=["GET", "POST"], response_class=PlainTextResponse)
        async def callback(request: Request) -> str:
            fields = dict(request.query_params)
            if request.method == "POST":
                fields.update({k: str(v) for k, v in (await request.form()).items()})
            return "OK" if self.receive(fields) else "BAD SIGNATURE"

        @router.get("/events")
        async def events() -> list[dict[str, Any]]:
            return list(self.events)

        @router.get("/", response_class=HTMLResponse)
        async def page() -> str:
            rows = "".join(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>".format(
                    html.escape(e["at"]),
                    "ok" if e["valid"] else "BAD",
                    html.escape(" ".join(f"{k}={v}" for k, v in sorted(e["fields"].items()))),
                )
                for e in self.events
            )
            return (
                "<!doctype html><title>Sample merchant</title><h1>Callbacks received</h1>"
                "<table border=1 cellpadding=4><tr><th>at</th><th>signature</th>"
                f"<th>fields</th></tr>{rows}</table>"
            )

        return router
