"""The shared catch-up of lookups that miss (gateway/broker/kafka_settle.py), on its own: which
waits a round serves, that it stays bounded and that its driver outlives a failed round. The
round here is plain asyncio work; tests/test_conversations.py runs it against Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka.errors import KafkaConnectionError

from gateway.broker.kafka_settle import CAUGHT_UP, FAILED, TIMEOUT, CatchUp


class Rounds:
    """Rounds that do what ``plan`` says, one step each: ``"held"`` until the test opens its
    gate, ``"hang"`` for ever, an exception to raise; done at once when the plan ran out."""

    def __init__(self, *plan: str | BaseException) -> None:
        self.plan = list(plan)
        self.gates = [asyncio.Event() for _ in plan]
        self.begun: asyncio.Queue[int] = asyncio.Queue()
        self.count = 0

    async def __call__(self) -> None:
        n, self.count = self.count, self.count + 1
        self.begun.put_nowait(n)
        step = self.plan[n] if n < len(self.plan) else None
        if step == "held":
            await self.gates[n].wait()
        elif step == "hang":
            await asyncio.Event().wait()
        elif isinstance(step, BaseException):
            raise step


@contextlib.asynccontextmanager
async def driven(catch_up: CatchUp) -> AsyncIterator[None]:
    task = asyncio.create_task(catch_up.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_waits_before_a_round_begins_share_it_and_later_ones_get_the_next() -> None:
    rounds = Rounds("held", "held")
    catch_up = CatchUp(rounds, bound=30, spacing=0)
    async with driven(catch_up):
        early = [asyncio.create_task(catch_up.wait()) for _ in range(10)]
        assert await rounds.begun.get() == 0  # round 0 took the ten; its query is under way
        late = asyncio.create_task(catch_up.wait())
        await asyncio.sleep(0)
        rounds.gates[0].set()
        assert await asyncio.gather(*early) == [CAUGHT_UP] * 10
        assert not late.done()  # it began after round 0's query: round 0 does not cover it
        assert await rounds.begun.get() == 1
        rounds.gates[1].set()
        assert await late == CAUGHT_UP
    assert rounds.count == 2 and catch_up.waits == 11


async def test_a_round_that_hangs_is_cut_off_at_the_bound_and_the_next_one_runs() -> None:
    catch_up = CatchUp(Rounds("hang"), bound=0.2, spacing=0)
    async with driven(catch_up):
        assert await catch_up.wait() == TIMEOUT
        assert await catch_up.wait() in (TIMEOUT, CAUGHT_UP)  # joined the hung one, or not
        assert await catch_up.wait() == CAUGHT_UP


async def test_a_failed_round_answers_its_waits_and_the_driver_goes_on() -> None:
    catch_up = CatchUp(Rounds(KafkaConnectionError(), ValueError("a bug")), bound=30, spacing=0)
    async with driven(catch_up):
        assert await catch_up.wait() == FAILED
        assert await catch_up.wait() == FAILED
        assert await catch_up.wait() == CAUGHT_UP


async def test_a_wait_that_goes_away_does_not_cancel_the_round_of_the_others() -> None:
    rounds = Rounds("held")
    catch_up = CatchUp(rounds, bound=30, spacing=0)
    async with driven(catch_up):
        leaving, staying = (
            asyncio.create_task(catch_up.wait()),
            asyncio.create_task(catch_up.wait()),
        )
        await rounds.begun.get()
        leaving.cancel()
        rounds.gates[0].set()
        assert await staying == CAUGHT_UP
    assert rounds.count == 1
