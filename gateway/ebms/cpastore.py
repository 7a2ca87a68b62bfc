"""The CPAs the gateway takes part in: imported, checked against the partners, kept as files.

A CPA is configuration that both parties sign off, like the partner file: it is kept as a file
per cpaid in ``[ebms] cpa_dir`` (mode 0600, folder 0700), which every gateway process reads at
start, so the embedded and the Kafka backend need nothing else. Importing checks, beyond the CPA
itself (:mod:`gateway.ebms.cpa`), that one party is this gateway (``[ebms] oin``) and that the
other is a configured partner (``oin`` in partners.toml): a message on the link can then be
attributed to exactly one partner, as every other ingress does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from gateway.config import EbmsConfig
from gateway.ebms.cpa import Cpa, CpaError, CpaParty, load_schema, parse
from gateway.ebms.signing import Signer
from gateway.safefiles import private_dir, write_new
from routing.partners import Partner, PartnerRegistry


@dataclass(frozen=True, slots=True)
class Link:
    """An imported CPA with its two sides resolved: the gateway's and the partner's."""

    cpa: Cpa
    ours: CpaParty
    theirs: CpaParty
    partner: Partner


class CpaStore:
    """Imported CPAs by cpaid, checked again whenever they are loaded."""

    def __init__(self, config: EbmsConfig, partners: PartnerRegistry) -> None:
        self.config = config
        self.partners = partners
        self._schema: etree.XMLSchema | None = None
        if config.schema_dir is not None:
            try:
                self._schema = load_schema(config.schema_dir)
            except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
                raise CpaError(
                    [f"[ebms] schema_dir {config.schema_dir}: no usable cpp-cpa-2_0.xsd ({exc})"]
                ) from None
        self.problems: dict[str, list[str]] = {}
        """cpaid → why an imported CPA was skipped by the last :meth:`load`."""
        self.signer: Signer | None = None
        if config.signing_key is not None and config.signing_cert is not None:
            try:
                self.signer = Signer.load(config.signing_key, config.signing_cert)
            except (OSError, ValueError) as exc:
                raise CpaError([f"[ebms] signing_key/signing_cert: {exc}"]) from None

    @property
    def validates_schema(self) -> bool:
        return self._schema is not None

    def check(self, data: bytes) -> Link:
        """Parse a CPA and resolve its sides; :class:`CpaError` says everything that is wrong."""
        cpa = parse(data, schema=self._schema, loopback_ok=self.config.loopback_http)
        ours = cpa.party(self.config.oin)
        if ours is None:
            raise CpaError(
                [
                    f"neither party is this gateway (OIN {self.config.oin}); the CPA is between "
                    f"{cpa.parties[0].oin} and {cpa.parties[1].oin}"
                ]
            )
        theirs = cpa.other(ours.oin)
        partner = self.partners.by_oin(theirs.oin)
        if partner is None:
            raise CpaError(
                [
                    f"the other party, {theirs.name!r} (OIN {theirs.oin}), is no partner: add "
                    f'oin = "{theirs.oin}" to its entry in partners.toml'
                ]
            )
        self._check_signing(ours, theirs)
        return Link(cpa, ours, theirs, partner)

    def _check_signing(self, ours: CpaParty, theirs: CpaParty) -> None:
        """A signed channel of ours needs our key, and the CPA must carry its certificate; a
        channel asking signed acknowledgments needs a signing signal channel on the side that
        gives them."""
        problems: list[str] = []
        channels = [b.channel for b in ours.sends.values()] + [ours.default_channel]
        for channel in channels:
            if channel.signing_certificate is None:
                continue
            if self.signer is None:
                problems.append(
                    f"channel {channel.id!r} signs (osb-*-s): set [ebms] signing_key and "
                    "signing_cert"
                )
            elif channel.signing_certificate != self.signer.certificate:
                problems.append(
                    f"channel {channel.id!r}: the CPA's signing certificate is not "
                    "[ebms] signing_cert"
                )
        # signed acknowledgments: we sign the receipts our signal channel sends, and verify
        # theirs with the certificate of the partner's signal channel
        for party, signer_side, who in ((theirs, ours, "our"), (ours, theirs, "the partner's")):
            for binding in party.sends.values():
                signals = signer_side.default_channel
                if binding.channel.ack_signature_requested and signals.signing_certificate is None:
                    problems.append(
                        f"channel {binding.channel.id!r} asks signed acknowledgments, but "
                        f"{who} signal channel {signals.id!r} does not sign"
                    )
        if problems:
            raise CpaError(sorted(set(problems)))

    def path(self, cpaid: str) -> Path:
        return self.config.cpa_dir / f"{cpaid}.xml"

    def add(self, data: bytes, *, replace: bool = False) -> Link:
        """Import a CPA. An existing cpaid is refused unless ``replace`` (a renewed CPA)."""
        link = self.check(data)
        private_dir(self.config.cpa_dir)
        target = self.path(link.cpa.cpaid)
        if target.exists() and not replace:
            raise CpaError(
                [f"a CPA {link.cpa.cpaid!r} is imported already (--replace to renew it)"]
            )
        if replace and target.exists():
            temporary = target.with_name(f".{target.name}.new")
            temporary.unlink(missing_ok=True)
            if not write_new(self.config.cpa_dir, temporary.name, data):
                raise CpaError([f"cannot write {temporary}"])
            os.replace(temporary, target)
        elif not write_new(self.config.cpa_dir, target.name, data):
            raise CpaError([f"a file {target.name} is in the way in {self.config.cpa_dir}"])
        return link

    def load(self) -> dict[str, Link]:
        """Every imported CPA; one that no longer checks (ended, partner removed) is skipped
        and named in ``problems``."""
        self.problems = {}
        links: dict[str, Link] = {}
        if not self.config.cpa_dir.is_dir():
            return links
        for path in sorted(self.config.cpa_dir.glob("*.xml")):
            try:
                link = self.check(path.read_bytes())
            except CpaError as exc:
                self.problems[path.stem] = exc.problems
                continue
            links[link.cpa.cpaid] = link
        return links

    def get(self, cpaid: str) -> Link | None:
        path = self.path(cpaid)
        if not path.is_file() or path.parent != self.config.cpa_dir:
            return None
        return self.check(path.read_bytes())


def describe(link: Link) -> dict[str, object]:
    """A CPA as plain data for ``ggk cpa list|show --json``."""
    cpa = link.cpa

    def actions(party: CpaParty, direction: str) -> list[dict[str, object]]:
        table = party.sends if direction == "send" else party.receives
        return [
            {
                "service": service,
                "action": action,
                "profile": b.channel.profile.value,
                "sync_reply_mode": b.channel.sync_reply_mode,
                "retries": b.channel.retries,
                "retry_interval_s": b.channel.retry_interval.total_seconds()
                if b.channel.retry_interval
                else None,
                "endpoint": b.channel.endpoint,
            }
            for (service, action), b in sorted(table.items())
        ]

    return {
        "cpaid": cpa.cpaid,
        "start": cpa.start.isoformat(),
        "end": cpa.end.isoformat(),
        "profiles": sorted(p.value for p in cpa.profiles),
        "partner": link.partner.id,
        "ours": {"oin": link.ours.oin, "role": link.ours.role, "name": link.ours.name},
        "theirs": {"oin": link.theirs.oin, "role": link.theirs.role, "name": link.theirs.name},
        "we_send": actions(link.ours, "send"),
        "we_receive": actions(link.ours, "receive"),
    }
