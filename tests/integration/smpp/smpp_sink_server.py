"""An SMSC in its own process for throughput runs: accepts any bind, answers every submit_sm.

Run as a script; it prints its port on the first line of stdout and serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

from smsgate.smpp import (
    BindRequest,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitterResp,
    Handler,
    IncomingPdu,
    Response,
    SessionConfig,
    SmppSession,
    SubmitSm,
    SubmitSmResp,
    serve,
)


def handler_for(session: SmppSession) -> Handler:
    ids = itertools.count(1)

    def handle(pdu: IncomingPdu) -> Response | None:
        if isinstance(pdu, SubmitSm):
            return SubmitSmResp(message_id=f"{next(ids):x}")
        if isinstance(pdu, BindRequest):
            if isinstance(pdu, BindTransceiver):
                return BindTransceiverResp(system_id="sink")
            return BindTransmitterResp(system_id="sink")
        return None

    return handle


async def main() -> None:
    server = await serve(handler_for, "127.0.0.1", 0, config=SessionConfig(window=1000))
    print(server.port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
