"""The merchant's JSON API for access codes: the check, the trace, authentication, problems."""

from __future__ import annotations

import httpx2
from tests.integration.access_codes.conftest import API_KEY, OTHER_API_KEY, code_of, send_mo

from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def _issue(runtime: Runtime, keyword: str, message_id: str, msisdn: str) -> str:
    outcome = await send_mo(runtime, keyword, message_id=message_id, msisdn=msisdn)
    return await code_of(runtime, outcome.mo_id)


async def test_check_as_json(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    code = await _issue(runtime, "KOD", "m-1", "359888000001")
    url = "/api/v1/services/102/codes/check"
    first = await client.post(url, json={"code": code.lower(), "ip": "203.0.113.1"}, headers=AUTH)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["answer"] == "CODE_OK" and body["ok"] is True and body["uses_left"] == 0
    assert body["expires_at"].startswith("2026-01-01T01:00:00")
    second = await client.post(url, json={"code": code}, headers={"X-API-Key": API_KEY})
    assert second.json()["answer"] == "CODE_EXPIRED" and second.json()["ok"] is False
    missing = await client.post(url, json={"code": "NOPE2345"}, headers=AUTH)
    assert missing.json() == {
        "answer": "CODE_NOT_FOUND",
        "ok": False,
        "code_id": None,
        "expires_at": None,
        "uses_left": None,
    }


async def test_authentication_is_required(client: httpx2.AsyncClient) -> None:
    url = "/api/v1/services/102/codes/check"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "x" * 1000}):
        response = await client.post(url, json={"code": "ABC"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401


async def test_another_merchants_service_is_not_found(client: httpx2.AsyncClient) -> None:
    for service_id in (202, 201, 999):
        response = await client.post(
            f"/api/v1/services/{service_id}/codes/check", json={"code": "ABC"}, headers=AUTH
        )
        assert response.status_code == 404
        assert response.json()["title"] == "Not Found"
    other = await client.get(
        "/api/v1/services/102/codes", headers={"Authorization": f"Bearer {OTHER_API_KEY}"}
    )
    assert other.status_code == 404


async def test_bad_input_gets_problem_details(client: httpx2.AsyncClient) -> None:
    url = "/api/v1/services/102/codes/check"
    for body in ({}, {"code": ""}, {"code": "A" * 65}, {"code": 12}, {"code": "A", "ip": "x" * 65}):
        response = await client.post(url, json=body, headers=AUTH)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    response = await client.post(url, content=b"\xff{", headers=AUTH)
    assert response.status_code == 422
    bad_id = await client.post("/api/v1/services/-1/codes/check", json={"code": "A"}, headers=AUTH)
    assert bad_id.status_code == 422


async def test_codes_are_listed_newest_first_with_filters_and_pages(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    codes = []
    for i in range(5):
        codes.append(await _issue(runtime, "KOD", f"m-{i}", f"35988800000{i % 2}"))
        clock.advance(60)
    url = "/api/v1/services/102/codes"
    page = (await client.get(url, params={"limit": 2}, headers=AUTH)).json()
    assert [item["code"] for item in page["items"]] == [codes[4], codes[3]]
    page2 = (
        await client.get(
            url, params={"limit": 2, "before_id": page["next_before_id"]}, headers=AUTH
        )
    ).json()
    assert [item["code"] for item in page2["items"]] == [codes[2], codes[1]]
    by_phone = (await client.get(url, params={"msisdn": "+359888000001"}, headers=AUTH)).json()
    assert [item["code"] for item in by_phone["items"]] == [codes[3], codes[1]]
    assert by_phone["next_before_id"] is None
    window = {"from": "2026-01-01T00:01:00Z", "to": "2026-01-01T00:03:00Z"}
    in_window = (await client.get(url, params=window, headers=AUTH)).json()
    assert [item["code"] for item in in_window["items"]] == [codes[2], codes[1]]
    await client.get(
        "/users/check_code.php", params={"user_id": 1, "service_id": 102, "code": codes[0]}
    )
    used = (await client.get(url, params={"status": "used"}, headers=AUTH)).json()
    assert [item["code"] for item in used["items"]] == [codes[0]]
    assert used["items"][0]["uses_count"] == 1
    clock.advance(3600)
    expired = (await client.get(url, params={"status": "expired"}, headers=AUTH)).json()
    assert [item["code"] for item in expired["items"]] == codes[:0:-1]
    naive = await client.get(url, params={"from": "2026-01-01T00:00:00"}, headers=AUTH)
    assert naive.status_code == 422


async def test_checks_are_listed_with_filters(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    mine = await _issue(runtime, "DAY", "m-1", "359888000001")
    theirs = await _issue(runtime, "DAY", "m-2", "359888000002")
    for code in (mine, theirs, "WRONG234", mine):
        await client.get(
            "/users/check_code.php",
            params={"user_id": 1, "service_id": 103, "code": code, "ip": "203.0.113.9"},
        )
    url = "/api/v1/services/103/code-checks"
    everything = (await client.get(url, headers=AUTH)).json()
    assert [c["answer"] for c in everything["items"]] == [
        "CODE_OK",
        "CODE_NOT_FOUND",
        "CODE_OK",
        "CODE_OK",
    ]
    assert everything["items"][0]["user_ip"] == "203.0.113.9"
    assert everything["items"][0]["msisdn"] == "359888000001"
    not_found = (await client.get(url, params={"answer": "CODE_NOT_FOUND"}, headers=AUTH)).json()
    assert [c["code_given"] for c in not_found["items"]] == ["WRONG234"]
    by_phone = (await client.get(url, params={"msisdn": "359888000001"}, headers=AUTH)).json()
    assert len(by_phone["items"]) == 2
    bad_answer = await client.get(url, params={"answer": "MAYBE"}, headers=AUTH)
    assert bad_answer.status_code == 422


async def test_the_openapi_document_describes_the_api(client: httpx2.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "post" in paths["/api/v1/services/{service_id}/codes/check"]
    assert "get" in paths["/api/v1/services/{service_id}/codes"]
    assert "get" in paths["/api/v1/services/{service_id}/code-checks"]


async def test_a_code_filter_no_code_can_match_finds_nothing(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await _issue(runtime, "KOD", "m-1", "359888000001")
    url = "/api/v1/services/102/codes"
    for code in ("ab-cd", "\ud7ff", "é", "  "):
        response = await client.get(url, params={"code": code}, headers=AUTH)
        assert response.status_code == 200, code
        assert response.json() == {"items": [], "next_before_id": None}
