"""The REST API (``/api/v1``): a partner submits raw iWmo/iJw messages and reads its inbox;
the operator reads dead letters and overdue retours and replays; gemeenten read their figures.
:func:`submit_payload` is shared with the portal's upload.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from gateway import envelope as env
from gateway import parameters, stats
from gateway.broker.base import DeadLetter, InboxItem, MessageRef
from gateway.ingest import Identity, Wrapping
from gateway.metrics import (
    ACCEPTED,
    BV03_SECONDS,
    REJECTED,
)
from gateway.offload import LARGE_PAYLOAD_BYTES
from gateway.problems import (
    problem,
    query_float,
    query_int,
)
from gateway.readers import ReaderCrashed
from gateway.reading import Rejected
from gateway.standards import Kind
from gateway.validation import PayloadResult
from gateway.web.body import admitted
from gateway.web.identify import anonymous, as_admin, as_partner, identify, over_rate
from gateway.web.wiring import GATEWAY_KEY, Gateway
from routing.partners import Partner, PartnerKind

log = structlog.get_logger("ggk.server")


REPLAY_BODY_BYTES = 4096
"""POST /api/v1/admin/replay takes a JSON object of four short members."""


ENVELOPE_ALLOWANCE = 8 * 1024
"""Bytes of a Di01/Du01 around its base64 payload (stuurgegevens, parameters)."""


MAX_CURSOR = 2**63 - 1


async def submit_message(request: web.Request) -> web.Response:
    """POST an iWmo/iJw message; the gateway wraps it in a Di01/Du01 for the sender. The body
    is the message itself (application/xml), or a JSON object holding it base64-encoded with
    the same options (application/json: the form a generated client can send); both take the
    one path below. The parameters' shapes are checked before the body is read."""
    started = time.perf_counter()
    auth = as_partner(request)
    if isinstance(auth, web.Response):
        return auth
    gw, identity, partner = auth
    key = parameters.UUID4.checked("Idempotency-Key", request.headers.get("Idempotency-Key"))
    cross_ref = parameters.query(request, "cross_ref", parameters.UUID4)
    async with admitted(request, gw) as body:
        if isinstance(body, web.Response):
            return body
        if request.content_type == "application/json":
            form = _json_submission(body, key, cross_ref)
            if isinstance(form, web.Response):
                return form
            payload, key, cross_ref = form
        else:
            payload = body
        submitted = await submit_payload(
            gw, identity, partner, payload, referentienummer=key, cross_ref=cross_ref
        )
    BV03_SECONDS.labels(channel="rest").observe(time.perf_counter() - started)
    return submitted.response()


SUBMISSION_FIELDS = ("payload", "idempotency_key", "cross_ref")
"""The members of the JSON form of a submission (components/schemas/Submission)."""


