"""A request body already read, handed again to Starlette's form parser.

The seed endpoints and the operator intake read the body themselves (to bound it and to parse
urlencoded forms cheaply), and give multipart bodies to ``Request.form()``, which reads from an
ASGI ``receive``: this one delivers the bytes once, then a disconnect.
"""

from __future__ import annotations

from starlette.types import Message, Receive


def replayed(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
