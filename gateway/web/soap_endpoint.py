"""The StUF-GGk SOAP ingress (``/ggk/OntvangAsynchroon``), its WSDL and bundled schemas,
and the ebMS2 endpoint (``/ebms``): authenticate, admit the body, hand it to the ingress, answer
with a Bv03 or a Fo03 fault. (gateway/soap.py is the SOAP binding itself.)
"""

from __future__ import annotations

import re
import time

from aiohttp import web

from gateway import envelope as env
from gateway import soap
from gateway.bundled import WSDL_GENERATIONS, ontvang_wsdl, stuf_ggk_dir
from gateway.config import is_loopback
from gateway.metrics import (
    ACCEPTED,
    BV03_SECONDS,
    REJECTED,
)
from gateway.offload import LARGE_PAYLOAD_BYTES
from gateway.problems import (
    problem,
)
from gateway.reading import Rejected
from gateway.web.answers import fault, unread
from gateway.web.body import admitted, off_loop
from gateway.web.identify import anonymous, identify, over_rate
from gateway.web.wiring import GATEWAY_KEY, SOAP_PATH

EBMS_LISTENER: web.AppKey[bool] = web.AppKey("ebms_listener", bool)
"""Set on the ``[ebms] listen`` listener's application (gateway/web/app.py)."""
_SAFE_FILE = re.compile(r"^[A-Za-z0-9_./-]+\.(xsd|wsdl)$")


MAX_SCHEMA_NAME = 200
"""The bundled schemas' paths are under 80 characters; longer names are refused unread."""


async def soap_endpoint(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY_KEY]
    if request.method == "GET":
        if "wsdl" in request.query:
            return wsdl(request)
        return problem(
            405, "POST a SOAP request; GET ?wsdl (or ?wsdl=0310) for the service description"
        )
    started = time.perf_counter()
    identity = identify(request, gw)
    if identity.partner is None:
        # Nothing of an unknown caller is read or parsed: its body stays unread and the
        # connection is closed after the answer. Audited in aggregate (gateway/tally.py).
        REJECTED.labels(code="StUF052").inc()
        anonymous(gw, identity, "StUF052", "soap")
        return unread(
            request, fault(gw, "StUF052", "client", "sender is not authenticated", None, 500)
        )
    limited = over_rate(request, gw, identity)
    if limited is not None:
        return limited
    async with admitted(request, gw) as data:
        if isinstance(data, web.Response):
            return data
        large = len(data) > LARGE_PAYLOAD_BYTES
        action = request.headers.get("SOAPAction")
        try:
            # read in a reader process (another core) when there is one, else here
            # alone: no body held but this request's own
            alone = gw.admission.bodies.held_now <= 1 and not gw.config.readers_when_alone
            read = await gw.ingress.read_soap(data, action, identity, alone=alone)
            element = (
                await off_loop(gw, large, soap.unwrap, data, action, gw.soap_limits)
                if read is None
                else None
            )
        except soap.SoapFault as exc:
            REJECTED.labels(code=exc.code).inc()
            await gw.ingress.refused_before_envelope(identity, exc.code, "soap")
            readable = Rejected(exc.code, exc.plek, exc.omschrijving, exc.cross_ref, exc.zender)
            return fault(
                gw, exc.code, exc.plek, exc.omschrijving, readable, exc.http_status, exc.faultcode
            )
        del data
        if read is not None:
            result = await gw.ingress.accept_read(read, identity)
        else:
            assert element is not None
            result = await gw.ingress.accept_envelope(element, identity, offload=large)
    BV03_SECONDS.labels(channel="soap").observe(time.perf_counter() - started)
    if isinstance(result, Rejected):
        REJECTED.labels(code=result.code).inc()
        return fault(gw, result.code, result.plek, result.omschrijving, result, 500)
    label = "Fo01" if result.functie is None else env.functie_label(result.functie)
    ACCEPTED.labels(functie=label, duplicate=str(result.duplicate).lower()).inc()
    body = soap.bv03(
        zender=gw.systeem,
        ontvanger=result.zender,
        cross_ref=result.referentienummer,
        referentienummer=result.bv03_ref,
        tijdstip=result.bv03_tijdstip,
    )
    return web.Response(body=body, content_type="text/xml", charset="utf-8")


async def ebms_endpoint(request: web.Request) -> web.StreamResponse:
    """``POST /ebms``: a partner's ebMS2 MSH (gateway/ebms/inbound.py)."""
    gw = request.app[GATEWAY_KEY]
    if gw.ebms is None:
        return unread(request, problem(404, "ebMS2 is not configured on this gateway"))
    assert gw.config.ebms is not None
    if gw.config.ebms.listen is not None and not request.app.get(EBMS_LISTENER, False):
        # Digikoppeling: two-way TLS; the listener that requires a certificate serves /ebms
        return unread(request, problem(404, "the ebMS endpoint is served on its own listener"))
    identity = identify(request, gw)
    local_peer = gw.config.plain_http and is_loopback(request.remote or "")
    certified = identity.partner is not None and identity.via == "mtls"
    if not certified and not (local_peer and gw.ebms.loopback_test_mode):
        # Digikoppeling's access control is the client certificate only (KVS ch05 "HTTP
        # Access Control"): a partner's bearer token does not make an MSH caller
        anonymous(gw, identity, "401", "ebms")
        return unread(request, problem(401, "a partner client certificate is required"))
    limited = over_rate(request, gw, identity)
    if limited is not None:
        return limited
    async with admitted(request, gw) as body:
        if isinstance(body, web.Response):
            return body
        return await gw.ebms.handle(request, body, identity)


def wsdl(request: web.Request) -> web.Response:
    """Our WSDL of one envelope generation (``?wsdl`` or ``?wsdl=0210``: the current one;
    ``?wsdl=0310``: the 0310 bundle's), with absolute import locations and the configured public
    address (never the request's Host header, which the caller chooses). Both generations are
    accepted at the same address."""
    generation = request.query.get("wsdl") or "0210"
    if generation not in WSDL_GENERATIONS:
        return problem(
            404, "no such WSDL; ?wsdl (0210) or ?wsdl=" + " or ?wsdl=".join(WSDL_GENERATIONS)
        )
    base = request.app[GATEWAY_KEY].config.base_url
    folder = f"ggk{generation}"
    text = ontvang_wsdl(generation).read_text(encoding="utf-8")
    text = text.replace(
        'location="../stuf0301_types.wsdl"', f'location="{base}/ggk/wsdl/stuf0301_types.wsdl"'
    )
    text = text.replace(
        f'schemaLocation="{folder}_msg.xsd"',
        f'schemaLocation="{base}/ggk/wsdl/{folder}/{folder}_msg.xsd"',
    )
    text = text.replace(
        'location="http://127.0.0.1/ggk/OntvangAsynchroon"', f'location="{base}{SOAP_PATH}"'
    )
    return web.Response(text=text, content_type="text/xml", charset="utf-8")


async def schema_file(request: web.Request) -> web.StreamResponse:
    """A file of the bundled StUF-GGk schemas. The name is checked before it touches the file
    system (a NUL, a name longer than the file system allows, a traversal), and a name the
    file system refuses anyway is a 404 too, not an error."""
    name = request.match_info["name"]
    if len(name) > MAX_SCHEMA_NAME or not _SAFE_FILE.match(name):
        return problem(404, "no such schema file")
    root = stuf_ggk_dir().resolve()
    try:
        path = (root / name).resolve()
        found = root in path.parents and path.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        return problem(404, "no such schema file")
    return web.Response(body=path.read_bytes(), content_type="text/xml", charset="utf-8")
