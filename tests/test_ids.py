"""Message ids grow with time (gateway/ids.py): the store writes them near each other."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from gateway import parameters
from gateway.freshen import fresh_payload
from gateway.ids import message_id
from kit.gateway import Setup, Sink, make_setup, rest, running
from tests.conftest import sample


def test_an_id_is_a_uuid7_in_the_shape_ids_always_had() -> None:
    made = message_id()
    assert parameters.MESSAGE_ID.fits(made)
    as_uuid = uuid.UUID(made)
    assert as_uuid.version == 7 and as_uuid.variant == uuid.RFC_4122


def test_ids_sort_by_the_millisecond_they_were_made_and_never_repeat() -> None:
    second = 1_796_000_000 * 10**9
    earlier = [message_id(second + ms * 1_000_000) for ms in range(50)]
    assert earlier == sorted(earlier)
    assert int(earlier[7][:12], 16) == second // 1_000_000 + 7
    same_moment = {message_id(second) for _ in range(1000)}
    assert len(same_moment) == 1000  # 74 random bits after the time


@pytest.mark.slow
async def test_messages_accepted_one_after_the_other_get_growing_ids(
    tmp_path: Path, sink: Sink
) -> None:
    setup: Setup = make_setup(tmp_path / "gw", sink.port)
    accepted = []
    async with running(setup):
        for _ in range(3):
            status, body = await rest(
                setup,
                "POST",
                "/api/v1/messages",
                token=setup.token("12345678"),
                data=fresh_payload(sample("iwmo/wmo305.xml").encode()),
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert status == 202, body
            accepted.append(body["id"])
    assert all(uuid.UUID(made).version == 7 for made in accepted)
    # by the millisecond (two accepts in one millisecond are in random order after it)
    moments = [made[:12] for made in accepted]
    assert moments == sorted(moments) and len(set(accepted)) == 3
