"""At accept: an answer compared with the heenbericht it answers, when the gateway carries it.

A retourbericht's heenbericht is the Di01 the conversation check found (gateway/ingest.py:
its ontvanger sent it to the retour's zender); a declaratie-antwoord's (325) declaratie is the
323 its Header names (DeclaratieIdentificatie, sent by its Ontvanger) among the 323s addressed
to the 325's zender. Both lookups are limited to the answer's own two parties, so a reference
to another pair's message finds nothing, exactly as one the gateway never saw: such an answer
is not compared at all (only what the gateway itself carries is checked) and its answer
cannot tell whether anybody else's message exists. The heenbericht is read from the store as
it was accepted (nothing new is kept); a purged one is not compared either. A 325 whose 323
is found is linked to it (its ``heen_id``), as a retour is to its heenbericht: the aanbieder
sees its declaratie answered.

The comparisons themselves are :mod:`gateway.rules.pairs`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools

import structlog
from lxml import etree

from gateway.broker.base import ReadViews, StorageError
from gateway.offload import LARGE_PAYLOAD_BYTES
from gateway.report import Problem
from gateway.rules import pairs
from gateway.standards import MESSAGES, Kind, MessageType
from gateway.xmlsafe import parse_own

log = structlog.get_logger("ggk.pairing")

DECLARATIE_ANTWOORD = 325
DECLARATIE = 323


async def answered_declaratie(
    views: ReadViews, message: MessageType, root: etree._Element, *, zender: str
) -> str | None:
    """The id of the 323 a 325 answers, when the gateway carries it: the one its Header names
    (DeclaratieIdentificatie), sent by its Ontvanger to ``zender`` (the authenticated
    sender); None for any other message. The ingress links the 325 to it as a retour to its
    heenbericht, so the aanbieder sees its declaratie answered (its sent list, the
    conversation of both)."""
    if message.number != DECLARATIE_ANTWOORD:
        return None
    named = pairs.declaratie_reference(root)
    if named is None:
        return None
    aanbieder, identificatie = named
    found = await views.find_heen(
        aanbieder,
        f"{message.standard.message_prefix}{DECLARATIE}",
        identificatie,
        ontvanger=zender,
    )
    return None if found is None else found.id


async def pair_problems(
    views: ReadViews, message: MessageType, root: etree._Element, *, heen_id: str | None
) -> list[Problem]:
    """The findings of an accepted-so-far answer against its stored heenbericht (none when
    the message answers nothing the gateway carries). ``heen_id``: the Di01 it was linked to
    (a retour's conversation check, a 325's :func:`answered_declaratie`)."""
    if heen_id is None:
        return []
    if message.kind is Kind.RETOUR:
        heen = await _stored_payload(views, heen_id)
        if heen is None or message.pair is None:
            return []
        answers = MESSAGES[(message.standard, message.pair)].bericht_code
        return await _compare(functools.partial(pairs.check_retour, heen_code=answers), root, heen)
    if message.number != DECLARATIE_ANTWOORD:
        return []
    declaratie = await _stored_payload(views, heen_id)
    return [] if declaratie is None else await _compare(pairs.check_antwoord, root, declaratie)


async def _stored_payload(views: ReadViews, message_id: str) -> bytes | None:
    try:
        return await views.stored_envelope(message_id)
    except StorageError:
        # unreadable (a key retired, a record gone): not carried, so not compared
        log.warning("pairing.heen_unreadable", message_id=message_id)
        return None


async def _compare(
    check: pairs.PairCheck, root: etree._Element, stored_envelope: bytes
) -> list[Problem]:
    """Parse the stored heenbericht (in a thread when large) and compare."""
    if len(stored_envelope) > LARGE_PAYLOAD_BYTES:
        return await asyncio.to_thread(_parse_and_check, check, root, stored_envelope)
    return _parse_and_check(check, root, stored_envelope)


def _parse_and_check(
    check: pairs.PairCheck, root: etree._Element, stored_envelope: bytes
) -> list[Problem]:
    try:
        heen = parse_own(stored_payload(stored_envelope))
    except (ValueError, binascii.Error, etree.XMLSyntaxError):
        # the gateway stored it after validating it: not expected, and then not compared
        log.warning("pairing.heen_unparsable")
        return []
    return check(root, heen)


def stored_payload(stored_envelope: bytes) -> bytes:
    """The payload of an envelope this gateway validated and stored: its base64 text decoded,
    without validating the envelope again (that costs milliseconds, a 1 MB one far more)."""
    for holder in parse_own(stored_envelope).iter("{*}xmlBestand", "{*}bericht"):
        if holder.text and holder.text.strip():
            return base64.b64decode("".join(holder.text.split()), validate=True)
    raise ValueError("the stored envelope holds no payload")
