"""Validate one document: hardened parse → (SOAP/envelope unwrap) → identify → XSD → rules.

The stages follow the control levels of the standard (iStandaarden iWmo/iJw 3.2,
controleniveaus): a document that is not well-formed or fails its XSD (level 1) is not looked at
further; in-message rules (level 2) and the rules with their own retourcode (levels 3/4) run
only on XSD-valid messages. Every failure is a :class:`Problem` in the returned report; nothing
here raises for bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import structlog
from lxml import etree

from gateway import envelope as env
from gateway.identify import Identified, identify, parties
from gateway.report import Problem, Severity, ValidationReport
from gateway.rules import RULES, MessageContext, Rule
from gateway.rules.base import reading_cache
from gateway.rules.catalogue import has_rules, known_releases
from gateway.rules.screen import Screen, ScreenError, compile_screen, names_of
from gateway.rules.screens import KEYS, SETS, tests_for
from gateway.schemas import SchemaRegistry
from gateway.soap import SOAP11_NS
from gateway.standards import Kind, MessageType, dutch_today
from gateway.xmlsafe import DEFAULT_LIMITS, ParseLimits, UnsafeXml, parse_untrusted
from gateway.xsderrors import problems_from_log

log = structlog.get_logger("ggk.validation")


@dataclass(slots=True)
class PayloadResult:
    """A validated payload: the report plus the parsed tree for later stages (routing)."""

    report: ValidationReport
    root: etree._Element | None = None
    identified: Identified | None = None


@dataclass
class Validator:
    """Reusable validator; holds the registry so schemas compile once per process."""

    registry: SchemaRegistry = field(default_factory=SchemaRegistry)
    limits: ParseLimits = DEFAULT_LIMITS
    rules: Sequence[Rule] = field(default_factory=lambda: list(RULES))
    today: date | None = None
    """The receiver's system date for TR135; None means today's date in the Netherlands at
    each call (:func:`gateway.standards.dutch_today`), whatever the host's time zone."""
    screen: bool = True
    """Ask the compiled screen (:mod:`gateway.rules.screen`) which rules may fire and run only
    those; False runs every rule in Python (the reference the screen is tested against)."""
    _selected: dict[tuple[str, str], list[Rule]] = field(
        default_factory=dict, init=False, repr=False
    )
    _screens: dict[tuple[str, Path], Screen | None] = field(
        default_factory=dict, init=False, repr=False
    )

    def _rules_for(self, message: MessageType, release: str) -> list[Rule]:
        """The rules of a message type and release, selected once per pair. A release the
        catalogue has no rules for gets the release-independent ones only (never another
        release's: 3.2's CS002 is not 3.3's), logged once per pair."""
        key = (message.code, release)
        selected = self._selected.get(key)
        if selected is None:
            selected = [r for r in self.rules if r.applies_to(message, release)]
            self._selected[key] = selected
            if not has_rules(message.standard, release):
                log.warning(
                    "rules_unknown_release",
                    message=message.code,
                    release=f"{message.standard.label} {release}",
                    known=", ".join(known_releases()),
                    checked=", ".join(r.id for r in selected) or "none",
                )
        return selected

    def _screen_for(self, identified: Identified) -> Screen | None:
        """The compiled screen of a message type and schema file, built on first use. A schema
        the screen cannot be built for (an operator's bundle that names things otherwise) is
        validated with every rule in Python: slower, never less strict."""
        key = (identified.message.code, identified.schema.file.path)
        if key not in self._screens:
            tests = tests_for(identified.message) if self.screen else {}
            screen = None
            if tests:
                try:
                    file = identified.schema.file
                    screen = compile_screen(
                        tests,
                        KEYS,
                        names_of(file.path),
                        (file.basisschema_xsd_versie, file.bericht_xsd_versie),
                        SETS,
                    )
                except ScreenError as exc:
                    log.warning(
                        "rule_screen_unavailable",
                        message=identified.message.code,
                        schema=identified.schema.file.path.name,
                        reason=str(exc),
                    )
            self._screens[key] = screen
        return self._screens[key]

    def validate(self, data: bytes, source: str = "-") -> ValidationReport:
        """Validate raw bytes: a bare iWmo/iJw message, a StUF-GGk envelope or a SOAP request."""
        report = ValidationReport(source=source)
        try:
            root = parse_untrusted(data, self.limits)
        except UnsafeXml as exc:
            report.problems.append(_unsafe(exc))
            return report
        if etree.QName(root).namespace == SOAP11_NS:
            body = root.find(f"{{{SOAP11_NS}}}Body")
            if body is None or len(body) == 0:
                report.problems.append(
                    Problem("SOAP-BODY", "SOAP Envelope without a Body child", path="Body")
                )
                return report
            root = body[0]
        if env.is_envelope(root):
            return self._validate_envelope(root, report)
        return self.validate_payload_tree(root, report).report

    def validate_payload(self, data: bytes, source: str = "-") -> PayloadResult:
        """Validate a bare iWmo/iJw payload (what arrives over REST)."""
        report = ValidationReport(source=source)
        try:
            root = parse_untrusted(data, self.limits)
        except UnsafeXml as exc:
            report.problems.append(_unsafe(exc))
            return PayloadResult(report)
        return self.validate_payload_tree(root, report)

    def validate_payload_tree(
        self, root: etree._Element, report: ValidationReport
    ) -> PayloadResult:
        result = PayloadResult(report, root)
        report.namespace = etree.QName(root).namespace
        outcome = identify(root, self.registry)
        if isinstance(outcome, list):
            report.problems.extend(outcome)
            return result
        result.identified = outcome
        report.message = outcome.message
        schema = outcome.schema
        if not schema.xsd.validate(root):
            report.problems.extend(
                _without_duplicates(problems_from_log(schema.xsd.error_log), report.problems)
            )
            return result
        if report.problems:  # header cross-checks failed: level 1, no rules
            return result
        ctx = MessageContext(
            root=root,
            message=outcome.message,
            today=self.today or dutch_today(),
            xsd_versions=(schema.file.basisschema_xsd_versie, schema.file.bericht_xsd_versie),
        )
        release = outcome.info.release
        rules = self._rules_for(outcome.message, release)
        if not has_rules(outcome.message.standard, release):
            report.problems.append(unknown_release(outcome.message, release, rules))
            with reading_cache():
                for rule in rules:
                    report.problems.extend(rule.run(ctx))
            return result
        screen = self._screen_for(outcome)
        if screen is not None:
            flagged = screen.flagged(root, ctx.today)
            rules = [r for r in rules if r.id in flagged or r.id not in screen.screened]
        with reading_cache():
            for rule in rules:
                report.problems.extend(rule.run(ctx))
        return result

    def _validate_envelope(
        self, root: etree._Element, report: ValidationReport
    ) -> ValidationReport:
        report.envelope = etree.QName(root).localname
        try:
            envelope = env.parse(root)
        except env.EnvelopeError as exc:
            report.problems.extend(exc.problems)
            return report
        report.problems.extend(env.check(envelope))
        if envelope.kind is env.Kind.FO01:
            return report
        if env.named_message(envelope.functie) is None:
            # Not an iWmo/iJw functie: a free payload, which a gateway accepts only for its
            # configured text functies, and never iWmo/iJw content under another name.
            if env.looks_like_istandaard(envelope.payload):
                problem = env.check_text_payload(envelope, frozenset({envelope.functie or ""}))
                assert problem is not None
                report.problems.append(problem)
            return report
        inner = self.validate_payload(envelope.payload, report.source)
        report.message = inner.report.message
        report.namespace = inner.report.namespace
        report.problems.extend(
            Problem(
                p.rule,
                p.message,
                _in_payload(p.path),
                p.line,
                p.expected,
                p.found,
                p.level,
                p.retourcode,
                p.severity,
            )
            for p in inner.report.problems
        )
        if inner.identified is not None and inner.root is not None:
            report.problems.extend(
                envelope_matches_payload(envelope, inner.identified.message, inner.root)
            )
        return report


