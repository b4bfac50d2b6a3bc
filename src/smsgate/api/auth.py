"""Merchant authentication for the JSON API: an API key in ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``.

Keys are stored as SHA-256 digests (``merchants.api_key_hash``, unique): the presented key is
hashed and looked up through that index, so no stored key is ever compared byte by byte and
the lookup takes the same time whichever key is presented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from smsgate.api.deps import RuntimeDep
from smsgate.api.problems import Problem
from smsgate.security import hash_api_key
from smsgate.store.models import Merchant

# Declared for the OpenAPI document (both schemes are accepted); auto_error=False lets us
# answer with our own problem details instead of FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="The merchant's API key as a bearer token.")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The merchant's API key."
)

MAX_KEY_LENGTH = 256


@dataclass(frozen=True, slots=True)
class MerchantPrincipal:
    """The merchant a request acts for."""

    id: int
    login: str
    currency: str


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail)


async def authenticate_merchant(
    request: Request,
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> MerchantPrincipal:
    """The merchant whose API key the request carries; 401 problem details otherwise."""
    presented = bearer.credentials if bearer is not None else api_key
    if not presented:
        raise _unauthorized("Send the API key as 'Authorization: Bearer <key>' or 'X-API-Key'.")
    if len(presented) > MAX_KEY_LENGTH:
        raise _unauthorized("The API key is not valid.")
    async with runtime.read_sessions() as session:
        row = (
            await session.execute(
                select(Merchant.id, Merchant.login, Merchant.currency, Merchant.status).where(
                    Merchant.api_key_hash == hash_api_key(presented)
                )
            )
        ).one_or_none()
    if row is None or row.status != "active":
        raise _unauthorized("The API key is not valid.")
    principal = MerchantPrincipal(row.id, row.login, row.currency)
    request.state.merchant = principal
    return principal


CurrentMerchant = Annotated[MerchantPrincipal, Depends(authenticate_merchant)]
