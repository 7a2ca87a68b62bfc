"""What a running gateway holds, and how it is built from its configuration.

:class:`Gateway` is the one object every handler reaches through ``request.app[GATEWAY_KEY]``;
:func:`build` makes it (partners, routes, schemas, the broker, the ingress, delivery, ebMS,
the body budgets). The constants every endpoint shares (the SOAP path, the size allowance)
live here too, at the bottom of the package, so the handlers' modules import no circle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from gateway import codelists, eventloop
from gateway import envelope as env
from gateway.admission import (
    SMALL_FORM_BYTES,
    Admission,
    BodyBudget,
)
from gateway.broker import open_broker
from gateway.broker.base import Broker, HandsOver, SharedAnswers
from gateway.config import GatewayConfig, reader_count
from gateway.delivery import DeliveryService
from gateway.ebms.cpastore import CpaStore
from gateway.ebms.inbound import EbmsInbound
from gateway.figures import FigureKeys
from gateway.ingest import Ingress
from gateway.keyring import Keyring
from gateway.offload import PayloadValidator
from gateway.ratelimit import PartnerBuckets
from gateway.readers import Readers, ReaderSetup
from gateway.reading import Settings
from gateway.schemas import SchemaRegistry
from gateway.sightings import CertificateSightings
from gateway.tally import RefusalTally
from gateway.validation import Validator
from gateway.xmlsafe import ParseLimits
from routing.partners import PartnerRegistry
from routing.table import RouteTable

log = structlog.get_logger("ggk.server")


SOAP_PATH = "/ggk/OntvangAsynchroon"


GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")


SOAP_ALLOWANCE = 64 * 1024
"""Bytes a request may carry beyond max_message_bytes (SOAP wrapper, HTTP framing)."""


LARGE_PARSES = 2


SOAP_MAX_MARKUP = 2_000
"""A SOAP request carries a few dozen tags (the payload is base64 text)."""


PAYLOAD_MAX_MARKUP = 2_000_000
"""An iWmo/iJw message has a tag per ~25 bytes; 2 million covers a 25 MiB one."""


@dataclass
class Gateway:
    """Everything a running gateway holds; built by :func:`build`."""

    config: GatewayConfig
    partners: PartnerRegistry
    broker: Broker
    ingress: Ingress
    delivery: DeliveryService
    limits: ParseLimits
    soap_limits: ParseLimits
    """For SOAP requests: few tags allowed (the payload is base64 text inside)."""
    admission: Admission
    keyring: Keyring
    """The keys of this gateway's data (also the portal's session key is derived from it)."""
    buckets: PartnerBuckets
    """Each partner's request rate (``[limits] partner_rate``/``partner_burst``)."""
    tally: RefusalTally = dataclasses.field(default_factory=RefusalTally)
    """Refusals audited in aggregate (no credential, over the rate): see gateway/tally.py."""
    tally_since: float = dataclasses.field(default_factory=time.monotonic)
    """When the tally was last written (monotonic): the summaries say over how long."""
    large_parses: asyncio.Semaphore = dataclasses.field(
        default_factory=lambda: asyncio.Semaphore(LARGE_PARSES)
    )
    """Large requests parsed in threads at once: more would only fight over the GIL."""
    ebms: EbmsInbound | None = None
    """The Digikoppeling ebMS2 endpoint, when ``[ebms]`` is configured."""
    certificates: CertificateSightings = dataclasses.field(default_factory=CertificateSightings)
    """When the client certificate each partner last presented expires (partner health)."""
    large_turn_ms: float = eventloop.GIL_SWITCH_MS
    """The interpreter's switch interval while a large body is in hand (gateway/eventloop.py)."""

    @property
    def systeem(self) -> env.Systeem:
        return env.Systeem(self.config.organisatie, self.config.applicatie)


