"""The OpenAPI document is valid OpenAPI 3.1, describes every REST route, and the live
gateway's answers match it (issue #15.2): a client generated from it gets what it says."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
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


async def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    """Every operation, every check, as a partner and as the operator. The one exception:
    submitMessage is not held to `positive_data_acceptance`, because a schema-valid string is
    rarely a valid iWmo/iJw message, and refusing it (422 with the foutcode) is the contract."""
    setup = make_setup(tmp_path / "gw", 1)
    process = await serve(setup, tmp_path / "gateway.log")
    try:
        runs = [
            (setup.token("0150"), ("--exclude-operation-id", "submitMessage")),
            (setup.token(), ("--exclude-operation-id", "submitMessage")),
            (
                setup.token("0150"),
                (
                    "--include-operation-id",
                    "submitMessage",
                    "--exclude-checks",
                    "positive_data_acceptance",
                ),
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
