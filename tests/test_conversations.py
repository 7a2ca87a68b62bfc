"""Conversations belong to their two parties (issue #27, point 10), against a real gateway.

A Du01/Fo01 over SOAP and a retour over REST must answer a message that its ontvanger sent to
its zender. Another pair's reference is refused exactly like one the gateway never saw (the
same Fo03 or problem document: no existence oracle). On REST the payload's own reference (its
BerichtIdentificatie) decides and ``?cross_ref`` can only agree with it. ``[gateway]
conversations = "lenient"`` (migrations) delivers answers to unknown references, marked
unlinked in the receiver's REST inbox, message status and portal inbox."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from lxml import etree

from gateway import envelope as env
from gateway.broker.kafka import KafkaBroker
from gateway.broker.sqlite import SqliteBroker
from gateway.config import ConfigError, load
from gateway.keyring import Keyring
from kit.gateway import (
    Setup,
    Sink,
    another_process,
    eventually,
    fo03_code,
    make_setup,
    portal_session,
    post_soap,
    rest,
    running,
    serve,
    use_kafka,
)
from tests.conftest import SAMPLES

WMO301 = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()
WMO302 = (SAMPLES / "iwmo" / "wmo302.xml").read_bytes()
STUF = env.STUF_NS


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


def lenient(setup: Setup) -> Setup:
    """The same gateway with ``[gateway] conversations = "lenient"``."""
    text = setup.config_path.read_text()
    text = text.replace('conversations = "strict"', 'conversations = "lenient"')
    assert 'conversations = "lenient"' in text
    setup.config_path.write_text(text)
    return setup


def heen(identificatie: str, ontvanger: str = "12345678") -> bytes:
    """A WMO301 of 0150 to zorgaanbieder ``ontvanger``."""
    return WMO301.replace(b"WMO301A0001", identificatie.encode()).replace(
        b">12345678<", f">{ontvanger}<".encode()
    )


def retour_payload(partner: str, heen_identificatie: str, identificatie: str) -> bytes:
    """A WMO302 from zorgaanbieder ``partner`` answering 0150's WMO301 ``heen_identificatie``."""
    return (
        WMO302.replace(b">12345678<", f">{partner}<".encode())
        .replace(b"WMO301A0001", heen_identificatie.encode())
        .replace(b"WMO302R0001", identificatie.encode())
    )


def du01(partner: str, cross_ref: str, identificatie: str) -> bytes:
    return env.build_du01(
        retour_payload(partner, "WMO301A0001", identificatie),
        zender=partner,
        zender_applicatie="ZorgSuite",
        ontvanger="0150",
        functie="WMO302",
        cross_ref=cross_ref,
    )


def fo01(partner: str, cross_ref: str) -> bytes:
    return env.build_fo01(
        zender=partner,
        zender_applicatie="ZorgSuite",
        ontvanger="0150",
        cross_ref=cross_ref,
        code="StUF058",
        plek="client",
        omschrijving="refused",
    )


def answer(status: int, body: bytes) -> tuple[int, bytes]:
    """A SOAP answer without what differs per request (its own references and time)."""
    root = etree.fromstring(body)
    for name in ("referentienummer", "crossRefnummer", "tijdstipBericht"):
        for element in root.iter(f"{{{STUF}}}{name}"):
            element.text = "-"
    return status, etree.tostring(root)


async def submit(setup: Setup, partner: str, payload: bytes, **params: str) -> tuple[int, Any]:
    query = "".join(f"{'&' if i else '?'}{k}={v}" for i, (k, v) in enumerate(params.items()))
    status, body = await rest(
        setup, "POST", f"/api/v1/messages{query}", token=setup.token(partner), data=payload
    )
    assert isinstance(body, dict), body
    return status, body


@pytest.mark.slow
async def test_an_answer_naming_another_pairs_message_is_refused_like_an_unknown_one(
    setup: Setup,
) -> None:
    async with running(setup):
        status, accepted = await submit(setup, "0150", heen("WMO301A0001"))
        assert status == 202, accepted
        theirs = accepted["referentienummer"]

        # 87654321 answers 0150's message to 12345678, and a reference that never passed:
        # one and the same Fo03 (StUF043) for the Du01s, one for the Fo01s.
        du01s, fo01s = [], []
        for n, ref in enumerate((theirs, str(uuid.uuid4()))):
            status, body = await post_soap(
                setup, du01("87654321", ref, f"WMO302I000{n}"), partner="87654321"
            )
            assert fo03_code(body) == "StUF043", body
            du01s.append(answer(status, body))
            status, body = await post_soap(setup, fo01("87654321", ref), partner="87654321")
            assert fo03_code(body) == "StUF043", body
            fo01s.append(answer(status, body))
        assert du01s[0] == du01s[1] and fo01s[0] == fo01s[1]
        assert du01s[0][0] == 500 and b"0150" not in du01s[0][1]

        # nothing reached 0150, and its message is still unanswered
        _, inbox = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("0150"))
        assert inbox["messages"] == []
        _, view = await rest(
            setup, "GET", f"/api/v1/messages/{accepted['id']}", token=setup.token()
        )
        assert [c["id"] for c in view["conversation"]] == [accepted["id"]]

        # the real addressee's Fo01 answers it: linked, in 0150's inbox, not marked
        status, body = await post_soap(setup, fo01("12345678", theirs), partner="12345678")
        assert status == 200, body
        _, inbox = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("0150"))
        assert [(m["kind"], m["unlinked"]) for m in inbox["messages"]] == [("Fo01", False)]


