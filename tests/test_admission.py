"""The body budget is shared fairly (review of issue 27, finding 1): a partner holding bodies
open (trickling them, or many at once) keeps at most its share of ``inflight_body_mb`` from the
others; the portal's sign-in and sign-out never wait for API bodies; a body that arrives
slower than ``min_body_rate`` is cut long before ``body_timeout``; and on the SOAP endpoint
each of these refusals is a Fo03 a SOAP client can read (finding 7).

The assertions are about who is served while whom is held, never about durations: "partner
B is accepted while all of A's bodies are still open (unanswered)"."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from gateway.admission import BodyBudget, BudgetExhausted
from gateway.config import ConfigError
from gateway.config import load as load_config
from kit.gateway import (
    Setup,
    deventer_wmo301,
    fo03_code,
    make_setup,
    portal_session,
    post_soap,
    rest,
    running,
    submit_jw301,
)

MIB = 1024 * 1024
PATIENCE = 20.0
"""How long a held request waits for its answer: far beyond what the gateway needs when it
behaves, far below the body_timeout it would otherwise wait for."""
DI01 = "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"


@dataclass
class Held:
    """A request whose headers and first byte were sent; the rest of its body never comes."""

    writer: asyncio.StreamWriter
    answer: asyncio.Task[bytes]


async def hold(setup: Setup, path: str, length: int, *, token: str, soap: bool = False) -> Held:
    """Open a POST with ``length`` announced and one byte sent, as the partner of ``token``."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", setup.port, ssl=setup.ssl_context(), server_hostname="localhost"
    )
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", f"Authorization: Bearer {token}"]
    lines += [f'Content-Type: text/xml\r\nSOAPAction: "{DI01}"'] if soap else []
    lines += ["Content-Type: application/xml"] if not soap else []
    writer.write(("\r\n".join([*lines, f"Content-Length: {length}", "", ""])).encode() + b"<")
    await writer.drain()
    return Held(writer, asyncio.create_task(asyncio.wait_for(reader.read(4096), PATIENCE)))


async def settle(setup: Setup) -> None:
    """One round trip on a new connection: what was sent before it has been taken in."""
    assert (await rest(setup, "GET", "/healthz"))[0] == 200


@contextlib.asynccontextmanager
async def holding(held: list[Held]) -> AsyncIterator[list[Held]]:
    try:
        yield held
    finally:
        for each in held:
            each.writer.close()
            each.answer.cancel()
        await asyncio.gather(*(h.answer for h in held), return_exceptions=True)


def still_open(held: list[Held]) -> bool:
    """None of ``held`` has been answered (cut, refused): they all still hold what they got."""
    return not any(h.answer.done() for h in held)


def configured(setup: Setup, **limits: object) -> Setup:
    text = setup.config_path.read_text()
    for key, value in limits.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
    setup.config_path.write_text(text)
    return setup


async def test_a_partner_holding_bodies_leaves_the_budget_to_others(tmp_path: Path) -> None:
    """12345678 opens six 25 MiB bodies and trickles none of them on (four filled the whole
    100 MiB budget: every other partner waited, then got 503): it holds its share, its other
    bodies wait for its own, and other partners are accepted over REST and SOAP while all six
    are still open."""
    setup = configured(make_setup(tmp_path / "gw", 1), body_timeout=10, body_grace=100)
    async with running(setup):
        token = setup.token("12345678")
        held = [await hold(setup, "/api/v1/messages", 25 * MIB, token=token) for _ in range(6)]
        async with holding(held):
            await settle(setup)
            await submit_jw301(setup)  # 0175 over REST: 202
            status, body = await post_soap(
                setup, deventer_wmo301(str(uuid.uuid4())), partner="0150"
            )
            assert status == 200 and b"Bv03Bericht" in body, body[:300]
            assert still_open(held), [h.answer.result()[:40] for h in held if h.answer.done()]


async def test_sign_in_and_sign_out_never_wait_for_api_bodies(tmp_path: Path) -> None:
    """Four partners each hold one 25 MiB body: the whole API budget. A clerk still signs in
    and out of the portal (its small forms have a budget of their own), while all four are
    still open."""
    setup = configured(make_setup(tmp_path / "gw", 1), body_timeout=10, body_grace=100)
    async with running(setup):
        held = [
            await hold(setup, "/api/v1/messages", 25 * MIB, token=setup.token(partner))
            for partner in ("12345678", "87654321", "0150", "0177")
        ]
        async with holding(held):
            await settle(setup)
            client, csrf = await portal_session(setup, "0175")  # asserts the 303
            async with (
                client,
                client.post(
                    f"{setup.url}/portal/signout",
                    data={"csrf": csrf},
                    ssl=setup.ssl_context(),
                    allow_redirects=False,
                ) as answer,
            ):
                assert answer.status == 303, await answer.text()
            assert still_open(held), [h.answer.result()[:40] for h in held if h.answer.done()]


