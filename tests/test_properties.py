"""Properties that hold for any input: the event codec, the /ws frame handling, token parsing.

Hypothesis draws the inputs. Tests that cross the server keep their example counts small and have
no per-example deadline (a Redis round trip is not a regression), so the suite stays fast.
"""

from __future__ import annotations

import re
import string
from datetime import UTC
from typing import Any

import aiohttp
import hypothesis
import msgspec
import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st

from app.jsondepth import nests_deeper_than
from app.relay.handler import MAX_MESSAGE_BYTES
from docpulse.events import STAGES, JobEvent, decode_event, encode_event, make_event
from docpulse.tenants import TENANT_ID_PATTERN
from tests.helpers.webtools import (
    AppClient,
    authorization,
    bearer,
    expiring_in,
    ready,
    signed,
)

SERVER = hypothesis.settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --- the event codec ----------------------------------------------------------------------------

PHASES = ("started", "progress", "done", "failed")
TENANT_ID = re.compile(TENANT_ID_PATTERN)
tenant_ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=64)
ids = st.integers(min_value=1, max_value=2**63 - 1)
optional_text = st.none() | st.text(max_size=200)


@st.composite
def job_events(draw: st.DrawFn) -> JobEvent:
    stage = draw(st.sampled_from(STAGES))
    return JobEvent(
        # a str that is one of the EventName literals by construction
        event=f"{stage}_{draw(st.sampled_from(PHASES))}",  # type: ignore[arg-type]
        job_id=draw(ids),
        document_id=draw(ids),
        type=stage,
        progress=draw(st.integers(0, 100)),
        tenant_id=draw(tenant_ids),
        ts=draw(st.datetimes(timezones=st.just(UTC))),
        attempt=draw(st.integers(min_value=1, max_value=2**31)),
        error=draw(optional_text),
        note=draw(optional_text),
        seq=draw(st.none() | st.integers(min_value=0, max_value=2**63 - 1)),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


@given(job_events())
def test_any_valid_event_round_trips_exactly(event: JobEvent) -> None:
    assert decode_event(encode_event(event)) == event
    assert decode_event(encode_event(event).decode()) == event


def _decodes_or_refuses(data: bytes | str) -> None:
    """Either a valid event (which then round-trips) or a msgspec error: never anything else."""
    try:
        event = decode_event(data)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return
    assert decode_event(encode_event(event)) == event


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_random_bytes_decode_or_raise_msgspec_errors(data: bytes | str) -> None:
    _decodes_or_refuses(data)


@given(job_events(), st.sampled_from(list(JobEvent.__struct_fields__)) | st.text(), json_values)
def test_events_with_one_field_changed_decode_or_raise_msgspec_errors(
    event: JobEvent, field: str, value: Any
) -> None:
    fields = msgspec.to_builtins(event)
    fields[field] = value
    _decodes_or_refuses(msgspec.json.encode(fields))


@given(
    st.sampled_from(STAGES),
    st.sampled_from(PHASES),
    st.dictionaries(
        st.sampled_from(["tenant_id", "document_id", "job_id", "progress", "attempt", "seq"]),
        json_values | ids,
    ),
)
def test_make_event_never_makes_an_event_that_fails_decode(
    stage: Any, phase: Any, changes: dict[str, Any]
) -> None:
    fields: dict[str, Any] = {
        "tenant_id": "acme", "document_id": 1, "job_id": 1, "progress": 0, **changes
    }  # fmt: skip
    try:
        event = make_event(stage, phase, **fields)
    except ValueError:
        return  # refused up front, as documented
    assert decode_event(encode_event(event)) == event


# --- /ws: what the server does with any client frame --------------------------------------------


def _expected(frame: str | bytes) -> int | str:
    """The documented answer: "pong", or the close code."""
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
    if size > MAX_MESSAGE_BYTES:
        return 1009
    if isinstance(frame, bytes) or nests_deeper_than(frame, 32):
        return 1003
    try:
        value = msgspec.json.decode(frame)
    except msgspec.DecodeError:
        return 1003
    return "pong" if isinstance(value, dict) and value.get("op") == "ping" else 1008


def ping_of(size: int) -> str:
    frame = '{"op":"ping","pad":""}'
    return frame[:-2] + "x" * (size - len(frame)) + frame[-2:]


ops = st.sampled_from(["ping", "pong", "PING", "ping ", "subscribe", "", None, 1, ["ping"]])
op_objects = st.dictionaries(st.sampled_from(["op", "pad", "since"]), ops | json_values)
frames = st.one_of(
    st.just('{"op":"ping"}'),
    op_objects.map(lambda d: msgspec.json.encode(d).decode()),
    json_values.map(lambda v: msgspec.json.encode(v).decode()),
    st.text(max_size=100),
    st.text(alphabet=string.printable, min_size=MAX_MESSAGE_BYTES, max_size=MAX_MESSAGE_BYTES + 50),
    st.binary(max_size=100),
)


@SERVER
@given(st.lists(frames, min_size=1, max_size=3))
@example(['{"op":"ping"}', ' {"op" : "ping"} ', '{"op":"ping","op":"x"}'])
@example(["", "\x00", b""])
@example(["0:"])  # malformed JSON that starts with the wrong type: 1003, not 1008
@example(["[" * 4000])  # nested too deep: 1003, not a RecursionError (issue #12)
@example(['{"op":"ping","pad":' + "[" * 33 + "]" * 33 + "}"])
@example([ping_of(MAX_MESSAGE_BYTES), ping_of(MAX_MESSAGE_BYTES + 1)])  # the limit is inclusive
async def test_any_client_frame_gets_a_pong_or_its_documented_close_code(
    client: AppClient, sent: list[str | bytes]
) -> None:
    ws = await client.ws_connect("/ws", headers=bearer("acme"))
    try:
        await ready(ws)
        for frame in sent:
            await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
            expected, msg = _expected(frame), await ws.receive(timeout=5)
            if expected == "pong":
                assert (msg.type, msg.data) == (WSMsgType.TEXT, '{"op":"pong"}'), frame
                continue
            assert msg.type is WSMsgType.CLOSE, (frame, msg)
            assert msg.data == expected, frame
            return
    finally:
        await ws.close()


# --- tokens and tickets -------------------------------------------------------------------------

header_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x7f"), max_size=300
)


