"""Two-way TLS of the ebMS2 MSH (Digikoppeling: client and server certificates, no tokens).

Both sides over real TLS on loopback: the gateway's ``[ebms] listen`` listener, which requires
a client certificate, and a partner MSH's HTTPS endpoint (a capture server) that requires the
gateway's. The demo CA of ``ggk init`` is the trust anchor; expired, foreign-CA and revoked
certificates are made from it (or from a CA of their own). Against ebms-core:
tests/test_ebms_peer.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from structlog.testing import capture_logs

from gateway.config import ConfigError
from gateway.config import load as load_config
from gateway.devpki import DevCA
from gateway.ebms import compose
from gateway.ebms import message as ebms
from gateway.web.wiring import build
from kit.ebms import (
    Capture,
    capturing,
    delivery_to_0150,
    di01,
    ebms_url,
    gateway_with_cpa,
    outgoing,
    submit_to_0150,
)
from kit.gateway import Setup, eventually, running


def _server_context(setup: Setup, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """A partner MSH's HTTPS endpoint: ``cert`` (default: the demo server certificate, for
    127.0.0.1), requiring a client certificate of the demo CA."""
    pki = setup.directory / "pki"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    chain = cert or (pki / "server.crt", pki / "server.key")
    context.load_cert_chain(str(chain[0]), str(chain[1]))
    context.load_verify_locations(cafile=str(pki / "ca.crt"))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class TlsCapture(Capture):
    """A capture that also notes the client certificate each request came with."""

    peer_certs: list[bytes]

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.peer_certs.append(der or b"")
        return await super().handle(request)


@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[Setup, TlsCapture]]:
    """The gateway and 0150's HTTPS endpoint; certificates the hostile cases present are
    issued (and one revoked) before the gateway starts, as it reads its CRL at start."""
    capture = TlsCapture()
    capture.peer_certs = []
    setup = gateway_with_cpa(tmp_path, capture, two_way_tls=True, outbound=True)
    ca = DevCA.load(setup.directory / "pki")
    ca.issue("expired", "0150", not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    ca.revoke(ca.issue("revoked", "0150").cert)
    DevCA(setup.directory / "rogue").issue("foreign", "0150", organisation="Rogue")
    async with capturing(capture, _server_context(setup)), running(setup):
        yield setup, capture


def _client(setup: Setup, cert: tuple[str, str] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=setup.ca)
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


async def _post(setup: Setup, context: ssl.SSLContext, url: str | None = None) -> tuple[int, bytes]:
    content_type, body = compose.business_message(outgoing(di01()))
    headers = {"Content-Type": content_type, "SOAPAction": ebms.SOAP_ACTION}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.post(url or ebms_url(setup), data=body, headers=headers) as response,
    ):
        return response.status, await response.read()


HOSTILE = {
    "none": None,
    "expired": ("pki", "expired"),
    "foreign CA": ("rogue", "foreign"),
    "revoked": ("pki", "revoked"),
}


async def test_a_partner_certificate_gets_in_and_the_ack_goes_out_with_ours(
    linked: tuple[Setup, TlsCapture],
) -> None:
    """Both directions: 0150's MSH certificate is its identity on the listener; the
    Acknowledgment reaches its HTTPS endpoint, which requires and gets our ebMS client
    certificate (clientAuth), checked against the demo CA."""
    setup, capture = linked
    status, _ = await _post(setup, _client(setup, setup.client_cert("0150")))
    assert status == 204
    await eventually(lambda: capture.received)
    assert ebms.read("text/xml", capture.received[0]).action == "Acknowledgment"
    ours = x509.load_der_x509_certificate(capture.peer_certs[0])
    pem = (setup.directory / "pki" / "ebms-client.crt").read_bytes()
    assert ours == x509.load_pem_x509_certificate(pem)
    usage = ours.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_a_caller_without_a_good_certificate_fails_the_handshake(
    linked: tuple[Setup, TlsCapture], case: str
) -> None:
    """The listener REQUIRES a client certificate of a trusted, unexpired, unrevoked chain:
    anything else never gets an HTTP answer (so no bearer token can be presented either)."""
    setup, _ = linked
    where = HOSTILE[case]
    cert = None
    if where is not None:
        folder = setup.directory / where[0]
        cert = str(folder / f"{where[1]}.crt"), str(folder / f"{where[1]}.key")
    with capture_logs() as logs, pytest.raises(aiohttp.ClientError):
        await _post(setup, _client(setup, cert))
    assert any(entry["event"] == "tls.handshake_failed" for entry in logs)


async def test_another_partners_certificate_is_refused_on_a_cpa(
    linked: tuple[Setup, TlsCapture],
) -> None:
    """0175's valid certificate on 0150's CPA: the caller is 0175, not the CPA's party."""
    setup, capture = linked
    status, body = await _post(setup, _client(setup, setup.client_cert("0175")))
    assert status == 500 and b"not the other party of this CPA" in body
    assert capture.received == []


