"""Refusals in the form each endpoint speaks: a Fo03 fault on the SOAP endpoint, a
problem document elsewhere; and ``unread``, which closes a connection whose body was never read.
"""

from __future__ import annotations

from aiohttp import web

from gateway import envelope as env
from gateway import soap
from gateway.problems import (
    problem,
)
from gateway.reading import Rejected
from gateway.web.wiring import SOAP_PATH, Gateway


def unread(request: web.Request, response: web.Response) -> web.Response:
    """A refusal before the body was read: close the connection after it, so the body is not
    drained (read and thrown away) for the next request on a kept-alive connection."""
    if request.can_read_body:
        response.force_close()
    return response


def fault(
    gw: Gateway,
    code: str,
    plek: str,
    omschrijving: str,
    rejected: Rejected | None,
    status: int,
    faultcode: str | None = None,
) -> web.Response:
    body = soap.fault(
        code=code,
        plek=plek,
        omschrijving=omschrijving,
        zender=gw.systeem,
        ontvanger=rejected.zender if rejected and rejected.zender else env.Systeem("", "onbekend"),
        cross_ref=rejected.cross_ref if rejected else "",
        details=rejected.details if rejected else None,
        faultcode=faultcode,
    )
    return web.Response(body=body, status=status, content_type="text/xml", charset="utf-8")


def too_large(request: web.Request, gw: Gateway) -> web.Response:
    if request.path == SOAP_PATH:
        return fault(gw, "IB007", "client", "message larger than the limit", None, 413)
    return problem(413, "message larger than the limit", code="IB007")


def soap_refusal(gw: Gateway, request: web.Request, status: int, title: str) -> web.Response | None:
    """The middleware's refusals (NUL in the target, an unknown Content-Encoding, an
    unforeseen error) on the SOAP endpoint: a Fo03 fault like every other answer there, not a
    JSON document a SOAP client cannot read. None elsewhere (a problem document)."""
    if request.path != SOAP_PATH or request.method != "POST":
        return None
    if status >= 500:
        return fault(gw, "StUF046", "server", "the message could not be handled", None, 500)
    return fault(gw, "StUF055", "client", title, None, 500)


def body_refusal(request: web.Request, gw: Gateway, status: int, title: str) -> web.Response:
    """A refusal of a body in the form its endpoint speaks: on SOAP a Fo03 (StUF046, plek
    server, for the gateway's own temporary refusal, the budget full: 503; StUF055, plek
    client, for a body that could not be read: framing or Content-Encoding 500, too slow
    408), elsewhere a problem document. The connection is closed after it: whatever is left
    of the body is not read."""
    if request.path == SOAP_PATH:
        if status == 503:
            response = fault(gw, "StUF046", "server", title, None, 503)
        else:
            response = fault(gw, "StUF055", "client", title, None, 408 if status == 408 else 500)
    else:
        response = problem(status, title)
    response.force_close()
    return response
