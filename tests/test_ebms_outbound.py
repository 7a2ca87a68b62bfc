"""The outbound ebMS2 side: the ``ebms`` adapter sending to a partner MSH under its CPA.

The partner MSH is a capture server on loopback that answers 204; the test plays its side of
the exchange by POSTing Acknowledgments or MessageErrors to the gateway's ``/ebms`` over TLS
with the partner's certificate. Against the real ebms-core: tests/test_ebms_peer.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.ebms import compose
from gateway.ebms import message as ebms
from gateway.ebms.cpa import Channel
from gateway.ebms.schedule import Schedule
from kit.ebms import (
    Capture,
    delivery_to_0150,
    gateway_with_cpa,
    post_ebms,
    submit_to_0150,
)
from kit.gateway import eventually, running


def _answer(capture: Capture, index: int, action: str) -> bytes:
    """The partner MSH's Acknowledgment (or a MessageError) for a message it received."""
    message = ebms.read(capture.content_types[index], capture.received[index])
    if action == "Acknowledgment":
        return compose.acknowledgment(message, "peer.test")
    error = ebms.EbmsError("ValueNotRecognized", "//Header/MessageHeader/Action", "unknown")
    return compose.message_error(message, [error], "peer.test")


@pytest.mark.slow
async def test_delivered_when_the_partner_acknowledges(tmp_path: Path, capture: Capture) -> None:
    setup = gateway_with_cpa(tmp_path, capture, outbound=True, retry_interval="PT2S")
    async with running(setup):
        message_id = await submit_to_0150(setup)
        await eventually(lambda: capture.received)
        message = ebms.read(capture.content_types[0], capture.received[0])
        assert message.action == "ggk_Di01" and message.ack_requested is not None
        assert message.sender.party_id != message.receiver.party_id
        status, _ = await post_ebms(setup, ("text/xml", _answer(capture, 0, "Acknowledgment")))
        assert status == 204

        async def delivered() -> bool:
            return bool((await delivery_to_0150(setup, message_id))["state"] == "delivered")

        await eventually(delivered, timeout=20)


@pytest.mark.slow
async def test_without_an_ack_the_identical_message_is_resent_on_the_cpa_schedule(
    tmp_path: Path, capture: Capture
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, outbound=True, retries=1, retry_interval="PT1S")
    async with running(setup):
        message_id = await submit_to_0150(setup)
        await eventually(lambda: len(capture.received) >= 2, timeout=20)
        assert capture.received[1] == capture.received[0]  # byte-identical resend

        async def dead() -> bool:
            return bool((await delivery_to_0150(setup, message_id))["state"] == "dead")

        await eventually(dead, timeout=20)  # 1 + Retries attempts, then a dead letter
        assert len(capture.received) == 2


async def test_a_message_error_is_a_dead_letter_with_its_code(
    tmp_path: Path, capture: Capture
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, outbound=True, retry_interval="PT2S")
    async with running(setup):
        message_id = await submit_to_0150(setup)
        await eventually(lambda: capture.received)
        await post_ebms(setup, ("text/xml", _answer(capture, 0, "MessageError")))

        async def dead() -> dict[str, object] | None:
            delivery = await delivery_to_0150(setup, message_id)
            return delivery if delivery["state"] == "dead" else None

        delivery = await eventually(dead, timeout=20)
        assert "ValueNotRecognized" in str(delivery.get("last_error"))


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.slow
async def test_every_attempt_the_cpa_allows_is_made_on_its_slot(
    tmp_path: Path, capture: Capture
) -> None:
    """Retries 2, RetryInterval 4 s: attempts at T, T + 4 s and T + 8 s (T = the Timestamp),
    TimeToLive T + 12 s to the millisecond. Each attempt waits 1 s for an asynchronous
    Acknowledgment; that wait once pushed every next attempt later (anchored on the end of
    the one before, not on T), which the recorded second slot shows (T + 4 s, to 50 ms), and
    with a short interval it cost the CPA's last attempt. The interval leaves a loaded
    machine three seconds of slack per attempt: with 2 s it was one, and a loaded CI machine
    once made only two attempts."""
    setup = gateway_with_cpa(tmp_path, capture, outbound=True, retries=2, retry_interval="PT4S")
    async with running(setup):
        message_id = await submit_to_0150(setup)
        await eventually(lambda: capture.received)
        first = ebms.read(capture.content_types[0], capture.received[0])
        assert first.timestamp and first.time_to_live is not None
        stamp = _instant(first.timestamp)
        # TimeToLive = Timestamp + RetryInterval x (Retries + 1), milliseconds and all
        assert first.time_to_live - stamp == timedelta(seconds=12)

        async def rescheduled() -> dict[str, Any] | None:
            delivery = await delivery_to_0150(setup, message_id)
            return delivery if (delivery["attempts"], delivery["state"]) == (1, "retry") else None

        # the second attempt is recorded for T + RetryInterval, not for the end of the first
        # attempt's wait plus RetryInterval
        delivery = await eventually(rescheduled, timeout=30, interval=0.05)
        planned = _instant(delivery["next_attempt_at"]) - stamp
        assert abs(planned - timedelta(seconds=4)) < timedelta(milliseconds=50), planned

        async def dead() -> dict[str, Any] | None:
            delivery = await delivery_to_0150(setup, message_id)
            return delivery if delivery["state"] == "dead" else None

        delivery = await eventually(dead, timeout=45)
        assert len(capture.received) == 3, delivery  # 1 + Retries, all before TimeToLive
        assert capture.received[2] == capture.received[0]


def test_the_schedule_is_anchored_on_the_timestamp() -> None:
    """The slots the attempts are given (gateway/ebms/schedule.py): however late an attempt
    ends, the next is the CPA's next slot; none is left after the last before TimeToLive."""
    channel = Channel(
        "c",
        "https://peer.test/ebms",
        "none",
        ack_requested=True,
        ack_signature_requested=False,
        duplicate_elimination=True,
        actor=None,
        retries=2,
        retry_interval=timedelta(seconds=10),
    )
    first = datetime(2026, 12, 6, 12, 0, 0, 123000, tzinfo=UTC)
    schedule = Schedule.of(first, channel)
    assert schedule is not None and schedule.attempts == 3
    assert schedule.time_to_live == first + timedelta(seconds=30)
    # the first attempt ends after a 5 s wait for the Acknowledgment: the next is at T + 10
    assert schedule.next_after(first + timedelta(seconds=5)) == first + timedelta(seconds=10)
    after_second = first + timedelta(seconds=15.5)
    assert schedule.next_after(after_second) == first + timedelta(seconds=20)
    assert schedule.next_after(first + timedelta(seconds=20, milliseconds=1)) is None
    assert not schedule.expired(first + timedelta(seconds=29, milliseconds=999))
    assert schedule.expired(first + timedelta(seconds=30))