async def test_the_main_listener_does_not_serve_ebms_when_it_has_its_own(
    linked: tuple[Setup, TlsCapture],
) -> None:
    """With ``[ebms] listen`` the token callers' listener (client certificate optional)
    refuses /ebms: an MSH caller always meets the listener that requires a certificate."""
    setup, _ = linked
    status, _ = await _post(setup, _client(setup, setup.client_cert("0150")), f"{setup.url}/ebms")
    assert status == 404


BAD_SERVERS = ["foreign CA", "expired", "revoked", "another host"]


@pytest.mark.parametrize("case", BAD_SERVERS)
async def test_a_partner_endpoint_with_a_bad_server_certificate_gets_nothing(
    tmp_path: Path, case: str
) -> None:
    """The gateway as the client: the partner's server certificate must chain to the
    partner's anchors ([ebms] trust), be valid and unrevoked ([ebms] crl) and name the
    endpoint's host. Otherwise the handshake fails and not a byte of the message leaves."""
    capture = TlsCapture()
    capture.peer_certs = []
    setup = gateway_with_cpa(tmp_path, capture, two_way_tls=True, outbound=True)
    ca = DevCA.load(setup.directory / "pki")
    if case == "foreign CA":
        issued = DevCA(tmp_path / "rogue").issue("server", "localhost", server=True)
    elif case == "expired":
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        issued = ca.issue("old-server", "localhost", server=True, not_after=past)
    elif case == "revoked":
        issued = ca.issue("revoked-server", "localhost", server=True)
        ca.revoke(issued.cert)
    else:
        issued = ca.issue("elsewhere", "elsewhere", server=True, hosts=("partner.example",))
    context = _server_context(setup, (issued.cert, issued.key))
    async with capturing(capture, context), running(setup):
        message_id = await submit_to_0150(setup)

        async def failed() -> str | None:
            delivery = await delivery_to_0150(setup, message_id)
            return delivery.get("last_error") if delivery.get("attempts") else None

        error = await eventually(failed, timeout=30)
        assert "Certificate" in error or "SSL" in error, error
        assert capture.received == []


async def test_loopback_http_says_it_is_for_local_tests(tmp_path: Path, capture: Capture) -> None:
    setup = gateway_with_cpa(tmp_path, capture)
    config = setup.config_path.read_text()
    setup.config_path.write_text(
        config.replace(f"port = {setup.port}\n", f"port = {setup.port}\nplain_http = true\n", 1)
    )
    with capture_logs() as logs:
        build(load_config(setup.config_path))
    warned = [entry for entry in logs if entry["event"] == "ebms.loopback_http"]
    assert warned and warned[0]["log_level"] == "warning"
    assert "local tests only" in warned[0]["note"]


def _config_error(setup: Setup, lines: str) -> str:
    text = setup.config_path.read_text()
    if lines.startswith("["):  # a table of its own, after [ebms]'s keys
        changed = f"{text}\n{lines}\n"
    else:
        changed = text.replace("\n[ebms]\n", f"\n[ebms]\n{lines}\n", 1)
    setup.config_path.write_text(changed)
    with pytest.raises(ConfigError) as refused:
        load_config(setup.config_path)
    setup.config_path.write_text(text)
    return str(refused.value)


def test_tls_settings_are_checked_with_clear_errors(tmp_path: Path, capture: Capture) -> None:
    setup = gateway_with_cpa(tmp_path, capture, two_way_tls=True)
    text = setup.config_path.read_text()
    # our server certificate (serverAuth only) as the client certificate: ebms-core refuses it
    server = text.replace('"pki/ebms-client.crt"', '"pki/server.crt"').replace(
        '"pki/ebms-client.key"', '"pki/server.key"'
    )
    setup.config_path.write_text(server)
    with pytest.raises(ConfigError, match="clientAuth"):
        load_config(setup.config_path)
    setup.config_path.write_text(text)
    assert "did you mean 'trust'" in _config_error(setup, '[ebms.partner.0150]\ntrusts = "x"')
    no_port = re.sub(r'listen = "[^"]*"', 'listen = "8444"', text)
    setup.config_path.write_text(no_port)
    with pytest.raises(ConfigError, match="listen is"):
        load_config(setup.config_path)
    setup.config_path.write_text(text)
    assert "no PEM certificate" in _config_error(
        setup, '[ebms.partner.0150]\ntrust = "partners.toml"'
    )
    untrusting = re.sub(r'trust = "[^"]*"\n', "", text)
    setup.config_path.write_text(untrusting)
    with pytest.raises(ConfigError, match="listen needs trust anchors"):
        load_config(setup.config_path)
    setup.config_path.write_text(text)
    assert "go together" in _config_error(
        setup, '[ebms.partner.0150]\nclient_cert = "pki/client-0150.crt"'
    )


