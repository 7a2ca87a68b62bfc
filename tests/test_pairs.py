"""Pairs the gateway carries (issue 31, goal 2), against a real gateway.

A retour is compared with its stored heenbericht (IV028, IV032), a 325 with its stored 323
(TR337, TR371, TR376, IV087, IV088, TR366, TR367), at accept: a mismatch is refused with
StUF058 naming the rule and its retourcode (or the rule id alone), never a value of the
heenbericht. An answer whose heenbericht the gateway does not carry (unknown, another pair's)
is not compared. And TR342 no longer refuses a valid 325 whose refused Client's prestaties
carry 0233 (IV087)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway import envelope as env
from gateway.rules import pairs
from gateway.standards import MESSAGES, Kind, MessageType
from gateway.xmlsafe import parse_own
from kit.gateway import (
    Setup,
    Sink,
    fo03_code,
    make_setup,
    post_soap,
    rest,
    running,
    serve,
    use_kafka,
)
from tests.conftest import SAMPLES

JW301 = (SAMPLES / "ijw" / "jw301.xml").read_text()
JW302 = (SAMPLES / "ijw" / "jw302.xml").read_text()
JW323 = (SAMPLES / "ijw" / "jw323.xml").read_text()
JW325 = (SAMPLES / "ijw" / "jw325.xml").read_text()


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


def edited(text: str, *edits: tuple[str, str]) -> bytes:
    """``text`` with each (old, new) replaced once; an edit that matches nothing is a bug."""
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text.encode()


async def submit(setup: Setup, partner: str, payload: bytes, **params: str) -> tuple[int, Any]:
    query = "".join(f"{'&' if i else '?'}{k}={v}" for i, (k, v) in enumerate(params.items()))
    status, body = await rest(
        setup, "POST", f"/api/v1/messages{query}", token=setup.token(partner), data=payload
    )
    assert isinstance(body, dict), body
    return status, body


async def refused_with(setup: Setup, partner: str, payload: bytes) -> str:
    """The title of the problem document refusing ``payload`` (StUF058, 422)."""
    status, problem = await submit(setup, partner, payload)
    assert (status, problem.get("code")) == (422, "StUF058"), problem
    title: str = problem["title"]
    return title


# --- every sample pair, without a gateway ----------------------------------------------------

RETOURS = [m for m in MESSAGES.values() if m.kind is Kind.RETOUR]


def sample_root(message: MessageType | str) -> etree._Element:
    code = message if isinstance(message, str) else message.code
    folder = "iwmo" if code.startswith("WMO") else "ijw"
    return parse_own((SAMPLES / folder / f"{code.lower()}.xml").read_bytes())


@pytest.mark.parametrize("retour", RETOURS, ids=lambda m: m.code)
def test_every_sample_retour_fits_its_heenbericht_and_a_changed_class_does_not(
    retour: MessageType,
) -> None:
    """No false refusal on any of the 12 retour types, and IV028 on each when a value of a
    copied class differs from the heenbericht's."""
    assert retour.pair is not None
    heen = MESSAGES[(retour.standard, retour.pair)]
    heen_root = sample_root(heen)
    answer = sample_root(retour)
    assert pairs.check_retour(answer, heen_root, heen.bericht_code) == []
    leaf = next(
        el
        for cls in list(answer)[1:]
        for el in cls.iter()
        if len(el) == 0 and el.text and etree.QName(el).localname != "RetourCode"
    )
    leaf.text = f"{leaf.text}0"
    found = pairs.check_retour(answer, heen_root, heen.bericht_code)
    assert [(p.rule, p.retourcode) for p in found] == [("IV028", None)]


@pytest.mark.parametrize("prefix", ["WMO", "JW"])
def test_every_sample_declaratie_antwoord_fits_its_declaratie(prefix: str) -> None:
    assert pairs.check_antwoord(sample_root(f"{prefix}325"), sample_root(f"{prefix}323")) == []


# --- a retour against its heenbericht ------------------------------------------------------


def heen(n: int) -> bytes:
    """0175's JW301 to 12345678 with its own Identificatie."""
    return edited(JW301, ("JW301B0001", f"JW301P{n:04d}"))


def retour(n: int, *edits: tuple[str, str]) -> bytes:
    """12345678's JW302 answering :func:`heen` ``n``, with ``edits``."""
    return edited(JW302, ("JW301B0001", f"JW301P{n:04d}"), ("JW302R0001", f"JW302P{n:04d}"), *edits)