async def _is_json_401(resp: aiohttp.ClientResponse) -> bool:
    body = await resp.json()
    return resp.status == 401 and body["error"]["code"] == "unauthorized"


@SERVER
@given(header_text, st.sampled_from(["Bearer ", "bearer ", "", "Basic ", "Bearer  "]))
@example("a.b.c", "Bearer ")
@example("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhY21lIn0.", "Bearer ")
async def test_any_string_as_a_token_is_a_json_401(
    client: AppClient, token: str, scheme: str
) -> None:
    resp = await client.get("/api/documents", headers={"Authorization": scheme + token})
    assert await _is_json_401(resp), (scheme, token)


@SERVER
@given(header_text)
@example("x" * 129)
async def test_any_string_as_a_ticket_is_a_401(client: AppClient, ticket: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", params={"ticket": ticket})
    assert refused.value.status == 401


@SERVER
@given(tenant_ids | st.text(max_size=80) | json_values, st.booleans())
@example("acme", False)
@example("acme.jobs", False)
@example("acme", True)
async def test_a_signed_token_names_a_tenant_only_if_its_sub_is_one(
    client: AppClient, sub: Any, session_kind: bool
) -> None:
    claims = {"sub": sub, "exp": expiring_in(300), **({"kind": "x"} if session_kind else {})}
    resp = await client.get("/api/documents", headers=authorization(signed(claims)))
    tenant = isinstance(sub, str) and TENANT_ID.fullmatch(sub) is not None
    if tenant and not session_kind:
        assert resp.status == 200
    else:
        assert await _is_json_401(resp), claims


@SERVER
@given(st.dictionaries(st.sampled_from(["sub", "exp", "iat", "nbf", "kind", "aud"]), json_values))
async def test_any_signed_claims_are_a_tenant_or_a_json_401(
    client: AppClient, claims: dict[str, Any]
) -> None:
    resp = await client.get("/api/documents", headers=authorization(signed(claims)))
    assert resp.status == 200 or await _is_json_401(resp), (claims, resp.status)