@pytest.mark.slow
async def test_a_rest_cross_ref_never_links_a_retour_into_another_conversation(
    setup: Setup,
) -> None:
    async with running(setup):
        refs = {}
        for name, identificatie, ontvanger in (
            ("answered", "WMO301A0001", "12345678"),
            ("same-pair", "WMO301A0002", "12345678"),
            ("other-pair", "WMO301A0003", "87654321"),
        ):
            status, accepted = await submit(setup, "0150", heen(identificatie, ontvanger))
            assert status == 202, accepted
            refs[name] = (accepted["referentienummer"], accepted["id"])

        payload = retour_payload("12345678", "WMO301A0001", "WMO302C0001")
        refused = []
        for wrong in (refs["same-pair"][0], refs["other-pair"][0], str(uuid.uuid4())):
            status, problem = await submit(setup, "12345678", payload, cross_ref=wrong)
            refused.append((status, problem["code"], problem["title"]))
        assert refused[0][:2] == (422, "StUF043")
        assert refused[0] == refused[1] == refused[2]

        # agreeing with the payload's own heenbericht, or left out: linked to it alone
        status, accepted = await submit(setup, "12345678", payload, cross_ref=refs["answered"][0])
        assert status == 202, accepted
        for name, length in (("answered", 2), ("same-pair", 1), ("other-pair", 1)):
            _, view = await rest(
                setup, "GET", f"/api/v1/messages/{refs[name][1]}", token=setup.token()
            )
            assert len(view["conversation"]) == length, name

        # a retour whose heenbericht did not pass: refused, cross_ref or not
        unknown = retour_payload("12345678", "WMO301Q9999", "WMO302C0002")
        for params in ({}, {"cross_ref": str(uuid.uuid4())}):
            status, problem = await submit(setup, "12345678", unknown, **params)
            assert (status, problem["code"]) == (422, "StUF043"), problem


@pytest.mark.slow
async def test_lenient_conversations_deliver_unknown_references_marked_unlinked(
    setup: Setup,
) -> None:
    async with running(lenient(setup)):
        status, accepted = await submit(setup, "0150", heen("WMO301A0001"))
        assert status == 202, accepted
        theirs = accepted["referentienummer"]

        # another pair's reference and one that never passed: delivered, never linked
        for n, ref in enumerate((theirs, str(uuid.uuid4()))):
            status, body = await post_soap(
                setup, du01("87654321", ref, f"WMO302L000{n}"), partner="87654321"
            )
            assert status == 200, body
        status, body = await post_soap(
            setup, du01("12345678", theirs, "WMO302L0003"), partner="12345678"
        )
        assert status == 200, body
        # over REST: cross_ref is what a heenbericht from before the gateway needs
        unknown = retour_payload("12345678", "WMO301Q9999", "WMO302L0004")
        status, problem = await submit(setup, "12345678", unknown)
        assert (status, problem["code"]) == (422, "StUF043") and "cross_ref" in problem["title"]
        # ... but it may not name another message of this pair
        status, problem = await submit(setup, "12345678", unknown, cross_ref=theirs)
        assert (status, problem["code"]) == (422, "StUF043"), problem
        status, sent = await submit(setup, "12345678", unknown, cross_ref=str(uuid.uuid4()))
        assert status == 202, sent

        _, inbox = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("0150"))
        marks = [(m["zender"], m["unlinked"]) for m in inbox["messages"]]
        assert marks == [
            ("87654321", True),
            ("87654321", True),
            ("12345678", False),
            ("12345678", True),
        ]
        _, view = await rest(setup, "GET", f"/api/v1/messages/{sent['id']}", token=setup.token())
        assert view["unlinked"] is True and view["heen_id"] is None
        _, view = await rest(
            setup, "GET", f"/api/v1/messages/{accepted['id']}", token=setup.token("0150")
        )
        assert view["unlinked"] is False and len(view["conversation"]) == 2

        client, _ = await portal_session(setup, "0150")
        async with client, client.get(f"{setup.url}/portal/inbox", ssl=setup.ssl_context()) as page:
            html = await page.text()
        assert len(re.findall(r"niet gekoppeld", html)) == 3, html