@pytest.mark.slow
async def test_a_retour_is_checked_against_its_stored_heenbericht(setup: Setup) -> None:
    cases = {
        # IV028: the Header is the heenbericht's (here its Dagtekening), unchanged
        "IV028": (
            "<ijw:Dagtekening>2026-10-01<",
            "<ijw:Dagtekening>2026-09-30<",
        ),
        # IV028: a client's classes are the heenbericht's, unchanged
        "IV028 class": ("<ijw:Voorletters>HM<", "<ijw:Voorletters>HN<"),
        # IV032: a retour rejecting at control level 2 (0001) holds only the Header
        "IV032": ("<jw302:RetourCode>0200<", "<jw302:RetourCode>0001<"),
    }
    async with running(setup):
        refs = {}
        for n in range(len(cases) + 2):
            status, accepted = await submit(setup, "0175", heen(n))
            assert status == 202, accepted
            refs[n] = accepted["referentienummer"]

        status, body = await submit(setup, "12345678", retour(0))
        assert status == 202, body  # the sample answers its heenbericht as IV028 says

        for n, (name, edit) in enumerate(cases.items(), start=1):
            title = await refused_with(setup, "12345678", retour(n, edit))
            rule = name.split()[0]
            assert title.startswith(f"{rule} at "), (name, title)
            assert "2026-10-01" not in title and "HM" not in title, title

        # over SOAP: a Du01 whose payload is not a copy of the Di01 its crossRefnummer names
        # (it answers another heenbericht) gets a Fo03 StUF058 naming IV028
        n = len(cases) + 1
        du01 = env.build_du01(
            retour(0, ("JW302P0000", "JW302S0000")),
            zender="12345678",
            zender_applicatie="ZorgSuite",
            ontvanger="0175",
            functie="JW302",
            cross_ref=refs[n],
        )
        status, fault = await post_soap(setup, du01, partner="12345678")
        assert (status, fo03_code(fault)) == (500, "StUF058"), fault
        assert b"IV028 at Header/BerichtIdentificatie" in fault

        # a JW306 whose crossRefnummer names 12345678's JW323 to 0175 (not a JW305)
        status, claim = await submit(setup, "12345678", declaratie(0))
        assert status == 202, claim
        wrong_type = env.build_du01(
            (SAMPLES / "ijw" / "jw306.xml").read_bytes(),
            zender="0175",
            zender_applicatie="Suite4Sociaal",
            ontvanger="12345678",
            functie="JW306",
            cross_ref=claim["referentienummer"],
        )
        status, fault = await post_soap(setup, wrong_type, partner="0175")
        assert (status, fo03_code(fault)) == (500, "StUF058"), fault
        assert b"IV028 at Header/BerichtCode" in fault


# --- a 325 against its 323 ---------------------------------------------------------------------


def declaratie(n: int, aanbieder_id: str = "JW323") -> bytes:
    """12345678's JW323 to 0175 with its own Identificatie."""
    return edited(JW323, ("JW323B0001", f"{aanbieder_id}P{n:03d}"))


def antwoord(n: int, *edits: tuple[str, str], names: str = "JW323") -> bytes:
    """0175's JW325 answering :func:`declaratie` ``n``, with ``edits``."""
    return edited(
        JW325, ("JW323B0001", f"{names}P{n:03d}"), ("JW325B0001", f"JW325P{n:03d}"), *edits
    )


ANTWOORD_CASES: dict[str, tuple[tuple[str, str], ...]] = {
    "TR337": (("<ijw:Dagtekening>2026-11-03<", "<ijw:Dagtekening>2026-11-02<"),),
    "TR371": (
        (
            "<jw325:XsdVersieDeclaratie>\n      <ijw:BasisschemaXsdVersie>1.0.0<",
            "<jw325:XsdVersieDeclaratie>\n      <ijw:BasisschemaXsdVersie>1.0.1<",
        ),
    ),
    "TR376": (("D20261000017", "D20261000018"),),
    "IV087": (
        ("<ijw:TotaalBedrag>132500<", "<ijw:TotaalBedrag>132600<"),
        ("<ijw:TotaalBedrag>87500<", "<ijw:TotaalBedrag>87600<"),  # TR342 still adds up
    ),
    "IV088": (("<jw325:RetourCode>0200<", "<jw325:RetourCode>0001<"),),
    "TR366 [9366]": (("P2026100002", "P2026100099"),),
    "TR367 [9367]": (("<jw325:ToewijzingNummer>1002<", "<jw325:ToewijzingNummer>1003<"),),
}


