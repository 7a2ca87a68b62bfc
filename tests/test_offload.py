"""Large payloads are validated in a reader process (gateway/offload.py, gateway/readers.py):
same verdict as inline validation, the tree is there for routing, a lost reader costs no
message, and a gateway accepts a 1 MB declaratie."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from pathlib import Path

import pytest

from gateway.offload import PayloadValidator
from gateway.readers import Readers, ReaderSetup
from gateway.reading import Settings
from gateway.validation import Validator
from kit.gateway import Sink, make_setup, rest, running
from kit.messages import big_declaratie

BIG = big_declaratie()


@pytest.mark.slow
async def test_worker_gives_the_same_verdict_as_inline(validator: Validator) -> None:
    readers = Readers(
        ReaderSetup((), validator.limits, validator.limits, None, Settings()), count=1
    )
    payloads = PayloadValidator(validator, readers)
    await readers.start()
    try:
        workers = multiprocessing.active_children()
        assert workers, "no reader process was started"
        good = await payloads.validate_payload(BIG)
        assert good.report.valid and good.root is not None and good.identified is not None
        assert good.identified.message.code == "WMO323"
        # a wrong total (a digit more in TotaalIngediendBedrag/Bedrag): a level-2 rule, found
        # by the worker, reported as inline validation reports it
        bedrag = BIG.index(b"Bedrag>", BIG.index(b"TotaalIngediendBedrag>") + 30) + 7
        wrong = BIG[:bedrag] + b"1" + BIG[bedrag:]
        in_worker = await payloads.validate_payload(wrong)
        inline = validator.validate_payload(wrong)
        assert not inline.report.valid
        assert [p.rule for p in in_worker.report.errors] == [p.rule for p in inline.report.errors]
        # the reader dies: the next large payload is still validated (here), not lost, and a
        # new reader takes its place
        for worker in workers:
            worker.kill()
            worker.join()
        again = await payloads.validate_payload(BIG)
        assert again.report.valid and again.identified is not None
        for _ in range(200):
            if readers.running:
                break
            await asyncio.sleep(0.05)
        assert readers.running, "no reader was started in the place of the lost one"
        assert set(multiprocessing.active_children()).isdisjoint(workers)
    finally:
        await readers.close()


@pytest.mark.slow
async def test_gateway_accepts_a_1_mb_declaratie(tmp_path: Path) -> None:
    sink = Sink()
    setup = make_setup(tmp_path / "gw", sink.port)
    async with running(setup):
        status, body = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("12345678"),
            data=BIG,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert len(BIG) > 1_000_000
    assert status == 202 and body["destinations"] == ["0150"], body
