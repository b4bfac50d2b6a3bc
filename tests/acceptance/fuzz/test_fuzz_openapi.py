"""Every operation of the OpenAPI document, fuzzed by schemathesis against the real gateway on
SQLite and PostgreSQL: valid requests (positive) and requests that break the document
(negative: wrong types, missing and oversized values), and valid requests with one string
replaced by a hostile one (NUL, an unpaired surrogate, a huge value). The right credentials
go in most of the time and the ids of provisioned operators, merchants, services and numbers
part of the time, so that the requests reach the code behind authentication and lookups.

Whatever the request, the answer is never a 5xx; a 4xx from a JSON endpoint is an RFC 9457
problem (``application/problem+json`` whose ``status`` is the HTTP status); a request the
document calls invalid is refused with a 4xx; and every answer matches the document (status,
content type, headers, body schema).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.parameters import ParameterLocation
from schemathesis.schemas import APIOperation
from tests.acceptance.fuzz.cases import Slot, put, send_case
from tests.acceptance.fuzz.fuzz_env import (
    ADMIN_TOKEN,
    API_KEY,
    INTAKE_SECRET,
    MERCHANTS,
    MSISDNS,
    OPERATORS,
    OTHER_API_KEY,
    SEND_BULK_WORDS,
    SERVICES,
    SHORT_NUMBERS,
    Gateway,
    RawResponse,
)

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings


def _document() -> dict[str, Any]:
    # The document does not depend on the database; the engine is never connected.
    runtime = build_runtime(
        Settings(database_url="sqlite+aiosqlite://", admin_token=SecretStr(ADMIN_TOKEN))
    )
    return create_api(runtime).openapi()


# Any 4xx is a rejection of invalid data: 413 for an oversized body, too, which the default
# list of expected statuses leaves out. The explicit config also keeps a schemathesis.toml
# in the working directory from changing what runs.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["4xx"]}}}
)
SCHEMA = schemathesis.openapi.from_dict(_document(), config=CONFIG)
OPERATIONS: dict[str, APIOperation] = {
    f"{op.method.upper()} {op.path}": op
    for op in (result.ok() for result in SCHEMA.get_all_operations())
}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
_STRATEGIES: dict[tuple[str, GenerationMode], st.SearchStrategy[Case]] = {}

TEXT_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
JSON_CHECKS = [
    *TEXT_CHECKS,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
SEED_WORDS = {word.encode() for word in SEND_BULK_WORDS}


def strategy(label: str, mode: GenerationMode) -> st.SearchStrategy[Case]:
    key = (label, mode)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = OPERATIONS[label].as_strategy(generation_mode=mode)
    return _STRATEGIES[key]


# --- realistic values ------------------------------------------------------------------------

KNOWN: dict[str, st.SearchStrategy[Any]] = {
    "service_id": st.sampled_from(SERVICES),
    "merchant_id": st.sampled_from(MERCHANTS),
    "merchant": st.sampled_from(MERCHANTS),
    "operator_id": st.sampled_from(OPERATORS),
    "message_id": st.integers(min_value=1, max_value=5),
    "msisdn": st.sampled_from(MSISDNS),
    "short_number": st.sampled_from(SHORT_NUMBERS),
    "to": st.one_of(
        st.sampled_from(MSISDNS), st.lists(st.sampled_from(MSISDNS), min_size=1, max_size=3)
    ),
}


def _positive(case: Case, location: ParameterLocation) -> bool:
    meta = case.meta
    if meta is None:
        return True
    component = meta.components.get(location)
    return component is None or not component.mode.is_negative


def _credentials(path: str, data: st.DataObject) -> dict[str, str] | None:
    """Headers to send instead of the generated credentials, or None to keep those."""
    choice = data.draw(st.sampled_from(["right", "right", "right", "other", "generated"]))
    if choice == "generated":
        return None
    if path.startswith(("/admin/", "/api/v1/links")):
        token = ADMIN_TOKEN if choice == "right" else API_KEY
        return {"authorization": f"Bearer {token}"}
    if path.startswith("/operators/"):
        secret = INTAKE_SECRET if choice == "right" else ADMIN_TOKEN
        return {"x-operator-secret": secret}
    if path.startswith("/api/v1/"):
        return {"x-api-key": API_KEY if choice == "right" else OTHER_API_KEY}
    return None


def season(case: Case, data: st.DataObject) -> None:
    """Put credentials and provisioned ids into the generated case, part of the time, only
    where schemathesis generated valid data (a negative component stays as generated)."""
    if _positive(case, ParameterLocation.HEADER):
        credentials = _credentials(case.path, data)
        if credentials is not None:
            headers = {
                name: value
                for name, value in (case.headers or {}).items()
                if name.lower() not in {"authorization", "x-api-key", "x-operator-secret"}
            }
            case.headers = {**headers, **credentials}
    for location, values in (
        (ParameterLocation.PATH, case.path_parameters),
        (ParameterLocation.QUERY, case.query),
        (ParameterLocation.BODY, case.body if isinstance(case.body, dict) else None),
    ):
        if not values or not _positive(case, location):
            continue
        for name in list(values):
            if name in KNOWN and data.draw(st.sampled_from([True, True, True, False])):
                values[name] = data.draw(KNOWN[name])


# Strings that are valid JSON Schema strings but that the storage layers choke on: PostgreSQL
# refuses NUL in text, no encoding stores an unpaired surrogate, and some values are just big.
# (A URL stays below the 16 KiB a server such as uvicorn takes in a request head.)
HOSTILE_STRINGS = st.sampled_from(["\x00", "a\x00b", "%00", "\u202e", "😀" * 300, "x" * 5_000])
HOSTILE_JSON_STRINGS = st.one_of(
    HOSTILE_STRINGS, st.sampled_from(["x" * 70_000, "\ud800", "a\udfffb"])
)


def _string_slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [slot for key, item in value.items() for slot in _string_slots(item, (*path, key))]
    if isinstance(value, list):
        return [slot for i, item in enumerate(value) for slot in _string_slots(item, (*path, i))]
    return []


def plant_hostile_string(case: Case, data: st.DataObject) -> tuple[Slot, str] | None:
    """Replace one string of a valid case (query, path or JSON body) with a hostile one.
    An unpaired surrogate cannot go into the case (schemathesis validates it again, in
    UTF-8): it is returned, to be put into the serialised body by ``send``."""
    containers: list[tuple[Any, st.SearchStrategy[str]]] = [
        (case.query, HOSTILE_STRINGS),
        (case.path_parameters, HOSTILE_STRINGS),
    ]
    if case.media_type is None or "json" in case.media_type:
        containers.append((case.body, HOSTILE_JSON_STRINGS))
    slots = [
        (container, slot, strings)
        for container, strings in containers
        if isinstance(container, dict | list)
        for slot in _string_slots(container)
    ]
    if not slots:
        return None
    index = data.draw(st.integers(0, len(slots) - 1), label="hostile slot")
    container, slot, strings = slots[index]
    value = data.draw(strings, label="hostile string")
    if re.search("[\ud800-\udfff]", value):
        return slot, value
    put(container, slot, value)
    return None


# --- checks ----------------------------------------------------------------------------------


def _json_endpoint(operation: APIOperation) -> bool:
    """Whether the operation speaks JSON (the seed endpoints answer text/plain words)."""
    responses = operation.definition.raw.get("responses", {})
    return any(
        "json" in media_type
        for response in responses.values()
        for media_type in response.get("content", {})
    )


def assert_problem(raw: RawResponse) -> None:
    assert raw.content_type == b"application/problem+json", raw
    problem = raw.json()
    assert isinstance(problem, dict), problem
    assert problem.get("status") == raw.status, problem
    assert isinstance(problem.get("title"), str) and problem["title"], problem
    assert isinstance(problem.get("type", "about:blank"), str), problem


@pytest.mark.slow
@pytest.mark.parametrize("label", list(OPERATIONS))
@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # No shrinking: a failure is reported at once, with the request to reproduce it.
    phases=[Phase.explicit, Phase.generate],
)
@given(data=st.data())
async def test_operation_answers_any_input_without_server_error(
    gateway: Gateway, label: str, data: st.DataObject
) -> None:
    operation = OPERATIONS[label]
    mode = data.draw(st.sampled_from(MODES), label="mode")
    case = data.draw(strategy(label, mode), label="case")
    season(case, data)
    client = data.draw(st.sampled_from(["127.0.0.1", "10.9.1.1", "2001:db8::5"]), label="client")
    surrogate = None
    if mode is GenerationMode.POSITIVE and data.draw(st.booleans(), label="hostile strings"):
        surrogate = plant_hostile_string(case, data)
    note(f"{case.method} {case.formatted_path} query={case.query!r} headers={case.headers!r}")
    note(f"body={case.body!r} media_type={case.media_type!r} client={client}")
    note(f"unpaired surrogate in the body: {surrogate!r}")
    raw, response = await send_case(gateway.app, case, client, surrogate)
    assert raw.status < 500, (raw.status, raw.body[:2000])
    event(f"{mode.value}: {raw.status}")
    if _json_endpoint(operation):
        case.validate_response(response, checks=JSON_CHECKS)
        if 400 <= raw.status < 500:
            assert_problem(raw)
    else:
        case.validate_response(response, checks=TEXT_CHECKS)
    if case.path.endswith(".php"):
        # The seed endpoints answer every request with HTTP 200 and a status word, whatever
        # the document calls invalid (seeds 000, 001): their own property tests go further.
        assert raw.status == 200
        assert raw.body.split(b":")[0] in SEED_WORDS, raw.body


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


def test_document_references_resolve_and_document_problems() -> None:
    """A dangling $ref makes schemathesis (and any generated client) skip the body; a JSON
    operation without ``4XX`` would make every refusal look undocumented."""
    document = SCHEMA.raw_schema
    components = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in components, ref
    assert "HTTPValidationError" not in components
    for label, operation in OPERATIONS.items():
        if _json_endpoint(operation):
            responses = operation.definition.raw["responses"]
            assert "4XX" in responses, label
            for status, response in responses.items():
                if status.startswith("4"):
                    assert list(response["content"]) == ["application/problem+json"], label
    assert len(OPERATIONS) >= 20