def build(config: GatewayConfig) -> Gateway:
    large_turn_ms = eventloop.gil_switch_ms()  # a bad GGK_GIL_SWITCH_MS stops it before anything
    partners = PartnerRegistry.load(config.partners_file)
    routes = (
        RouteTable.from_config(config.routes, str(config.path))
        if config.routes
        else (RouteTable.default())
    )
    for rule in routes.rules:
        for partner in rule.copy_to:
            if partners.get(partner) is None:
                raise ValueError(f"route {rule.name!r} copies to unknown partner {partner}")
    limits = ParseLimits(max_bytes=config.max_message_bytes, max_markup=PAYLOAD_MAX_MARKUP)
    # the code lists the rules (TR378, TR381) and the portal read: loaded now, so a malformed
    # drop-in list stops the start with its file and fault (a CodeListError is a ValueError)
    codelists.configure(config.codelists_dir)
    registry = SchemaRegistry(list(config.schema_dirs))
    registry.compile_all()
    validator = Validator(registry, limits)
    keyring = Keyring.load(config.keyring)
    broker = open_broker(config, keyring)
    if not config.audit_enabled:
        log.warning("audit.disabled", reason="[audit] enabled = false; for measurements only")
    soap_limits = ParseLimits(max_bytes=config.max_message_bytes, max_markup=SOAP_MAX_MARKUP)
    settings = Settings(
        frozenset(config.text_functies), config.business_rules == "reject", keyring.figures_key
    )
    count = reader_count(config)
    readers = (
        Readers(
            ReaderSetup(
                tuple(str(d) for d in config.schema_dirs),
                limits,
                soap_limits,
                str(config.codelists_dir) if config.codelists_dir else None,
                settings,
            ),
            count,
        )
        if count
        else None
    )
    ingress = Ingress(
        validator=validator,
        partners=partners,
        routes=routes,
        broker=broker,
        reject_rule_violations=settings.reject_rule_violations,
        payloads=PayloadValidator(validator, readers),
        text_functies=settings.text_functies,
        figure_keys=FigureKeys(keyring.figures_key),
        lenient_conversations=config.conversations == "lenient",
        readers=readers,
    )
    context: dict[str, Any] = {}
    inbound: EbmsInbound | None = None
    if config.ebms is not None:
        inbound = EbmsInbound(config, CpaStore(config.ebms, partners), ingress, limits)
        context["ebms"] = inbound.outbound
        if inbound.state.shared:  # every process keeps the same records (Kafka)
            inbound.state.on_settled = inbound.outbound.settled
        if isinstance(broker, SharedAnswers):  # answers may reach another process
            if not inbound.state.shared:
                inbound.outbound.share = broker.share_ebms_answer
            # (with the shared state: answers an earlier version relayed over ``events``)
            broker.ebms_answer_listener = inbound.outbound.answer_from_cluster
    delivery = DeliveryService(broker, partners, config.delivery, wake=broker.wake, context=context)
    if isinstance(broker, HandsOver):  # an accept hands its deliveries to free workers
        broker.direct = delivery
    admission = admission_of(config)
    buckets = PartnerBuckets(config.limits.partner_rate, config.limits.partner_burst)
    gateway = Gateway(
        config,
        partners,
        broker,
        ingress,
        delivery,
        limits,
        soap_limits,
        admission,
        keyring,
        buckets,
        large_turn_ms=large_turn_ms,
    )
    gateway.ebms = inbound
    return gateway


SMALL_BODIES_SLACK = 1024 * 1024
"""What a partner's default share holds beyond one message: its small messages keep flowing
while it sends a large one."""


def admission_of(config: GatewayConfig) -> Admission:
    """The body budgets of ``config``: API bodies and uploads in ``inflight_body_mb``, one
    partner at most its share of it (``partner_inflight_body_mb``, by default one message
    plus SMALL_BODIES_SLACK); the portal's small forms in a budget of their own that the
    connection cap keeps from ever being full."""
    limits = config.limits
    capacity = limits.inflight_body_mb * 1024 * 1024
    share = (
        limits.partner_inflight_body_mb * 1024 * 1024
        or config.max_message_bytes + SOAP_ALLOWANCE + SMALL_BODIES_SLACK
    )
    return Admission(
        bodies=BodyBudget(capacity, share),
        forms=BodyBudget(limits.max_connections * SMALL_FORM_BYTES),
        grace=limits.body_grace,
        min_rate=limits.min_body_rate * 1024,
    )