def _json_submission(
    body: bytes, key: str | None, cross_ref: str | None
) -> tuple[bytes, str | None, str | None] | web.Response:
    """The payload, Idempotency-Key and cross_ref of the JSON form, or its 400. A member may
    repeat the header or query parameter of the same name only with the same value."""
    try:
        form = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the interpreter's stack (a few KB of '[')
        return problem(400, "body must be a JSON object")
    if not isinstance(form, dict):
        return problem(400, "body must be a JSON object")
    unknown = sorted(set(form) - set(SUBMISSION_FIELDS))
    if unknown:
        return problem(
            400, f"unknown member {unknown[0][:40]!r}; members: payload, idempotency_key, cross_ref"
        )
    encoded = form.get("payload")
    if not isinstance(encoded, str) or not parameters.BASE64.fits(encoded):
        return problem(400, f"payload is {parameters.BASE64.says}, the message base64-encoded")
    given: dict[str, str | None] = {"idempotency_key": key, "cross_ref": cross_ref}
    for name in ("idempotency_key", "cross_ref"):
        value = form.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not parameters.UUID4.fits(value):
            return problem(400, f"{name} is {parameters.UUID4.says}")
        if given[name] not in (None, value):
            return problem(400, f"{name} differs from its header or query parameter")
        given[name] = value
    payload = base64.b64decode(encoded, validate=True)
    return payload, given["idempotency_key"], given["cross_ref"]


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a raw submission came to: 202 and the accepted message, or a problem document."""

    status: int
    body: dict[str, Any]

    def response(self) -> web.Response:
        if self.status >= 400:
            return problem(self.status, **self.body)
        return web.json_response(self.body, status=self.status)


def _refused(status: int, title: str, **extra: Any) -> Submitted:
    return Submitted(status, {"title": title, **extra})


async def _retour_reference(
    gw: Gateway,
    partner: Partner,
    afzender: str,
    heen_code: str,
    heen: MessageRef | None,
    cross_ref: str | None,
) -> str | Submitted:
    """The crossRefnummer of a REST retour, or its refusal (StUF043). The heenbericht named
    by the payload (its BerichtIdentificatie) decides; an explicit ``cross_ref`` must name
    that same message, so it can never link a retour into another conversation. Without such
    a heenbericht the retour is refused, unless ``[gateway] conversations = "lenient"``: then
    ``cross_ref`` (a heenbericht that did not pass this gateway) is required and the retour
    goes out unlinked; one naming another of this pair's messages is refused as well."""
    other = _refused(
        422,
        "cross_ref does not name the heenbericht that this retour's BerichtIdentificatie "
        "answers; leave it out",
        code="StUF043",
    )
    if heen is not None:
        if cross_ref is not None and cross_ref != heen.referentienummer:
            return other
        return heen.referentienummer
    unknown = f"no {heen_code} with this Identificatie was sent to you through this gateway"
    if gw.config.conversations != "lenient":
        return _refused(422, unknown, code="StUF043")
    if not cross_ref:
        return _refused(
            422,
            f"{unknown}; give ?cross_ref=<its Di01 referentienummer> to send it unlinked",
            code="StUF043",
        )
    named = await gw.broker.find_conversation(
        cross_ref, zender=afzender, ontvanger=partner.id, kinds=("Di01",)
    )
    return other if named is not None else cross_ref


async def submit_payload(
    gw: Gateway,
    identity: Identity,
    partner: Partner,
    payload: bytes,
    *,
    referentienummer: str | None = None,
    cross_ref: str | None = None,
    validated: PayloadResult | None = None,
) -> Submitted:
    """Validate a raw iWmo/iJw message once and hand it to the ingress, which wraps it in a
    Di01/Du01 for ``partner`` and accepts it (the REST API and the portal's upload alike).
    ``validated``: the payload's validation when the caller has it already (the portal
    showed its report)."""
    fits = (gw.config.max_message_bytes - ENVELOPE_ALLOWANCE) * 3 // 4
    if len(payload) > fits:
        return _refused(
            413,
            f"payload is {len(payload):,} bytes; base64 in a Di01 it must fit the "
            f"{gw.config.max_message_bytes:,}-byte message limit (at most {fits:,} bytes)",
            code="IB007",
        )
    try:
        result = (
            validated
            if validated is not None
            else await gw.ingress.payloads.validate_payload(payload)
        )
    except ReaderCrashed:  # two reader processes ended on it: not read in the gateway
        return _refused(503, "the message could not be read; send it again later", code="StUF046")
    if result.identified is None or result.root is None:
        errors = result.report.errors
        return _refused(
            422,
            errors[0].message if errors else "not an iWmo/iJw message",
            code="StUF055",
            problems=[p.to_dict() for p in errors],
        )
    message, root = result.identified.message, result.root
    header = root.find("{*}Header")
    afzender = header.findtext("{*}Afzender") if header is not None else None
    ontvanger = header.findtext("{*}Ontvanger") if header is not None else None
    if referentienummer is not None and not env.UUID4.match(referentienummer):
        return _refused(
            400,
            "Idempotency-Key must be a lower-case UUID v4 (it becomes the "
            "envelope referentienummer)",
        )
    applicatie = gw.config.applicatie
    if message.kind is Kind.RETOUR:
        assert message.pair is not None
        heen_code = f"{message.standard.message_prefix}{message.pair}"
        ident = (
            header.findtext("{*}BerichtIdentificatie/{*}Identificatie")
            if (header is not None)
            else None
        )
        # Only a heen message addressed to the caller can be answered by it; any other looks
        # exactly like one this gateway never saw. The payload's own reference decides.
        heen = await gw.broker.find_heen(
            afzender or "", heen_code, ident or "", ontvanger=partner.id
        )
        linked = await _retour_reference(gw, partner, afzender or "", heen_code, heen, cross_ref)
        if isinstance(linked, Submitted):
            return linked
        cross_ref = linked
        wrapping = Wrapping(
            env.Kind.DU01, payload, afzender or "", applicatie, cross_ref, referentienummer
        )
    else:
        wrapping = Wrapping(
            env.Kind.DI01, payload, ontvanger or "", applicatie, None, referentienummer
        )
    # the payload validated above goes into the ingress as it is: never validated again
    large = len(payload) * 4 // 3 > LARGE_PAYLOAD_BYTES  # its base64, as in the envelope
    outcome = await gw.ingress.accept_payload(result, wrapping, identity, offload=large)
    if isinstance(outcome, Rejected):
        REJECTED.labels(code=outcome.code).inc()
        status = 503 if outcome.code == "StUF046" else 403 if outcome.code == "StUF052" else 422
        return _refused(status, outcome.omschrijving, code=outcome.code)
    ACCEPTED.labels(functie=message.code, duplicate=str(outcome.duplicate).lower()).inc()
    accepted: dict[str, object] = {
        "id": outcome.message_id,
        "referentienummer": outcome.referentienummer,
        "duplicate": outcome.duplicate,
        "destinations": list(outcome.destinations),
    }
    warnings = result.report.warnings
    if warnings:  # the visible note of a release without known rules (issue 31.5), IV034
        accepted["warnings"] = [p.to_dict() for p in warnings]
    return Submitted(202, accepted)


async def message_status(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    identity = identify(request, gw)
    if identity.partner is None and not identity.admin:
        anonymous(gw, identity, "401", "rest")
        return problem(401, "a credential is required")
    limited = over_rate(request, gw, identity)
    if limited is not None:
        return limited
    viewer = None if identity.admin else identity.partner.id if identity.partner else None
    view = await gw.broker.view(parameters.path_id(request, parameters.MESSAGE), viewer)
    if view is None:  # also for messages of others: no existence oracle
        return problem(404, "no such message")
    return web.json_response(with_times(view.to_dict()))


async def inbox(request: web.Request) -> web.Response:
    auth = as_partner(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _, partner = auth
    limit = query_int(request, "limit", 100, 1, 1000)
    items = await gw.broker.inbox(partner.id, limit, query_int(request, "after", 0, 0, MAX_CURSOR))
    return web.json_response(
        {
            "partner": partner.id,
            "messages": [with_times(i.to_dict()) for i in items],
            "next": _next(items, limit),
        }
    )


async def inbox_item(request: web.Request) -> web.Response:
    auth = as_partner(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _, partner = auth
    data = await gw.broker.inbox_envelope(
        partner.id, parameters.path_id(request, parameters.MESSAGE_ID)
    )
    if data is None:
        return problem(404, "no such message in your inbox")
    return web.Response(body=data, content_type="application/xml", charset="utf-8")


async def inbox_ack(request: web.Request) -> web.Response:
    auth = as_partner(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _, partner = auth
    message_id = parameters.path_id(request, parameters.MESSAGE_ID)
    if not await gw.broker.ack(partner.id, message_id):
        return problem(404, "no such message waiting in your inbox")
    return web.json_response({"acknowledged": message_id})


async def dead_letters(request: web.Request) -> web.Response:
    auth = as_admin(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _ = auth
    limit = query_int(request, "limit", 100, 1, 10000)
    after = query_int(request, "after", 0, 0, MAX_CURSOR)
    partner = parameters.query(request, "partner", parameters.PARTNER)
    items = await gw.broker.dead_letters(partner, limit, after)
    return web.json_response(
        {"dead_letters": [with_times(i.to_dict()) for i in items], "next": _next(items, limit)}
    )


def _next(items: Sequence[InboxItem | DeadLetter], limit: int) -> int | None:
    """The ``after`` of the next page, or None when this page was the last."""
    return int(items[-1].cursor) if len(items) == limit else None


async def replay(request: web.Request) -> web.Response:
    auth = as_admin(request)
    if isinstance(auth, web.Response):
        return auth
    gw, identity = auth
    async with admitted(request, gw, REPLAY_BODY_BYTES) as data:
        if isinstance(data, web.Response):
            return data
        try:
            body = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            # RecursionError: nesting deeper than the interpreter's stack (a few KB of '[')
            return problem(400, "body must be a JSON object")
    if not isinstance(body, dict):
        return problem(400, "body must be a JSON object")
    message_id, partner, since = body.get("message_id"), body.get("partner"), body.get("since")
    for name, value, shape in (
        ("message_id", message_id, parameters.MESSAGE),
        ("partner", partner, parameters.PARTNER),
    ):
        if value is not None and not (isinstance(value, str) and shape.fits(value)):
            return problem(400, f"{name} is {shape.says}")
    if since is not None and not (
        isinstance(since, int | float) and not isinstance(since, bool) and math.isfinite(since)
    ):
        return problem(400, "since is a number (seconds since the epoch)")
    if not isinstance(body.get("dead_only", True), bool):
        return problem(400, "dead_only is true or false")
    count = await gw.broker.replay(
        message_id=message_id,
        dead_only=body.get("dead_only", True),
        since=float(since) if since is not None else None,
        partner=partner,
        actor=f"admin@{identity.peer}",
    )
    log.info(
        "admin.replay",
        count=count,
        message_id=body.get("message_id"),
        partner=body.get("partner"),
        peer=identity.peer,
    )
    return web.json_response({"replayed": count})


async def overdue(request: web.Request) -> web.Response:
    auth = as_admin(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _ = auth
    days = query_float(request, "days", gw.config.overdue_days, 0.0, 36500.0)
    items = await gw.broker.overdue(time.time() - days * 86400, 10000)
    return web.json_response({"days": days, "overdue": [with_times(i.to_dict()) for i in items]})


async def figures(request: web.Request) -> web.Response:
    """Beleidsinformatie: a gemeente reads its own figures, the operator everyone's."""
    gw = request.app[GATEWAY_KEY]
    identity = identify(request, gw)
    if identity.partner is None and not identity.admin:
        anonymous(gw, identity, "401", "rest")
        return problem(401, "a credential is required")
    if not identity.admin and (limited := over_rate(request, gw, identity)) is not None:
        return limited
    asked = parameters.query(request, "gemeente", parameters.PARTNER)
    first = parameters.query(request, "from", parameters.MONTH)
    last = parameters.query(request, "to", parameters.MONTH)
    if first is not None and last is not None and first > last:
        return problem(400, f"from {first} is after to {last}: give the earlier month first")
    if identity.admin:
        gemeente = asked
    elif identity.partner is None:  # for the type checker: handled above
        return problem(401, "a credential is required")
    elif identity.partner.kind is not PartnerKind.GEMEENTE:
        return problem(403, "figures are for gemeenten and the operator")
    elif asked not in (None, identity.partner.id):
        return problem(403, "a gemeente reads its own figures only")
    else:
        gemeente = identity.partner.id
    wanted = request.query.get("format", "json")
    if wanted not in ("json", "csv"):
        return problem(400, "format is json or csv")
    raw = await gw.broker.figures(stats.Scope(gemeente, first, last))
    published = stats.publish(raw, gw.config.figures_min_cell)
    if wanted == "csv":
        return web.Response(text=stats.to_csv(published), content_type="text/csv")
    return web.json_response(published)


TIME_FIELDS = ("received_at", "updated_at", "next_attempt_at", "at")


def rfc3339(value: object) -> object:
    """Epoch seconds as an RFC 3339 UTC timestamp with milliseconds (None stays None)."""
    if not isinstance(value, int | float):
        return value
    moment = datetime.fromtimestamp(value, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def with_times(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the REST API shows it: times as RFC 3339, nested lists too."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in TIME_FIELDS:
            out[key] = rfc3339(value)
        elif isinstance(value, list):
            out[key] = [with_times(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out