@pytest.mark.slow
async def test_a_trickled_body_is_cut_at_the_minimum_rate(tmp_path: Path) -> None:
    """A body trickled at a byte a second held its reservation for the whole body_timeout
    (60 s here): after body_grace it must keep min_body_rate, else 408, on SOAP a Fo03
    StUF055 (plek client) a SOAP client can read, not plain text."""
    setup = configured(
        make_setup(tmp_path / "gw", 1), body_timeout=60, body_grace=1, min_body_rate=1
    )
    async with running(setup):
        soap = await hold(
            setup, "/ggk/OntvangAsynchroon", 10_000, token=setup.token("0150"), soap=True
        )
        api = await hold(setup, "/api/v1/messages", 10_000, token=setup.token("0175"))
        async with holding([soap, api]):
            answer = await soap.answer  # nothing more is sent: cut by the rate, not the timeout
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), answer[:300]
            assert fo03_code(body) == "StUF055", body[:600]
            assert etree.fromstring(body).findtext(".//faultcode") == "soapenv:Client"
            assert (await api.answer).startswith(b"HTTP/1.1 408")


@pytest.mark.slow
async def test_beyond_its_share_a_partner_waits_for_its_own_bodies_then_gets_a_fo03(
    tmp_path: Path,
) -> None:
    """Shares of 1 MiB in a 4 MiB budget: 0150 holds its share with one body and queues a
    second; its SOAP message after them waits for 0150's own bodies only, and is refused with
    a Fo03 StUF046 (plek server: re-offer it), HTTP 503, when they stay; meanwhile 0175 is
    accepted (there is room: it is only 0150's share that is full)."""
    setup = make_setup(tmp_path / "gw", 1)
    text = setup.config_path.read_text().replace(
        "[gateway]\n", f"[gateway]\nmax_message_bytes = {MIB}\n", 1
    )
    setup.config_path.write_text(text)
    configured(
        setup,
        body_timeout=3,
        body_grace=100,
        inflight_body_mb=4,
        partner_inflight_body_mb=1,
    )
    async with running(setup):
        token = setup.token("0150")
        first = await hold(setup, "/ggk/OntvangAsynchroon", MIB, token=token, soap=True)
        await settle(setup)
        second = await hold(setup, "/ggk/OntvangAsynchroon", MIB, token=token, soap=True)
        async with holding([first, second]):
            await settle(setup)
            await submit_jw301(setup)  # 0175: its own share
            status, body = await post_soap(
                setup, deventer_wmo301(str(uuid.uuid4())), partner="0150"
            )
            assert status == 503 and fo03_code(body) == "StUF046", body[:400]
            assert etree.fromstring(body).findtext(".//faultcode") == "soapenv:Server"


# --- the budget itself (no server needed: it is plain asyncio) -------------------------------


async def test_a_holder_beyond_its_share_waits_without_standing_in_anyone_s_way() -> None:
    budget = BodyBudget(100, share=40)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(budget.reserve("a", 40, 1))
        waiting = asyncio.create_task(_held_until_released(budget, "a", 10))
        await asyncio.sleep(0)
        assert not waiting.done() and budget.held("a") == 40
        # b is admitted at once, although a's second body queued before it
        await stack.enter_async_context(budget.reserve("b", 40, 1))
        assert budget.in_use == 80
    await waiting  # a's own body went: its second one got in
    assert budget.in_use == 0


async def test_bodies_that_do_not_fit_the_budget_queue_first_come_first_served() -> None:
    budget = BodyBudget(100, share=60)
    order: list[str] = []
    async with budget.reserve("a", 60, 1), budget.reserve("b", 30, 1):
        large = asyncio.create_task(_note(budget, "c", 60, order))
        await asyncio.sleep(0)
        small = asyncio.create_task(_note(budget, "d", 5, order))
        await asyncio.sleep(0)
        assert not small.done(), "a small body overtook the large one that came first"
    await asyncio.gather(large, small)
    assert order == ["c", "d"]


async def test_a_waiter_that_gives_up_leaves_nothing_behind() -> None:
    budget = BodyBudget(10, share=10)
    async with budget.reserve("a", 10, 1):
        with pytest.raises(BudgetExhausted):
            async with budget.reserve("b", 5, 0.01):
                pass
    assert budget.in_use == 0 and budget.held("a") == budget.held("b") == 0
    async with budget.reserve("b", 10, 0.01):
        assert budget.in_use == 10


