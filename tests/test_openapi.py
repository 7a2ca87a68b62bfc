"""The OpenAPI document is valid OpenAPI 3.1, describes every REST route, and the live
gateway's answers match it (issue #15.2): a client generated from it gets what it says."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yarl
from openapi_spec_validator import validate

from gateway.openapi import OPENAPI, SCHEMAS
from gateway.server import build, make_app
from kit.gateway import Setup, Sink, make_setup, rest, running, serve
from tests.conftest import SAMPLES

WMO301 = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()
WMO323 = (SAMPLES / "iwmo" / "wmo323.xml").read_bytes()


def conforms(name: str, body: Any) -> None:
    """``body`` is valid against components/schemas/``name``."""
    schema = {"components": {"schemas": SCHEMAS}, "$ref": f"#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema).validate(body)


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(OPENAPI)
    operations = [op for path in OPENAPI["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) == len(operations)


@pytest.fixture
def setup(tmp_path: Any, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


def test_every_rest_route_is_documented(setup: Setup) -> None:
    app = make_app(build(setup.config()))
    documented = {
        (path, method.upper()) for path, item in OPENAPI["paths"].items() for method in item
    }
    served = {
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and not route.resource.canonical.startswith("/ggk/")  # SOAP and its WSDL
        and route.resource.canonical != "/ebms"  # ebMS2: its contract is the CPA (docs/ebms.md)
        # the portal: HTML pages for browsers, not an API (docs/portal.md)
        and not route.resource.canonical.startswith("/portal")
        and route.resource.canonical != "/api/v1/openapi.json"  # this document itself
    }
    assert served == documented


async def test_live_answers_match_the_document(setup: Setup) -> None:
    async with running(setup):
        partner, admin = setup.token("0150"), setup.token()
        status, accepted = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=partner,
            data=WMO301,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert status == 202
        conforms("Accepted", accepted)
        status, view = await rest(setup, "GET", f"/api/v1/messages/{accepted['id']}", token=partner)
        assert status == 200
        conforms("MessageView", view)
        status, _ = await rest(
            setup, "POST", "/api/v1/messages", token=setup.token("12345678"), data=WMO323
        )
        assert status == 202
        status, inbox = await rest(setup, "GET", "/api/v1/inbox?limit=1", token=partner)
        conforms("Inbox", inbox)
        item = inbox["messages"][0]["id"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{setup.url}/api/v1/inbox/{item}",
                headers={"Authorization": f"Bearer {partner}"},
                ssl=setup.ssl_context(None),
            ) as response,
        ):
            assert response.status == 200 and response.content_type == "application/xml"
        status, ack = await rest(setup, "POST", f"/api/v1/inbox/{item}/ack", token=partner)
        conforms("Acknowledged", ack)
        status, letters = await rest(setup, "GET", "/api/v1/admin/dead-letters", token=admin)
        conforms("DeadLetters", letters)
        status, replayed = await rest(
            setup, "POST", "/api/v1/admin/replay", token=admin, json={"message_id": accepted["id"]}
        )
        conforms("Replayed", replayed)
        status, late = await rest(setup, "GET", "/api/v1/admin/overdue?days=0", token=admin)
        conforms("Overdue", late)
        for path in ("/healthz", "/readyz"):
            conforms("Status", (await rest(setup, "GET", path))[1])
        # refusals: problem documents; a 401 says how to authenticate
        for method, path, token in (
            ("GET", "/api/v1/inbox", None),
            ("GET", "/api/v1/inbox?limit=0", partner),
            ("GET", "/api/v1/admin/overdue", partner),
            ("GET", "/api/v1/messages/unknown", partner),
        ):
            async with (
                aiohttp.ClientSession() as session,
                session.request(
                    method,
                    f"{setup.url}{path}",
                    headers={"Authorization": f"Bearer {token}"} if token else {},
                    ssl=setup.ssl_context(None),
                ) as response,
            ):
                assert response.content_type == "application/problem+json", path
                body = await response.json(content_type=None)
                conforms("Problem", body)
                assert body["status"] == response.status
                if response.status == 401:
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")


ST = str(Path(sys.executable).parent / "st")


def schemathesis(setup: Setup, token: str, *selection: str) -> subprocess.CompletedProcess[str]:
    """A bounded schemathesis run (every check) against the live gateway's own document."""
    return subprocess.run(
        [
            ST,
            "run",
            f"{setup.url}/api/v1/openapi.json",
            "--tls-verify",
            setup.ca,
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "20261130",
            *selection,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
async def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    """Every operation, every check, as a partner and as the operator. The exceptions are
    not held to `positive_data_acceptance`: submitMessage, because a schema-valid string is
    rarely a valid iWmo/iJw message, and refusing it (422 with the foutcode) is the contract;
    getFigures, because a `from` month after its `to` month is schema-valid (OpenAPI cannot
    relate two parameters) and refused with a 400 that says so."""
    setup = make_setup(tmp_path / "gw", 1)
    process = await serve(setup, tmp_path / "gateway.log")
    try:
        held_apart = ("submitMessage", "getFigures")
        excluded = tuple(a for op in held_apart for a in ("--exclude-operation-id", op))
        included = tuple(a for op in held_apart for a in ("--include-operation-id", op))
        runs = [
            (setup.token("0150"), excluded),
            (setup.token(), excluded),
            (
                setup.token("0150"),
                (*included, "--exclude-checks", "positive_data_acceptance"),
            ),
        ]
        for token, selection in runs:
            done = await asyncio.to_thread(schemathesis, setup, token, *selection)
            assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
            generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
            assert generated and int(generated.group(2)) >= 50, done.stdout[-2000:]
    finally:
        process.terminate()
        await process.wait()
    assert b"Traceback" not in (tmp_path / "gateway.log").read_bytes()


def _parameter(path: str, method: str, name: str) -> dict[str, Any]:
    (found,) = (p for p in OPENAPI["paths"][path][method]["parameters"] if p["name"] == name)
    return dict(found["schema"])


def test_every_string_parameter_states_its_pattern_and_maximum_length() -> None:
    """A generated client and schemathesis know from the document alone what the server
    takes: no parameter is a bare string, and the JSON forms' strings are bounded too."""
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                if schema["type"] == "string" and "enum" not in schema:
                    where = f"{method} {path} {parameter['name']}"
                    assert schema["pattern"].startswith("^") and schema["pattern"].endswith("$")
                    assert 0 < schema["maxLength"] <= 40, where
    for name in ("ReplayRequest", "Submission"):
        for member, schema in SCHEMAS[name]["properties"].items():
            if "string" in schema.get("type", ()):
                assert "pattern" in schema and "maxLength" in schema, (name, member)


# (method, document path, the parameter, the request, its value): the server refuses (400)
# exactly the values the document refuses, and takes every one it calls valid.
SHAPES = [
    *(
        ("get", "/api/v1/messages/{id}", "id", "/api/v1/messages/{}", value)
        for value in (
            "0" * 32,
            str(uuid.uuid4()),
            str(uuid.uuid4()).upper(),
            "0" * 31,
            "0" * 33,
            "g" * 32,
            "unknown",
            "x" * 300,
        )
    ),
    *(
        (method, f"/api/v1/inbox/{{id}}{tail}", "id", f"/api/v1/inbox/{{}}{tail}", value)
        for method, tail in (("get", ""), ("post", "/ack"))
        for value in ("a" * 32, str(uuid.uuid4()), "A" * 32, "a" * 40)
    ),
    *(
        ("get", "/api/v1/admin/dead-letters", "partner", "/api/v1/admin/dead-letters?partner={}", v)
        for v in ("0150", "CAK", "12345678", "x" * 40, "x" * 41, "", "-0150", "01%2050", "0150%0A")
    ),
    *(
        ("get", "/api/v1/stats", name, f"/api/v1/stats?{name}={{}}", value)
        for name, values in (
            ("gemeente", ("0150", "0999", "a" * 41, "01%0050", "")),
            ("from", ("2026-01", "2026-12", "2026-13", "2026-1", "2026-01%0A", "")),
            ("to", ("2026-11", "26-11", "2026-00")),
        )
        for value in values
    ),
    *(
        ("get", "/api/v1/inbox", name, f"/api/v1/inbox?{name}={{}}", value)
        for name, values in (
            ("limit", ("1", "1000", "0", "1001", "-1", "1.5", "%C2%B2", "9" * 5000)),
            ("after", ("0", str(2**63 - 1), str(2**63), "x")),
        )
        for value in values
    ),
    *(
        ("get", "/api/v1/admin/overdue", "days", "/api/v1/admin/overdue?days={}", value)
        for value in ("0", "1.5", "36500", "1e2", "36501", "-1", "nan", "inf", "1_0", "%201")
    ),
]


def _decoded(value: str) -> str:
    return urllib.parse.unquote(value, errors="strict")


def _document_takes(path: str, method: str, name: str, value: str) -> bool:
    schema = _parameter(path, method, name)
    decoded: Any = _decoded(value)
    if schema["type"] in ("integer", "number"):
        try:  # the query string's text read as the document's serialisation writes it
            decoded = int(decoded) if re.fullmatch(r"-?[0-9]+", decoded) else float(decoded)
        except ValueError:
            return False
        if schema["type"] == "integer" and not isinstance(decoded, int):
            return False
        if isinstance(decoded, float) and not re.fullmatch(
            r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", _decoded(value)
        ):
            return False  # '1_0', 'nan', ' 1': Python reads them, JSON does not
    if "pattern" in schema:  # ECMA-262's '$' is the end; Python's also lets one '\n' follow
        schema["pattern"] = re.sub(r"\$$", r"\\Z", schema["pattern"])
    return bool(jsonschema.Draft202012Validator(schema).is_valid(decoded))


async def test_the_server_refuses_exactly_what_the_document_refuses(setup: Setup) -> None:
    async with running(setup):
        for method, path, name, template, value in SHAPES:
            token = (
                setup.token("0150")
                if path.startswith(("/api/v1/inbox", "/api/v1/messages"))
                else setup.token()
            )
            async with (
                aiohttp.ClientSession() as session,
                session.request(
                    method.upper(),
                    yarl.URL(f"{setup.url}{template.format(value)}", encoded=True),
                    headers={"Authorization": f"Bearer {token}"},
                    ssl=setup.ssl_context(None),
                ) as response,
            ):
                takes = _document_takes(path, method, name, value)
                case = f"{method} {template.format(value)[:80]}: {response.status}"
                assert (response.status == 400) == (not takes), case
                assert response.status < 500, case
                if response.status == 400:
                    assert response.content_type == "application/problem+json", case


async def test_the_json_form_submits_like_the_xml_form(setup: Setup) -> None:
    """What a generated client sends (the document's Submission): the same path as the XML
    body, with its options as members; a member may repeat a header only with its value."""
    async with running(setup):
        partner = setup.token("0150")
        key = str(uuid.uuid4())
        form = {"payload": base64.b64encode(WMO301).decode(), "idempotency_key": key}
        conforms("Submission", form)
        status, accepted = await rest(setup, "POST", "/api/v1/messages", token=partner, json=form)
        assert status == 202, accepted
        conforms("Accepted", accepted)
        assert accepted["referentienummer"] == key and not accepted["duplicate"]
        # the XML form with the same key is the same submission
        status, again = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=partner,
            data=WMO301,
            headers={"Idempotency-Key": key, "Content-Type": "application/xml"},
        )
        assert status == 202 and again["duplicate"] and again["id"] == accepted["id"], again
        refused = [
            {"payload": "not base64!"},
            {"payload": "QUJD"[:3]},  # unpadded
            {"payload": base64.b64encode(WMO301).decode(), "extra": 1},
            {"payload": base64.b64encode(WMO301).decode(), "idempotency_key": key.upper()},
            {"payload": base64.b64encode(WMO301).decode(), "cross_ref": "x" * 37},
            {"idempotency_key": key},
            ["payload"],
        ]
        for body in refused:
            status, answer = await rest(setup, "POST", "/api/v1/messages", token=partner, json=body)
            assert status == 400 and answer["status"] == 400, (body, answer)
        # a member that contradicts its header
        status, answer = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=partner,
            json={"payload": base64.b64encode(WMO301).decode(), "idempotency_key": key},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert status == 400 and "differs" in answer["title"], answer
        # a well-formed form whose message is not one: the message's refusal, not the form's
        status, answer = await rest(
            setup, "POST", "/api/v1/messages", token=partner, json={"payload": ""}
        )
        assert status == 422 and answer["code"] == "StUF055", answer


def test_the_submission_in_the_document_is_what_the_server_reads() -> None:
    from gateway.web.rest import SUBMISSION_FIELDS

    content = OPENAPI["paths"]["/api/v1/messages"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/xml", "application/json"}
    assert set(SCHEMAS["Submission"]["properties"]) == set(SUBMISSION_FIELDS)
