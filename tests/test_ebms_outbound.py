"""The outbound ebMS2 side: the ``ebms`` adapter sending to a partner MSH under its CPA.

The partner MSH is a capture server on loopback that answers 204; the test plays its side of
the exchange by POSTing Acknowledgments or MessageErrors to the gateway's ``/ebms`` over TLS
with the partner's certificate. Against the real ebms-core: tests/test_ebms_peer.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ebms import compose
from gateway.ebms import message as ebms
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
