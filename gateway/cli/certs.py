"""``ggk certs revoke``: revoke a partner's certificate of the development CA."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.common import UsageOrIOError, config_option, emit, json_option, read_config
from gateway.devpki import DevCA


@click.group()
def certs() -> None:
    """Certificates of the development CA written by ggk init."""


@certs.command("revoke")
@click.argument("partner")
@config_option
@json_option
def certs_revoke(partner: str, config_path: Path, as_json: bool) -> None:
    """Revoke a partner's development client certificate (add it to pki/crl.pem).

    The gateway reads the CRL at start: restart it to refuse the certificate.
    """
    config = read_config(config_path)
    pki = config.path.parent / "pki"
    cert = pki / f"client-{partner}.crt"
    if not cert.is_file() or not (pki / "ca.key").is_file():
        raise UsageOrIOError(f"no development certificate for {partner} in {pki}")
    ca = DevCA.load(pki)
    if ca.is_revoked(cert):
        emit(
            {"partner": partner, "certificate": str(cert), "revoked": True, "changed": False},
            as_json,
            f"{cert.name} was revoked already; nothing changed",
        )
        return
    crl = ca.revoke(cert)
    emit(
        {"partner": partner, "certificate": str(cert), "revoked": True, "changed": True},
        as_json,
        f"revoked {cert.name}; {crl} updated; restart the gateway to apply",
    )