@pytest.mark.parametrize(
    ("case", "works"),
    [("TLS 1.1", False), ("TLS 1.2 CBC", False), ("TLS 1.2 GCM", True), ("TLS 1.3", True)],
)
async def test_the_listener_speaks_tls_1_2_and_1_3_with_the_allowed_suites_only(
    linked: tuple[Setup, TlsCapture], case: str, works: bool
) -> None:
    """Digikoppeling TLS004 and TLSCIPH001: TLS 1.2 or 1.3, suites the NCSC rates good
    (ECDHE with AES-GCM or ChaCha20-Poly1305); an older protocol or a CBC suite is refused."""
    setup, _ = linked
    context = _client(setup, setup.client_cert("0150"))
    if case == "TLS 1.1":
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
    elif case.startswith("TLS 1.2"):
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        suite = "ECDHE-ECDSA-AES128-SHA256" if "CBC" in case else "ECDHE-ECDSA-AES256-GCM-SHA384"
        context.set_ciphers(suite)
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    if works:
        assert (await _post(setup, context))[0] == 204
    else:
        with pytest.raises(aiohttp.ClientError):
            await _post(setup, context)


async def test_a_partner_table_gives_that_partner_its_own_client_certificate(
    tmp_path: Path,
) -> None:
    """``[ebms.partner.0150] client_cert``: 0150's endpoint gets that certificate, not the
    default one; a table naming no partner of the registry stops the start."""
    capture = TlsCapture()
    capture.peer_certs = []
    setup = gateway_with_cpa(tmp_path, capture, two_way_tls=True)
    own = DevCA.load(setup.directory / "pki").issue("ebms-client-0150", "ggk-gateway for 0150")
    text = setup.config_path.read_text()
    unknown = f'{text}\n[ebms.partner.9999]\ntrust = "pki/ca.crt"\n'
    setup.config_path.write_text(unknown)
    with pytest.raises(ValueError, match="no partner '9999'"):
        build(load_config(setup.config_path))
    table = f'\n[ebms.partner.0150]\nclient_cert = "{own.cert}"\nclient_key = "{own.key}"\n'
    setup.config_path.write_text(text + table)
    async with capturing(capture, _server_context(setup)), running(setup):
        assert (await _post(setup, _client(setup, setup.client_cert("0150"))))[0] == 204
        await eventually(lambda: capture.peer_certs)
    presented = x509.load_der_x509_certificate(capture.peer_certs[0])
    assert presented == x509.load_pem_x509_certificate(own.cert.read_bytes())


async def test_a_crl_fetched_anew_takes_effect_without_a_restart(tmp_path: Path) -> None:
    """Digikoppeling wants CRLs refreshed at least every 4 hours: a CRL file written anew is
    loaded into the running listener (the maintenance loop asks every checkpoint), and a
    certificate revoked in it fails the next handshake."""
    capture = TlsCapture()
    capture.peer_certs = []
    setup = gateway_with_cpa(tmp_path, capture, two_way_tls=True)
    ca = DevCA.load(setup.directory / "pki")
    late = ca.issue("late", "0150")  # trusted, but registered for no partner
    gw = build(load_config(setup.config_path))
    assert gw.ebms is not None and gw.ebms.outbound.tls is not None
    async with capturing(capture, _server_context(setup)), running(setup, built=gw):
        context = _client(setup, (str(late.cert), str(late.key)))
        assert (await _post(setup, context))[0] == 401  # through the handshake
        assert gw.ebms.outbound.tls.refresh_crls() == []  # nothing changed yet
        await asyncio.sleep(1.1)  # a CRL's lastUpdate has whole seconds: the new one is later
        crl = ca.revoke(late.cert)
        assert gw.ebms.outbound.tls.refresh_crls() == [crl]
        with pytest.raises(aiohttp.ClientError):
            await _post(setup, _client(setup, (str(late.cert), str(late.key))))
