"""An incoming ebMS message compared with its CPA: every disagreement as an ebMS error.

The codes and locations follow what the receiving MSH of the chain (ebms-core) answers, so a
partner's MSH sees the same MessageError from us as from any other Digikoppeling party
(OASIS ebMS 2.0 §4.2 error codes, Logius' Digikoppeling Koppelvlakstandaard
ebMS2, and how ebms-core, the reference implementation, answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.ebms.cpa import ActionBinding, Channel
from gateway.ebms.cpastore import Link
from gateway.ebms.message import (
    TO_PARTY_MSH,
    EbmsError,
    EbmsMessage,
    EbmsParseError,
    as_signed,
    eb,
    parse_time,
    soap,
)
from gateway.ebms.received import Received
from gateway.ebms.sent import Sent
from gateway.ebms.signing import SignatureProblem, verify

HEADER = "//Header/MessageHeader"


@dataclass(frozen=True, slots=True)
class TimestampWindow:
    """How far a received eb:Timestamp may lie from our clock (``[ebms]
    timestamp_future_seconds`` / ``timestamp_past_seconds``; docs/ebms.md).

    A reliable sender resends the *identical* message, Timestamp included, every
    RetryInterval, Retries times, and gives up at TimeToLive = Timestamp + RetryInterval x
    (Retries + 1) (ebms-core; OASIS ebMS 2.0 §6). So the past side allows the
    channel's whole resend window when that is longer than ``past``; the clock skew
    (``future``) is allowed both ways."""

    future: timedelta = timedelta(minutes=5)
    past: timedelta = timedelta(hours=1)

    def earliest(self, now: datetime, channel: Channel | None) -> datetime:
        past = self.past
        resend = channel.resend_window if channel is not None else None
        if resend is not None:  # at most MAX_RESEND_WINDOW: never an overflow
            past = max(past, resend)
        return now - past - self.future

    def latest(self, now: datetime) -> datetime:
        return now + self.future


def _timestamp(
    message: EbmsMessage, channel: Channel | None, window: TimestampWindow, now: datetime
) -> list[EbmsError]:
    """eb:Timestamp present and within the window. An old Timestamp is a replay or a message
    its sender gave up on; the ebMS error for a value that contradicts the agreement is
    ``Inconsistent`` (ebms-core answers a Timestamp outside the CPA's period the same way)."""
    where = f"{HEADER}/MessageData/Timestamp"
    try:
        sent = parse_time(message.timestamp)
    except EbmsParseError:
        sent = None
    if sent is None:
        return [EbmsError("Inconsistent", where, "Timestamp is missing or no xsd:dateTime")]
    if sent > window.latest(now):
        return [EbmsError("Inconsistent", where, "Timestamp lies in the future")]
    if sent < window.earliest(now, channel):
        return [EbmsError("Inconsistent", where, "Timestamp is older than the resend window")]
    return []


def _version(message: EbmsMessage) -> list[EbmsError]:
    """eb:version 2.0 and soap:mustUnderstand 1 on the header blocks."""
    errors = []
    header = message.envelope.find(soap("Header"))
    assert header is not None
    for block in header:
        if not isinstance(block.tag, str) or not block.tag.startswith(eb("")):
            continue
        name = block.tag.split("}")[1]
        if block.get(eb("version")) != "2.0":
            errors.append(EbmsError("Inconsistent", f"//Header/{name}", "eb:version is not 2.0"))
        if block.get(soap("mustUnderstand")) not in ("1", "true"):
            errors.append(
                EbmsError("Inconsistent", f"//Header/{name}", "soap:mustUnderstand is not 1")
            )
    return errors


def _parties(message: EbmsMessage, link: Link) -> list[EbmsError]:
    errors = []
    for tag, party, expected in (
        ("From", message.sender, link.theirs),
        ("To", message.receiver, link.ours),
    ):
        if party.party_id != expected.oin or (party.party_type or "") != expected.party_id_type:
            errors.append(
                EbmsError(
                    "Inconsistent",
                    f"{HEADER}/{tag}/PartyId",
                    f"PartyId is not the CPA's {tag.lower()} party",
                )
            )
        if party.role is None:
            errors.append(EbmsError("Inconsistent", f"{HEADER}/{tag}/Role", "Role is missing"))
        elif party.role != expected.role:
            errors.append(
                EbmsError("ValueNotRecognized", f"{HEADER}/{tag}/Role", "Role is not the CPA's")
            )
    return errors


def binding(message: EbmsMessage, link: Link) -> ActionBinding | None:
    """The sender's CanSend binding for the message's service and action, if the CPA has it
    and this gateway can receive it."""
    key = (message.service_name, message.action)
    if key not in link.ours.receives:
        return None
    return link.theirs.sends.get(key)


def _channel(message: EbmsMessage, channel: Channel) -> list[EbmsError]:
    errors = []
    ack = message.ack_requested
    if (ack is not None) != channel.ack_requested:
        errors.append(
            EbmsError("Inconsistent", "//Header/AckRequested", "AckRequested differs from the CPA")
        )
    elif ack is not None:
        if ack.get(soap("actor")) != TO_PARTY_MSH:
            errors.append(
                EbmsError("NotSupported", "//Header/AckRequested", "only toPartyMSH is supported")
            )
        signed = ack.get(eb("signed")) == "true"
        if signed != channel.ack_signature_requested:
            errors.append(
                EbmsError(
                    "Inconsistent", "//Header/AckRequested", "eb:signed does not match the CPA"
                )
            )
    if message.duplicate_elimination != channel.duplicate_elimination:
        errors.append(
            EbmsError(
                "Inconsistent",
                f"{HEADER}/DuplicateElimination",
                "DuplicateElimination does not match the CPA",
            )
        )
    if (message.sync_reply is not None) != (channel.sync_reply_mode != "none"):
        errors.append(
            EbmsError("Inconsistent", "//Header/SyncReply", "SyncReply does not match the CPA")
        )
    return errors


def _header_fields(message: EbmsMessage) -> tuple[object, ...]:
    """Everything the checks and the acceptance read from the header and the Manifest."""
    ack = message.ack_requested
    return (
        message.sender,
        message.receiver,
        message.cpaid,
        message.conversation_id,
        message.service_type,
        message.service,
        message.action,
        message.message_id,
        message.timestamp,
        message.ref_to_message_id,
        message.time_to_live,
        message.duplicate_elimination,
        None if ack is None else (ack.get(soap("actor")), ack.get(eb("signed"))),
        message.message_order,
        message.references,
    )


def _signed(message: EbmsMessage, channel: Channel) -> EbmsMessage | EbmsError:
    """The message as its signature covers it, signed by the sender's key as the CPA has it
    (never the message's own): read from the very tree whose digest was verified, and the
    same as what the reader found in the envelope, or a ``SecurityFailure``."""
    assert channel.signing_certificate is not None  # a signed channel (cpa.py)
    where = "//Header/Signature"
    try:
        covered = verify(
            message.envelope,
            {cid: part.data for cid, part in message.parts.items()},
            certificate=channel.signing_certificate,
            algorithms=channel.algorithms,
        )
        signed = as_signed(message, covered)
    except SignatureProblem as exc:
        return EbmsError("SecurityFailure", where, str(exc))
    except EbmsParseError:
        return EbmsError("SecurityFailure", where, "the signature does not cover the header")
    if _header_fields(signed) != _header_fields(message):
        return EbmsError("SecurityFailure", where, "the header read is not the header signed")
    return signed


def ref_exchanged(ref: str, link: Link, sent: Sent | None, received: Received | None) -> bool:
    """Does ``ref`` name a message exchanged under ``link``'s CPA: one this gateway sent
    under it (``sent``, the sending record of ``ref``) or one the partner sent under it
    (``received``, the partner's record of ``ref``)? As ebms-core answers (it acknowledges a
    message referring to one it exchanged, and refuses any other with ValueNotRecognized).
    A message of another CPA, even with the same partner, or of another partner is unknown
    here: a partner learns nothing of what was exchanged outside its own agreement."""
    cpaid = link.cpa.cpaid
    if sent is not None and sent.message_id == ref and sent.cpaid == cpaid:
        return True
    return (
        received is not None
        and received.message_id == ref
        and received.cpaid == cpaid
        and received.partner == link.partner.id
    )


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of :func:`check`: the message to act on (as signed, on a signed channel)
    and every disagreement with the CPA (empty: it agrees)."""

    message: EbmsMessage
    errors: list[EbmsError]


def check(
    message: EbmsMessage,
    link: Link,
    *,
    now: datetime | None = None,
    window: TimestampWindow | None = None,
    ref_known: bool = False,
) -> Checked:
    """Every way a business message disagrees with its CPA. An ambiguous structure
    (:attr:`EbmsMessage.problems`) or a signature that does not hold ends the check: nothing
    else in such a message is worth comparing. On a signed channel everything else is read
    from what the signature covers. ``ref_known``: the message's RefToMessageId names a
    message exchanged under this CPA (:func:`ref_exchanged`; the same value whether read
    before or after the signature, since a header that differs is a SecurityFailure)."""
    if message.problems:
        return Checked(message, list(message.problems))
    found = binding(message, link)
    if found is not None and found.channel.profile.signed:
        signed = _signed(message, found.channel)
        if isinstance(signed, EbmsError):
            return Checked(message, [signed])
        message = signed
    errors = _version(message) + _parties(message, link)
    if message.message_order:
        errors.append(
            EbmsError("NotSupported", "//Header/MessageOrder", "MessageOrder is not supported")
        )
    if found is None:
        errors.append(
            EbmsError(
                "ValueNotRecognized",
                f"{HEADER}/Action",
                f"{message.action[:60]!r} of {message.service_name[:80]!r} is not in the CPA",
            )
        )
    else:
        errors += _channel(message, found.channel)
    moment = now or datetime.now(UTC)
    errors += _timestamp(
        message, found.channel if found else None, window or TimestampWindow(), moment
    )
    if message.time_to_live is not None and message.time_to_live < moment:
        errors.append(
            EbmsError(
                "TimeToLiveExpired", f"{HEADER}/MessageData/TimeToLive", "TimeToLive has passed"
            )
        )
    if message.ref_to_message_id is not None and not ref_known:
        errors.append(
            EbmsError(
                "ValueNotRecognized",
                f"{HEADER}/MessageData/RefToMessageId",
                "RefToMessageId names no message exchanged under this CPA",
            )
        )
    for reference in message.references:
        if not reference.startswith("cid:"):
            errors.append(EbmsError("MimeProblem", reference[:100], "URI cannot be resolved"))
        elif reference[4:] not in message.parts:
            errors.append(EbmsError("MimeProblem", reference[:100], "MIME part not found"))
    if found is not None and not message.references:
        errors.append(
            EbmsError("Inconsistent", "//Body/Manifest", "a business message needs its payload")
        )
    return Checked(message, errors)