async def test_when_the_first_in_line_gives_up_the_ones_behind_it_go() -> None:
    """c waits behind b (first come, first served); b gives up: c goes at once, without
    waiting for a release (before, it waited for the next body to end)."""
    budget = BodyBudget(100, share=100)
    order: list[str] = []
    async with budget.reserve("a", 60, 1):
        large = asyncio.create_task(_note(budget, "b", 50, order, timeout=0.01))
        await asyncio.sleep(0)
        small = asyncio.create_task(_note(budget, "c", 10, order))
        await asyncio.sleep(0)
        assert not small.done(), "c overtook b"
        with pytest.raises(BudgetExhausted):
            await large
        await asyncio.wait_for(small, 5)
        assert order == ["c"] and budget.in_use == 60
    assert budget.in_use == 0 and budget.waiting() == 0


async def test_a_growing_body_goes_before_new_ones_and_gives_all_back() -> None:
    """a's body grows while c's new body waits for the budget: a gets its room first (it is
    on its way to giving it back; c waiting for what a holds would otherwise wait for
    nothing). At the end a gives back what it grew to."""
    budget = BodyBudget(100, share=80)
    order: list[str] = []
    async with budget.reserve("a", 50, 1) as held:
        new = asyncio.create_task(_note(budget, "c", 60, order))
        await asyncio.sleep(0)
        assert not new.done()
        await asyncio.wait_for(held.cover(60, 20), 5)  # grows by a step of 20
        assert held.size == 70 and budget.held("a") == 70 and budget.in_use == 70
        await held.cover(65, 20)  # already covered: nothing to take
        assert held.size == 70
    await asyncio.wait_for(new, 5)
    assert order == ["c"] and budget.in_use == 0 and budget.held("a") == 0


async def test_growing_beyond_the_share_waits_for_the_holders_own_bodies() -> None:
    """Two of a's bodies within a's share of 40: the second's growth waits until the first is
    done, while b is admitted meanwhile."""
    budget = BodyBudget(100, share=40)
    async with budget.reserve("a", 10, 1) as second:
        async with budget.reserve("a", 20, 1):
            growing = asyncio.create_task(second.cover(30, 10))
            await asyncio.sleep(0)
            assert not growing.done() and second.waiting
            async with budget.reserve("b", 40, 1):
                assert budget.in_use == 70
            assert not growing.done()
        await asyncio.wait_for(growing, 5)
        assert second.size == 30 and budget.held("a") == 30 and not second.waiting
    assert budget.in_use == 0 and budget.waiting() == 0


async def test_many_parked_waiters_are_served_in_order() -> None:
    """A thousand waiters of many holders, each fitting its share but not the budget, go in
    arrival order as the budget frees: the ordered queue keeps first come, first served."""
    budget = BodyBudget(10, share=5)
    order: list[str] = []
    async with budget.reserve("x", 5, 1), budget.reserve("y", 5, 1):
        tasks = []
        for n in range(1000):
            tasks.append(asyncio.create_task(_note(budget, f"h{n % 50}", 1, order)))
            await asyncio.sleep(0)
        assert budget.waiting() == 1000
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert order == [f"h{n % 50}" for n in range(1000)]
    assert budget.in_use == 0 and budget.waiting() == 0


async def _held_until_released(budget: BodyBudget, holder: str, size: int) -> None:
    async with budget.reserve(holder, size, 5):
        pass


async def _note(
    budget: BodyBudget, holder: str, size: int, order: list[str], timeout: float = 5
) -> None:
    async with budget.reserve(holder, size, timeout):
        order.append(holder)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("min_body_rate", "-1"),
        ("min_body_rate", "nan"),
        ("min_body_rate", '"fast"'),
        ("body_grace", "0"),
        ("body_grace", "inf"),
        ("partner_inflight_body_mb", "-1"),
        ("partner_inflight_body_mb", "1"),  # less than one message of 25 MiB
        ("partner_inflight_body_mb", "200"),  # more than the budget of 100 MiB
        ("portal_upload_slots", "0"),
        ("portal_upload_slots", "2.5"),
    ],
)
def test_bad_body_limits_are_refused_in_one_line(tmp_path: Path, key: str, value: str) -> None:
    setup = configured(make_setup(tmp_path / "gw", 1), **{key: value})
    with pytest.raises(ConfigError) as refused:
        load_config(setup.config_path)
    message = str(refused.value)
    assert "\n" not in message and key in message and str(setup.config_path) in message