@pytest.mark.slow
async def test_a_declaratie_antwoord_is_checked_against_its_stored_declaratie(
    setup: Setup,
) -> None:
    async with running(setup):
        for n in range(len(ANTWOORD_CASES) + 1):
            status, accepted = await submit(setup, "12345678", declaratie(n))
            assert status == 202, accepted

        status, body = await submit(setup, "0175", antwoord(0))
        assert status == 202, body  # the sample answers its declaratie

        for n, (rule, edits) in enumerate(ANTWOORD_CASES.items(), start=1):
            title = await refused_with(setup, "0175", antwoord(n, *edits))
            assert title.startswith(f"{rule} at "), (rule, title)
            # the words name the rule and the place in the 325, never the 323's values
            for value in ("2026-11-03", "1.0.0", "D20261000017", "132500", "1002"):
                assert value not in title, (rule, title)


@pytest.mark.slow
async def test_a_valid_325_whose_refused_client_has_0233_prestaties_is_accepted(
    setup: Setup,
) -> None:
    """IV087: a Client refused at level 3 is sent with its retourcode and all its prestaties
    with 0233; TR342 counts them as refused (it refused this valid 325 before)."""
    async with running(setup):
        status, accepted = await submit(setup, "12345678", declaratie(0))
        assert status == 202, accepted
        payload = antwoord(
            0,
            ("<jw325:RetourCode>0611<", "<jw325:RetourCode>0233<"),
            (
                "</jw325:Prestaties>\n        <jw325:RetourCodes>\n"
                "          <jw325:RetourCode>0200<",
                "</jw325:Prestaties>\n        <jw325:RetourCodes>\n"
                "          <jw325:RetourCode>8187<",
            ),
        )
        status, body = await submit(setup, "0175", payload)
        assert status == 202, body


@pytest.mark.slow
async def test_answers_to_messages_the_gateway_does_not_carry_are_not_compared(
    tmp_path: Path, sink: Sink
) -> None:
    """Only what the gateway carries is compared: a 325 naming a 323 it never saw, or one
    that 12345678 sent to another gemeente, is accepted as it is (the same answer either way:
    no oracle), while the same mismatch against the caller's own 323 is refused; so is a
    (lenient) retour whose heenbericht did not pass the gateway."""
    setup = make_setup(tmp_path / "gw", sink.port)
    text = setup.config_path.read_text()
    setup.config_path.write_text(
        text.replace('conversations = "strict"', 'conversations = "lenient"')
    )
    wrong = ("D20261000017", "D20261000018")
    async with running(setup):
        status, accepted = await submit(setup, "12345678", declaratie(1))
        assert status == 202, accepted
        # carried and the caller's: compared and refused
        assert (await refused_with(setup, "0175", antwoord(1, wrong))).startswith("TR376 at ")
        # the same 323 reference from another gemeente (0150): not its conversation
        other = antwoord(
            2,
            wrong,
            ("<jw325:Afzender>0175<", "<jw325:Afzender>0150<"),
            ("JW323P002", "JW323P001"),
        )
        status, body = await submit(setup, "0150", other)
        assert status == 202, body
        # a 323 that never passed
        status, body = await submit(setup, "0175", antwoord(3, wrong, names="JW323X"))
        assert status == 202, body

        # a retour to a heenbericht sent before the gateway (lenient): not compared
        lost = retour(
            99,
            ("<ijw:Dagtekening>2026-10-01<", "<ijw:Dagtekening>2026-09-30<"),
        )
        status, body = await submit(setup, "12345678", lost, cross_ref=str(uuid.uuid4()))
        assert status == 202, body


@pytest.mark.kafka
async def test_kafka_compares_a_pair_it_carries(
    tmp_path: Path, sink: Sink, kafka_bootstrap: str
) -> None:
    """On the Kafka backend the stored heenbericht is read back from the view (or the events
    record it points at): a matching retour and 325 are accepted, mismatching ones refused."""
    setup = use_kafka(
        make_setup(tmp_path / "gw", sink.port), kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}"
    )
    process = await serve(setup, tmp_path / "gw.log")
    try:
        for partner, payload in (("0175", heen(0)), ("12345678", declaratie(0))):
            status, accepted = await submit(setup, partner, payload)
            assert status == 202, accepted
        status, body = await submit(
            setup,
            "12345678",
            retour(0, ("<ijw:Voorletters>HM<", "<ijw:Voorletters>HN<")),
        )
        assert (status, body.get("code")) == (422, "StUF058"), body
        assert body["title"].startswith("IV028 at Client"), body
        title = await refused_with(setup, "0175", antwoord(0, *ANTWOORD_CASES["TR367 [9367]"]))
        assert title.startswith("TR367 [9367] at "), title
        for partner, payload in (("12345678", retour(0)), ("0175", antwoord(0))):
            status, body = await submit(setup, partner, payload)
            assert status == 202, body
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
    assert "Traceback" not in (tmp_path / "gw.log").read_text()
