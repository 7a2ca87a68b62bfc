"""``ggk partners``: take a partner on, change its tokens, certificate and delivery, disable it.

Every change goes through gateway/partnerfile.py (a lock, the whole new file checked with the
gateway's loader, fsync, the previous version kept as ``partners.toml.bak``, an atomic
rename), is audited (the record's outcome starts with the partner's id, so ``ggk audit search
--partner ID`` finds it), and on the Kafka backend is published on ``<prefix>.partners`` so
every gateway process takes it up. A running gateway reloads its partner file within seconds
(gateway/web/reload.py): no restart.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from gateway import partnerfile, partnerops
from gateway.broker.base import StorageError
from gateway.cli.audit_trail import audit_admin_act
from gateway.cli.common import (
    EXIT_INVALID,
    UsageOrIOError,
    config_option,
    emit,
    json_option,
    keyring_of,
    read_config,
)
from gateway.config import GatewayConfig
from gateway.partnerfile import PartnerFileError
from routing.partners import PartnerRegistry, RegistryError


def _change(
    config: GatewayConfig, partner_id: str, action: str, change: Callable[[dict[str, Any]], str]
) -> None:
    """Apply ``change`` to the partner file (it returns what the audit record says after
    the partner's id), audit it, publish it to the cluster."""
    ring = keyring_of(config)
    path = config.partners_file
    try:
        with partnerfile.edit(path) as data:
            said = change(data)
    except PartnerFileError as exc:
        raise UsageOrIOError(str(exc)) from None
    except OSError as exc:
        raise UsageOrIOError(f"{path}: {exc.strerror}") from None
    if config.broker == "kafka":
        from gateway.broker.kafka_partners import publish_file

        try:
            publish_file(config, ring, path)
        except StorageError as exc:
            raise UsageOrIOError(
                f"changed {path}, but not on the cluster ({exc}); `ggk partners publish` "
                "tries again"
            ) from None
    if config.broker == "kafka" or config.database.exists():
        # the operator's act; a serving gateway also audits what it takes up (per partner,
        # gateway/web/reload.py), so an edit by hand is audited too
        audit_admin_act(config, ring, action, f"{partner_id}: {said}")


def _registry(config: GatewayConfig) -> PartnerRegistry:
    try:
        return PartnerRegistry.load(config.partners_file)
    except RegistryError as exc:
        raise UsageOrIOError(str(exc)) from None


def _settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    try:
        return dict(partnerops.setting(p) for p in pairs)
    except PartnerFileError as exc:
        raise click.UsageError(str(exc)) from None


def _checked_id(partner_id: str) -> str:
    try:
        return partnerops.check_id(partner_id)
    except PartnerFileError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def partners() -> None:
    """The partners in partners.toml: add, show, disable; tokens, certificate, delivery."""


@partners.command("list")
@config_option
@json_option
def partners_list(config_path: Path, as_json: bool) -> None:
    """Every partner: id, kind, delivery, status, active tokens, certificate."""
    found = [partnerops.summary(p) for p in _registry(read_config(config_path)).all()]
    lines = [
        f"{p['id']:<12} {p['kind']:<10} {p['delivery']['adapter']:<10} {p['status']:<9} "
        f"tokens {p['active_tokens']}  cert {(p['certificate_sha256'] or '-')[:16]}  {p['name']}"
        for p in found
    ]
    emit(found, as_json, "\n".join(lines) or "no partners")


@partners.command("show")
@click.argument("partner_id")
@config_option
@json_option
def partners_show(partner_id: str, config_path: Path, as_json: bool) -> None:
    """One partner (never a token: only their ids and dates)."""
    partner = _registry(read_config(config_path)).get(_checked_id(partner_id))
    if partner is None:
        raise UsageOrIOError(f"no partner {partner_id}")
    data = partnerops.summary(partner)
    tokens = ", ".join(
        f"{t['id']}"
        + ("" if t["valid"] else " (expired)")
        + (f" until {t['expires']}" if t["expires"] and t["valid"] else "")
        for t in data["tokens"]
    )
    human = "\n".join(
        [
            f"{data['id']}: {data['name']} ({data['kind']}), {data['status']}",
            f"  oin:         {data['oin'] or '-'}",
            f"  tokens:      {tokens or '-'}",
            f"  certificate: {data['certificate_sha256'] or '-'}",
            "  delivery:    " + ", ".join(f"{k}={v}" for k, v in data["delivery"].items()),
        ]
    )
    emit(data, as_json, human)


@partners.command("add")
@click.argument("partner_id")
@click.option("--name", required=True, help="The organisation's name.")
@click.option("--kind", required=True, help="gemeente, aanbieder, cak, svb or corv.")
@click.option("--oin", default=None, help="Its OIN (Digikoppeling PartyId), for ebMS.")
@click.option("--adapter", default="inbox", show_default=True, help="How messages reach it.")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE", help="A delivery setting.")
@config_option
@json_option
def partners_add(
    partner_id: str,
    name: str,
    kind: str,
    oin: str | None,
    adapter: str,
    pairs: tuple[str, ...],
    config_path: Path,
    as_json: bool,
) -> None:
    """Add a partner (no token yet: `ggk partners token issue ID`)."""
    config = read_config(config_path)
    _checked_id(partner_id)
    settings = _settings(pairs)

    def change(data: dict[str, Any]) -> str:
        partnerops.add(
            data, partner_id, name=name, kind=kind, oin=oin, adapter=adapter, settings=settings
        )
        return f"added ({kind}, delivery {adapter})"

    _change(config, partner_id, "partner_added", change)
    emit({"id": partner_id, "added": True}, as_json, f"added partner {partner_id}")


def _toggle(partner_id: str, config_path: Path, as_json: bool, disabled: bool) -> None:
    config = read_config(config_path)
    _checked_id(partner_id)
    word = "disabled" if disabled else "enabled"
    changed: list[bool] = []

    def change(data: dict[str, Any]) -> str:
        changed.append(partnerops.set_disabled(data, partner_id, disabled))
        return word if changed[0] else f"{word} (it was already)"

    _change(config, partner_id, f"partner_{word}", change)
    emit(
        {"id": partner_id, "status": word, "changed": changed[0]},
        as_json,
        f"partner {partner_id} {word}" + ("" if changed[0] else " (it was already)"),
    )


@partners.command("disable")
@click.argument("partner_id")
@config_option
@json_option
def partners_disable(partner_id: str, config_path: Path, as_json: bool) -> None:
    """Refuse the partner's tokens and certificate from its next request on."""
    _toggle(partner_id, config_path, as_json, True)


@partners.command("enable")
@click.argument("partner_id")
@config_option
@json_option
def partners_enable(partner_id: str, config_path: Path, as_json: bool) -> None:
    """Accept a disabled partner's credentials again."""
    _toggle(partner_id, config_path, as_json, False)


@partners.group("token")
def token() -> None:
    """A partner's bearer tokens (only their SHA-256 is kept)."""


def _issue(
    partner_id: str, config_path: Path, as_json: bool, retire_after: timedelta | None
) -> None:
    config = read_config(config_path)
    _checked_id(partner_id)
    issued: list[partnerops.Issued] = []

    def change(data: dict[str, Any]) -> str:
        issued.append(partnerops.issue_token(data, partner_id, retire_after=retire_after))
        new = issued[0]
        retiring = (
            f"; {', '.join(new.retiring)} expire {new.expires:%Y-%m-%dT%H:%MZ}"
            if new.retiring and new.expires
            else ""
        )
        return f"token {new.token_id} issued{retiring}"

    action = "partner_token_rotated" if retire_after is not None else "partner_token_issued"
    _change(config, partner_id, action, change)
    new = issued[0]
    human = (
        f"token {new.token_id} for {partner_id} (shown once; give it to the partner over a "
        f"safe channel):\n{new.token}"
    )
    if new.retiring and new.expires:
        human += f"\nstill valid until {new.expires:%Y-%m-%d %H:%M} UTC: {', '.join(new.retiring)}"
    emit(
        {
            "id": partner_id,
            "token_id": new.token_id,
            "token": new.token,
            "retiring": new.retiring,
            "retiring_at": new.expires.isoformat() if new.expires else None,
        },
        as_json,
        human,
    )


@token.command("issue")
@click.argument("partner_id")
@config_option
@json_option
def token_issue(partner_id: str, config_path: Path, as_json: bool) -> None:
    """A new token, next to the partner's others; printed once."""
    _issue(partner_id, config_path, as_json, None)


@token.command("rotate")
@click.argument("partner_id")
@click.option(
    "--grace-hours",
    type=click.IntRange(0, 24 * 90),
    default=24 * 7,
    show_default=True,
    help="How long the partner's other tokens stay valid.",
)
@config_option
@json_option
def token_rotate(partner_id: str, grace_hours: int, config_path: Path, as_json: bool) -> None:
    """A new token; the others expire after the grace period (revoke them sooner if need be)."""
    _issue(partner_id, config_path, as_json, timedelta(hours=grace_hours))


@token.command("revoke")
@click.argument("partner_id")
@click.argument("token_id")
@config_option
@json_option
def token_revoke(partner_id: str, token_id: str, config_path: Path, as_json: bool) -> None:
    """Remove a token (by its id, from `ggk partners show`): refused from the next request."""
    config = read_config(config_path)
    _checked_id(partner_id)

    def change(data: dict[str, Any]) -> str:
        partnerops.revoke_token(data, partner_id, token_id)
        return f"token {token_id} revoked"

    _change(config, partner_id, "partner_token_revoked", change)
    emit(
        {"id": partner_id, "token_id": token_id, "revoked": True},
        as_json,
        f"token {token_id} of {partner_id} revoked",
    )


@partners.command("cert")
@click.argument("partner_id")
@click.argument("pem", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option
@json_option
def partners_cert(partner_id: str, pem: Path, config_path: Path, as_json: bool) -> None:
    """Register the partner's client certificate (PEM): mutual TLS then proves the partner."""
    config = read_config(config_path)
    _checked_id(partner_id)
    try:
        with open(pem, "rb") as source:
            content = source.read(partnerops.MAX_PEM + 1)
    except OSError as exc:
        raise UsageOrIOError(f"{pem}: {exc.strerror}") from None
    found: list[partnerops.Certificate] = []

    def change(data: dict[str, Any]) -> str:
        found.append(partnerops.register_certificate(data, partner_id, content))
        return f"certificate sha256 {found[0].sha256[:16]} registered"

    _change(config, partner_id, "partner_certificate_registered", change)
    cert = found[0]
    emit(
        {
            "id": partner_id,
            "sha256": cert.sha256,
            "subject": cert.subject,
            "not_after": cert.not_after.isoformat(),
        },
        as_json,
        f"registered for {partner_id}: {cert.subject}\n  sha256 {cert.sha256}\n"
        f"  valid until {cert.not_after:%Y-%m-%d} ({cert.days_left} days)",
    )


@partners.command("delivery")
@click.argument("partner_id")
@click.option("--adapter", required=True, help="http, stuf, directory, inbox or ebms.")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE", help="A delivery setting.")
@config_option
@json_option
def partners_delivery(
    partner_id: str, adapter: str, pairs: tuple[str, ...], config_path: Path, as_json: bool
) -> None:
    """Set how messages reach the partner (the whole [partner.delivery] table)."""
    config = read_config(config_path)
    _checked_id(partner_id)
    settings = _settings(pairs)

    def change(data: dict[str, Any]) -> str:
        partnerops.set_delivery(data, partner_id, adapter, settings)
        return f"delivery set to {adapter}"

    _change(config, partner_id, "partner_delivery_set", change)
    emit(
        {"id": partner_id, "adapter": adapter},
        as_json,
        f"delivery of {partner_id}: {adapter}; `ggk partners check {partner_id}` tries it",
    )


@partners.command("check")
@click.argument("partner_id")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=5.0, show_default=True)
@config_option
@json_option
def partners_check(partner_id: str, timeout: float, config_path: Path, as_json: bool) -> None:
    """Try the partner's delivery without sending a message: name resolution, connection,
    TLS handshake and certificate, an HTTP OPTIONS; for a folder, that it is writable."""
    from gateway.partnercheck import check_delivery

    partner = _registry(read_config(config_path)).get(_checked_id(partner_id))
    if partner is None:
        raise UsageOrIOError(f"no partner {partner_id}")
    results = check_delivery(partner, timeout)
    emit(
        [{"check": r.name, "ok": r.ok, "detail": r.detail} for r in results],
        as_json,
        "\n".join(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}" for r in results),
    )
    if not all(r.ok for r in results):
        raise SystemExit(EXIT_INVALID)


@partners.command("publish")
@config_option
@json_option
def partners_publish(config_path: Path, as_json: bool) -> None:
    """Kafka: put this process's partner file on the cluster for every process (after an
    edit by hand; ``ggk partners`` commands publish their changes themselves)."""
    config = read_config(config_path)
    if config.broker != "kafka":
        raise click.UsageError("only the Kafka backend shares the partner file")
    registry = _registry(config)  # never publish a file the gateway would refuse
    ring = keyring_of(config)
    from gateway.broker.kafka_partners import publish_file

    try:
        publish_file(config, ring, config.partners_file)
    except StorageError as exc:
        raise UsageOrIOError(str(exc)) from None
    audit_admin_act(config, ring, "partners_published", f"{len(registry.all())} partners")
    emit({"published": True}, as_json, f"published {config.partners_file} to the cluster")
