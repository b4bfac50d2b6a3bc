"""The hosted access page: instructions, the code form, the redirect with a signed token."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx2
from sqlalchemy import select
from tests.integration.access_codes.conftest import HOSTED_SECRET, code_of, send_mo

from smsgate.domain.access_tokens import verify_token
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.store.models import AccessCode, CodeCheck


async def test_the_page_shows_what_to_send_where_and_for_how_much(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.get("/access/107")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "WEB" in page and "1851" in page and "2.40 BGN" in page
    assert '<form method="post" action="/access/107">' in page


async def test_a_valid_code_redirects_with_a_signed_token(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    outcome = await send_mo(runtime, "WEB", message_id="m-1")
    code = await code_of(runtime, outcome.mo_id)
    # The browser is not on the allowlist (which names the merchant's servers): no matter.
    response = await client.post("/access/107", data={"code": f" {code.lower()} "})
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/paid")
    query = parse_qs(location.query)
    assert query["lang"] == ["bg"]
    now = int(clock.now().timestamp())
    token = verify_token(query["token"][0], HOSTED_SECRET, service_id=107, now=now)
    async with runtime.sessions() as session:
        code_id = await session.scalar(select(AccessCode.id).where(AccessCode.code == code))
        check = await session.scalar(select(CodeCheck).where(CodeCheck.code_id == code_id))
    assert token.code_id == code_id and token.expires == now + 600
    assert check is not None and check.via == "hosted" and check.answer == "CODE_OK"
    # The code had one use: the second try explains why it is refused.
    again = await client.post("/access/107", data={"code": code})
    assert again.status_code == 200
    assert "CODE_EXPIRED" in again.text and "no longer valid" in again.text


async def test_an_unknown_code_shows_the_form_again_escaped(client: httpx2.AsyncClient) -> None:
    response = await client.post("/access/107", data={"code": '<script>alert("x")</script>'})
    assert response.status_code == 200
    assert "CODE_NOT_FOUND" in response.text
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text
    empty = await client.post("/access/107", data={"code": "  "})
    assert "INVALID_INPUT" in empty.text


async def test_services_without_a_return_url_have_no_page(client: httpx2.AsyncClient) -> None:
    for path in ("/access/102", "/access/201", "/access/999", "/access/abc", "/access/0"):
        assert (await client.get(path)).status_code == 404, path
    assert (await client.post("/access/102", data={"code": "X"})).status_code == 404
