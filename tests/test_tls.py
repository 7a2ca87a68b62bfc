"""Transport security of a running gateway: who can get through the TLS handshake at all."""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway import envelope as env
from gateway import soap
from gateway.devpki import DevCA
from gateway.metrics import REGISTRY
from kit.gateway import GGK, Setup, fo03_code, make_setup, running
from tests.conftest import sample

WMO301 = sample("iwmo/wmo301.xml").encode()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    s = make_setup(tmp_path / "gw", 1)
    async with running(s):
        yield s


def _client(
    setup: Setup, cert: tuple[str, str] | None = None, *, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=setup.ca)
    if cert:
        context.load_cert_chain(*cert)
    if max_version is not None:
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = max_version
        context.set_ciphers("ALL:@SECLEVEL=0")  # let the client even try old protocols
    return context


async def _send(setup: Setup, context: ssl.SSLContext) -> tuple[int, bytes]:
    body = soap.wrap_request(
        env.build_di01(
            WMO301.replace(b"WMO301A0001", f"T{uuid.uuid4().hex[:11]}".encode()),
            zender="0150",
            zender_applicatie="DOWRsociaal",
            ontvanger="12345678",
            functie="WMO301",
        )
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{setup.url}/ggk/OntvangAsynchroon",
            data=body,
            ssl=context,
            headers={"Content-Type": soap.CONTENT_TYPE},
        ) as response,
    ):
        return response.status, await response.read()


async def test_own_partner_certificate_gets_through(setup: Setup) -> None:
    status, _ = await _send(setup, _client(setup, setup.client_cert("0150")))
    assert status == 200


@pytest.mark.slow
async def test_certificate_from_an_untrusted_ca_is_refused_in_the_handshake(
    setup: Setup, tmp_path: Path
) -> None:
    rogue = DevCA(tmp_path / "rogue").issue("client", "0150")
    with pytest.raises(aiohttp.ClientError):
        await _send(setup, _client(setup, (str(rogue.cert), str(rogue.key))))


async def test_expired_certificate_is_refused_in_the_handshake(
    setup: Setup, tmp_path: Path
) -> None:
    ca = DevCA.load(setup.directory / "pki")
    expired = ca.issue("expired", "0150", not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    with pytest.raises(aiohttp.ClientError):
        await _send(setup, _client(setup, (str(expired.cert), str(expired.key))))


async def test_valid_but_unregistered_certificate_is_no_identity(
    setup: Setup, tmp_path: Path
) -> None:
    ca = DevCA.load(setup.directory / "pki")
    stranger = ca.issue("stranger", "0150")  # right CA, right name, unknown fingerprint
    status, body = await _send(setup, _client(setup, (str(stranger.cert), str(stranger.key))))
    assert status == 500 and fo03_code(body) == "StUF052"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
async def test_tls_below_1_2_is_refused(setup: Setup) -> None:
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(aiohttp.ClientError):
            await _send(setup, _client(setup, setup.client_cert("0150"), max_version=version))
    status, _ = await _send(
        setup, _client(setup, setup.client_cert("0150"), max_version=ssl.TLSVersion.TLSv1_2)
    )
    assert status == 200


@pytest.mark.slow
async def test_revoked_certificate_is_refused_after_restart(tmp_path: Path) -> None:
    s = make_setup(tmp_path / "gw", 1)
    result = subprocess.run(
        [GGK, "certs", "revoke", "0177", "--config", str(s.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    def refused_handshakes() -> float:
        sample = REGISTRY.get_sample_value(
            "ggk_connections_closed_total", {"reason": "tls_handshake"}
        )
        return sample or 0.0

    async with running(s):
        before = refused_handshakes()
        with pytest.raises(aiohttp.ClientError):
            await _send(s, _client(s, s.client_cert("0177")))
        assert refused_handshakes() == before + 1  # counted and logged (tls.handshake_failed)
        status, _ = await _send(s, _client(s, s.client_cert("0150")))
        assert status == 200