def test_the_conversations_setting_is_strict_or_lenient(setup: Setup) -> None:
    assert load(setup.config_path).conversations == "strict"
    text = setup.config_path.read_text()
    setup.config_path.write_text(text.replace('conversations = "strict"', 'conversations = "x"'))
    with pytest.raises(ConfigError, match="conversations is 'strict' or 'lenient'"):
        load(setup.config_path)


@pytest.mark.kafka
async def test_kafka_answers_alike_even_right_after_the_heen_at_another_process(
    tmp_path: Path, sink: Sink, kafka_bootstrap: str
) -> None:
    """Two processes on one cluster: a retour reaching process b just after its heenbericht's
    Bv03 from process a is linked (b's view waits for the router on a miss, instead of
    refusing it as unknown); an intruder's answer is refused there like an unknown one."""
    setup = use_kafka(
        make_setup(tmp_path / "gw", sink.port), kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}"
    )
    other = another_process(setup, "b")
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(await serve(setup, tmp_path / "a.log"))
        processes.append(await serve(other, tmp_path / "b.log"))
        status, soap_heen = await submit(setup, "0150", heen("WMO301A0001"))
        assert status == 202, soap_heen
        status, body = await post_soap(
            other,
            du01("12345678", soap_heen["referentienummer"], "WMO302K0001"),
            partner="12345678",
        )
        assert status == 200, body
        status, rest_heen = await submit(setup, "0150", heen("WMO301A0002"))
        assert status == 202, rest_heen
        payload = retour_payload("12345678", "WMO301A0002", "WMO302K0002")
        status, body = await submit(other, "12345678", payload)
        assert status == 202, body

        answers = []
        for n, ref in enumerate((soap_heen["referentienummer"], str(uuid.uuid4()))):
            status, fault = await post_soap(
                other, du01("87654321", ref, f"WMO302K001{n}"), partner="87654321"
            )
            assert fo03_code(fault) == "StUF043", fault
            answers.append(answer(status, fault))
        assert answers[0] == answers[1]
        for heen_id in (soap_heen["id"], rest_heen["id"]):
            _, view = await rest(other, "GET", f"/api/v1/messages/{heen_id}", token=other.token())
            assert len(view["conversation"]) == 2, view
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()
    for log in (tmp_path / "a.log", tmp_path / "b.log"):
        assert "Traceback" not in log.read_text()


@pytest.mark.kafka
async def test_kafka_lookups_that_miss_at_once_share_one_catch_up(
    tmp_path: Path, sink: Sink, kafka_bootstrap: str
) -> None:
    """Forty lookups missing at once (a partner's made-up references) wait for one shared
    catch-up of the view, not one each: the Kafka requests of the lookup path (offset queries,
    committed-offset polls) are those of a round or two, not forty times a round's. Counted at
    the real clients, which still do the work."""
    setup = use_kafka(
        make_setup(tmp_path / "gw", sink.port), kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}"
    )
    config = setup.config()
    assert config.kafka is not None
    store = SqliteBroker(
        config.database, Keyring.load(config.keyring), audit_enabled=False, durable=False
    )
    broker = KafkaBroker(config.kafka, store, node="misses", audit_enabled=False)
    await broker.start()
    calls: Counter[str] = Counter()

    def counted(client: Any, method: str, what: str) -> None:
        real = getattr(client, method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            calls[what] += 1
            return await real(*args, **kwargs)

        setattr(client, method, call)

    try:
        # something in `accepted` (unreadable: the router dead-letters it and commits past
        # it), so a catch-up also has committed offsets to wait for
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(f"{config.kafka.prefix}.accepted", b"x", key=b"k")
        finally:
            await producer.stop()
        router, view = broker._router, broker._view_consumer
        assert router is not None and view is not None
        accepted = [
            TopicPartition(f"{config.kafka.prefix}.accepted", p)
            for p in router.partitions_for_topic(f"{config.kafka.prefix}.accepted") or ()
        ]

        async def routed() -> bool:
            ends = await router.end_offsets(accepted)
            done = [await router.committed(tp) or 0 for tp in ends]
            return all(end <= d for end, d in zip(ends.values(), done, strict=True))

        await eventually(routed, timeout=60)  # the group has formed and routed it
        counted(router, "end_offsets", "offset queries")
        counted(view, "end_offsets", "offset queries")
        counted(router._coordinator, "fetch_committed_offsets", "committed-offset fetches")

        found = await asyncio.gather(
            *(
                broker.find_conversation(str(uuid.uuid4()), zender="0150", ontvanger="12345678")
                for _ in range(40)
            )
        )
        assert found == [None] * 40
        # a round is two offset queries (accepted, then events) and its polls; 40 misses
        # cost at most a few rounds (those that began while others were still looking)
        assert calls["offset queries"] <= 8, calls
        assert calls["committed-offset fetches"] <= calls["offset queries"], calls
        assert broker.settle.waits == 40
        assert calls["offset queries"] == 2 * broker.settle.rounds
    finally:
        await broker.close()
