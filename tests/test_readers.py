"""SOAP requests read in reader processes (gateway/readers.py): the same verdicts as reading
in the gateway process, a reader killed mid-traffic costs no message and is replaced, and the
readers end with their gateway (even one killed with -9)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import re
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from gateway import envelope as env
from gateway import readers as readers_module
from gateway import soap
from gateway.figures import Fact, FactKind
from gateway.reader_process import Answer, Failed, Fault, loads
from gateway.readers import LARGE_BYTES, ReaderCrashed, Readers, ReadersBusy, ReaderSetup
from gateway.reading import Caller, Read, Settings
from gateway.standards import Party
from gateway.validation import Validator
from kit.gateway import (
    Setup,
    Sink,
    declaratie_di01,
    deventer_wmo301,
    eventually,
    fo03_code,
    make_setup,
    post_soap,
    rest,
    running,
    serve,
)
from kit.messages import big_declaratie
from tests.conftest import SAMPLES

SOAP12 = (
    b'<?xml version="1.0"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">'
    b"<env:Body><x/></env:Body></env:Envelope>"
)


def with_readers(setup: Setup, count: int, *, when_alone: bool = True) -> Setup:
    """``count`` readers; ``when_alone``: they read every message, even one sent alone
    (these tests send one at a time: by default the gateway would read those itself)."""
    text = setup.config_path.read_text()
    settings = f"readers = {count}\nreaders_when_alone = {str(when_alone).lower()}\n"
    setup.config_path.write_text(text.replace("[gateway]\n", f"[gateway]\n{settings}", 1))
    return setup


SAMPLE = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()


def fresh() -> bytes:
    """The WMO301 sample with an Identificatie of its own (TR056: never one used before)."""
    return SAMPLE.replace(b"WMO301A0001", uuid.uuid4().hex[:12].encode())


def wmo301_di01(payload: bytes, *, ontvanger: str = "12345678") -> bytes:
    return env.build_di01(
        payload,
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger=ontvanger,
        functie="WMO301",
    )


async def post_raw(setup: Setup, body: bytes, partner: str) -> tuple[int, bytes]:
    headers = {"Content-Type": soap.CONTENT_TYPE, "SOAPAction": '""'}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{setup.url}/ggk/OntvangAsynchroon",
            data=body,
            headers=headers,
            ssl=setup.ssl_context(partner),
        ) as response,
    ):
        return response.status, await response.read()


async def verdicts(setup: Setup) -> list[tuple[int, str | None]]:
    """The answers to a row of requests, good and bad, each refused at another stage."""
    sample = SAMPLE
    rule_broken = (SAMPLES / "invalid" / "wmo301-einddatum-voor-ingangsdatum.xml").read_bytes()
    not_xsd = sample.replace(b"<wmo301:Bsn>", b"<wmo301:Bsnn>", 1).replace(
        b"</wmo301:Bsn>", b"</wmo301:Bsnn>", 1
    )

    again = wmo301_di01(fresh())
    answers = []
    for partner, body in (
        ("0150", wmo301_di01(fresh())),  # accepted
        ("0150", again),
        ("0150", again),  # the same message again: the same Bv03
        ("0175", wmo301_di01(fresh())),  # another gemeente's zender: spoofed
        ("0150", wmo301_di01(rule_broken)),  # a business rule: StUF058
        ("0150", wmo301_di01(not_xsd)),  # not the schema: StUF055
        ("0150", wmo301_di01(rule_broken, ontvanger="99999999")),  # unknown ontvanger first
        ("0150", deventer_wmo301()),
        ("0150", deventer_wmo301()),  # its Identificatie used before: TR056
    ):
        status, answer = await post_soap(setup, body, partner=partner)
        answers.append((status, fo03_code(answer) if status != 200 else None))
    status, answer = await post_raw(setup, SOAP12, "0150")
    answers.append((status, fo03_code(answer)))
    # refused at the SOAP layer about a readable message: its Fo03 names it and its zender
    status, answer = await post_soap(setup, wmo301_di01(fresh()), partner="0150", action="x")
    answers.append((status, fo03_code(answer)))
    crossref = etree.fromstring(answer).findtext(f".//{{{env.STUF_NS}}}crossRefnummer")
    answers.append((0, "its reference" if crossref and env.UUID4.match(crossref) else "none"))
    return answers


async def reader_validations(setup: Setup) -> float:
    status, scrape = await rest(setup, "GET", "/metrics", token=setup.token())
    assert status == 200
    found = re.search(rb'^ggk_payload_validations_total\{where="reader"\} (\S+)$', scrape, re.M)
    assert found is not None
    return float(found.group(1))


@pytest.mark.slow
async def test_readers_give_the_verdicts_of_the_gateway_itself(tmp_path: Path, sink: Sink) -> None:
    seen: dict[int, list[tuple[int, str | None]]] = {}
    validated: dict[int, float] = {}
    for count in (0, 2):
        setup = with_readers(make_setup(tmp_path / f"gw{count}", sink.port), count)
        async with running(setup):
            before = await reader_validations(setup)  # the counter is this process's
            seen[count] = await verdicts(setup)
            validated[count] = await reader_validations(setup) - before
    assert seen[0] == seen[2], seen
    codes = [code for _, code in seen[0]]
    assert codes[:3] == [None, None, None]
    assert codes[3:10] == ["StUF052", "StUF058", "StUF055", "IB210", None, "StUF058", "StUF001"]
    assert codes[10:] == ["StUF037", "its reference"], codes
    # with readers, the payloads were validated there (none without)
    assert validated[0] == 0 and validated[2] >= 4, validated


@pytest.mark.slow
async def test_a_message_sent_alone_is_read_here_and_readers_take_a_crowd(
    tmp_path: Path, sink: Sink
) -> None:
    """By default a small message arriving while no other request is in hand is read by the
    gateway itself (cheaper than waking a reader); messages arriving together go to the
    readers, so the loop keeps serving."""
    setup = with_readers(make_setup(tmp_path / "gw", sink.port), 2, when_alone=False)
    async with running(setup):
        before = await reader_validations(setup)
        for _ in range(3):
            status, _ = await post_soap(setup, wmo301_di01(fresh()), partner="0150")
            assert status == 200
        assert await reader_validations(setup) == before
        answers = await asyncio.gather(
            *(post_soap(setup, wmo301_di01(fresh()), partner="0150") for _ in range(24))
        )
        assert [status for status, _ in answers] == [200] * 24
        assert await reader_validations(setup) > before


def readers_of(gateway: int) -> set[int]:
    """The reader processes of the gateway process ``gateway`` (its spawned children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == gateway and b"multiprocessing.spawn" in cmdline:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.mark.slow
async def test_a_reader_killed_costs_no_message_and_the_readers_end_with_the_gateway(
    tmp_path: Path, sink: Sink
) -> None:
    setup = with_readers(make_setup(tmp_path / "gw", sink.port), 2)
    process = await serve(setup, tmp_path / "gateway.log")
    try:
        first = await eventually(
            lambda: len(readers_of(process.pid)) == 2 and readers_of(process.pid)
        )
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        # every message is still answered with a Bv03: read by the other reader or by the
        # gateway itself while the lost one is replaced
        answers = await asyncio.gather(
            *(post_soap(setup, wmo301_di01(fresh()), partner="0150") for _ in range(12))
        )
        assert [status for status, _ in answers] == [200] * 12, answers
        replaced = await eventually(
            lambda: (now := readers_of(process.pid)) and len(now) == 2 and victim not in now and now
        )
        assert not alive(victim)
        status, _ = await post_soap(setup, wmo301_di01(fresh()), partner="0150")
        assert status == 200
        log = tmp_path / "gateway.log"
        await eventually(lambda: "readers.reader_restarted" in log.read_text())
        assert "readers.reader_lost" in log.read_text()
    finally:
        process.kill()
        await process.wait()
    # the readers notice that the gateway's end of their sockets closed, and end too
    await eventually(lambda: not any(alive(pid) for pid in replaced), timeout=20)


@pytest.mark.slow
async def test_ctrl_c_ends_the_gateway_and_its_readers_without_a_traceback(
    tmp_path: Path, sink: Sink
) -> None:
    """Ctrl-C at a terminal sends SIGINT to the whole process group: the readers printed a
    KeyboardInterrupt traceback each; now the gateway alone ends them."""
    setup = with_readers(make_setup(tmp_path / "gw", sink.port), 2)
    log = tmp_path / "gateway.log"
    process = await serve(setup, log, new_session=True)  # a group, as a shell's job
    try:
        readers = await eventually(
            lambda: len(found := readers_of(process.pid)) == 2 and found, timeout=30
        )
        status, _ = await post_soap(setup, wmo301_di01(fresh()), partner="0150")
        assert status == 200
        os.killpg(process.pid, signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await eventually(lambda: not any(alive(pid) for pid in readers), timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = log.read_text()
    assert "gateway.stopping" in text and "Traceback" not in text, text[-2000:]


@contextlib.contextmanager
def frozen(process: multiprocessing.process.BaseProcess) -> Iterator[None]:
    """A reader frozen (SIGSTOP) while the block runs: it holds whatever it was sent."""
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)


@pytest.fixture
async def two_readers(validator: Validator) -> AsyncIterator[Readers]:
    """Two readers in this process's event loop, with a deadline of a second."""
    setup = ReaderSetup((), validator.limits, validator.limits, None, Settings())
    readers = Readers(setup, count=2, deadline=1.0)
    await readers.start()
    try:
        yield readers
    finally:
        await readers.close()


@pytest.mark.slow
async def test_a_small_message_is_not_queued_behind_a_large_one(two_readers: Readers) -> None:
    big = big_declaratie()
    first, second = two_readers.processes
    with frozen(first), frozen(second):
        # each reader is given a large payload (sent at once: nothing awaited before that)
        held = [asyncio.create_task(two_readers.validate_payload(big)) for _ in range(2)]
        await asyncio.sleep(0)
        # a small one finds every reader holding a large one: the caller reads it itself
        with pytest.raises(ReadersBusy):
            await two_readers.validate_payload(SAMPLE)
        for task in held:
            task.cancel()
    await asyncio.gather(*held, return_exceptions=True)


@pytest.mark.slow
async def test_a_stuck_reader_is_killed_and_its_request_read_by_another(
    two_readers: Readers,
) -> None:
    first = two_readers.processes[0]
    with frozen(first):  # the reader chosen first (both idle) never answers
        report = await two_readers.validate_payload(SAMPLE)
    assert report.valid and report.message is not None  # read by the other one
    await eventually(lambda: not first.is_alive())  # killed at its deadline
    await eventually(lambda: all(p.is_alive() for p in two_readers.processes), timeout=30)
    assert first not in two_readers.processes


@pytest.mark.slow
async def test_a_message_two_readers_end_on_is_refused_not_read_here(
    two_readers: Readers,
) -> None:
    first, second = two_readers.processes
    with frozen(first), frozen(second), pytest.raises(ReaderCrashed):
        await two_readers.validate_payload(SAMPLE)
    await eventually(lambda: not first.is_alive() and not second.is_alive())
    await eventually(lambda: all(p.is_alive() for p in two_readers.processes), timeout=30)


def _request(envelope: bytes) -> tuple[bytes, str]:
    """The SOAP request of an envelope, and its SOAPAction."""
    return soap.wrap_request(envelope), soap.soap_action_for(etree.fromstring(envelope))


@pytest.mark.slow
async def test_a_large_answer_is_built_off_the_event_loop_and_in_its_turn(
    validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1 MB declaratie's answer (its envelope and every fact) is unpickled in a thread,
    a small one on the loop, and each request still gets its own answer, in order."""
    built: list[tuple[int, bool]] = []

    def spied(data: bytes) -> object:
        built.append((len(data), threading.current_thread() is threading.main_thread()))
        return loads(data)

    monkeypatch.setattr(readers_module, "loads", spied)
    setup = ReaderSetup((), validator.limits, validator.limits, None, Settings())
    one = Readers(setup, count=1, deadline=60.0)
    await one.start()
    built.clear()  # the reader's ready signal
    try:
        big = big_declaratie()
        small, small_action = _request(wmo301_di01(SAMPLE))
        large, large_action = _request(declaratie_di01(big))
        # the small one first: a large one may queue behind it (not the other way round)
        first, second = await asyncio.gather(
            one.read_soap(small, small_action, Caller("0150", Party.GEMEENTE, "gemeente")),
            one.read_soap(
                large, large_action, Caller("12345678", Party.AANBIEDER, "zorgaanbieder")
            ),
        )
    finally:
        await one.close()
    assert isinstance(first, Read) and isinstance(second, Read), (first, second)
    assert first.header["identificatie"] == "WMO301A0001" and len(first.facts.raw) < LARGE_BYTES
    assert second.header["sender"] == "12345678" and len(second.facts.raw) > len(big)
    assert len(second.facts.bsns) > 500  # a declaratie of some 870 clients
    sizes = [size for size, _ in built]
    assert sizes[0] < LARGE_BYTES < sizes[1], built
    assert [on_loop for _, on_loop in built] == [True, False], built


def _global(module: str, name: str) -> bytes:
    """A pickle whose whole content is the object ``module``/``name`` (protocol 4's
    STACK_GLOBAL: the name may be dotted, which pickle follows attribute by attribute)."""

    def text(value: str) -> bytes:
        data = value.encode()
        return pickle.SHORT_BINUNICODE + bytes([len(data)]) + data

    return pickle.PROTO + b"\x04" + text(module) + text(name) + pickle.STACK_GLOBAL + pickle.STOP


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("gateway.figures", "hmac.__builtins__.get"),  # a dotted path out of an allowed module
        ("gateway.reader_process", "pickle.loads"),
        ("gateway.reader_process", "os.system"),
        ("gateway.figures", "attrgetter"),  # a function an allowed module imports
        ("gateway.reader_process", "_Reader"),  # a class with effects (compiles, logs)
        ("gateway.figures", "FigureKeys"),  # a class, but not plain data
        ("gateway.reading", "Read.__init__"),
        ("builtins", "eval"),
    ],
)
def test_a_readers_answer_cannot_name_anything_but_plain_data_types(module: str, name: str) -> None:
    """A reader runs our parsers on partner input: a flaw in one must not let its answer
    make the gateway call something. Only dataclasses and enums that the answer modules
    define themselves may be built; before, any name under those modules' names was."""
    with pytest.raises(pickle.UnpicklingError, match="a reader may not send"):
        loads(_global(module, name))


def test_a_readers_answer_of_plain_data_types_is_built() -> None:
    facts = (
        Fact(FactKind.DECLARATIE, "wmo", "0150", "12345678", "02", "2026-10", "c", "k", -5),
        Fact(FactKind.VERZOEK, "jw", "0150", "12345678", "-", "", None, "k2", link="l"),
    )
    sent = (Answer(facts, True), Failed("ValueError"), Fault(("StUF046", "server", "x")))
    got = loads(pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL))
    assert got == sent and type(got[0].read[0].kind) is FactKind