def unknown_release(message: MessageType, release: str, rules: Sequence[Rule]) -> Problem:
    """The visible note on a message of a release without known rules: a warning, so the
    message is not refused for it, naming what it was (and was not) checked against."""
    checked = ", ".join(r.id for r in rules) or "none"
    return Problem(
        "RULES-RELEASE",
        f"no business rules known for {message.standard.label} {release} "
        f"(known: {', '.join(known_releases())}): checked against its XSD and the "
        f"release-independent rules ({checked}) only",
        path=".",
        level=2,
        expected=", ".join(known_releases()),
        found=f"{message.standard.label} {release}",
        severity=Severity.WARNING,
    )


def _in_payload(path: str | None) -> str:
    return f"parameters/bericht//{path}" if path else "parameters/bericht"


def _unsafe(exc: UnsafeXml) -> Problem:
    return Problem(exc.problem.value, exc.message, line=exc.line, level=1)


def _without_duplicates(xsd: list[Problem], earlier: list[Problem]) -> list[Problem]:
    """Drop XSD errors on header fields the identifier already reported more clearly."""
    covered = {p.path for p in earlier}
    return [p for p in xsd if p.path not in covered]


def envelope_matches_payload(
    envelope: env.Envelope, message: MessageType, root: etree._Element
) -> list[Problem]:
    """The envelope's routing facts must say what the payload says (CC09, IB240).

    A retourbericht copies the heen header unchanged, so its Header/Afzender is the party the
    retour goes *to*; the Du01 envelope, however, names the retour's own sender as zender.
    """
    problems: list[Problem] = []
    if envelope.functie != message.code:
        problems.append(
            Problem(
                "ENV-FUNCTIE",
                f"functie {envelope.functie} does not match the payload ({message.code})",
                path="stuurgegevens/functie",
                expected=message.code,
                found=envelope.functie,
            )
        )
    expected_kind = env.Kind.DU01 if message.kind is Kind.RETOUR else env.Kind.DI01
    if envelope.kind is not expected_kind:
        problems.append(
            Problem(
                "ENV-KIND",
                f"a {message.kind.value}bericht travels in a {expected_kind.value}",
                path="stuurgegevens/berichtcode",
                expected=expected_kind.value,
                found=envelope.kind.value,
            )
        )
    found = parties(root, message)
    sender, receiver = (found.sender, found.receiver) if found else ("", "")
    if envelope.zender.organisatie != sender:
        problems.append(
            Problem(
                "ENV-ZENDER",
                "envelope zender differs from the payload's sender",
                path="stuurgegevens/zender/organisatie",
                expected=sender,
                found=envelope.zender.organisatie,
            )
        )
    if envelope.ontvanger.organisatie != receiver:
        problems.append(
            Problem(
                "ENV-ONTVANGER",
                "envelope ontvanger differs from the payload's addressee (CC09)",
                path="stuurgegevens/ontvanger/organisatie",
                expected=receiver,
                found=envelope.ontvanger.organisatie,
            )
        )
    return problems
