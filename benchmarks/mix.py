"""A realistic message mix for load runs: toewijzingen from gemeenten, start/stop zorg,
verzoeken om toewijzing and declaraties from zorgaanbieders, a few declaraties of 1 MB.

Every message is a repository sample with its own Identificatie (TR056 refuses a reused one)
and referentienummer, wrapped in a StUF-GGk Di01 from the payload's Afzender to its Ontvanger,
so each one is new to the gateway and fully validated (XSD and every business rule).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lxml import etree

from gateway import envelope as env
from gateway import soap
from kit.messages import big_declaratie, compact

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

WEIGHTS: dict[str, float] = {
    "WMO301": 0.20,
    "JW301": 0.20,
    "WMO305": 0.06,
    "JW305": 0.06,
    "WMO307": 0.06,
    "JW307": 0.06,
    "WMO315": 0.04,
    "JW315": 0.04,
    "WMO323": 0.135,
    "JW323": 0.135,
    "WMO323-1MB": 0.005,
}
"""Shares of the mix (sum 1): toewijzingen 40 %, start/stop 24 %, verzoeken 8 %, declaraties
27.5 % and 0.5 % declaraties of 1 MB."""

RECEIVERS = ("0150", "0175", "12345678", "87654321")
"""Addressees the mix uses; the load runner delivers all of them to its sink."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    functie: str
    sender: str
    receiver: str
    body: bytes
    """The SOAP request (ggk_Di01)."""
    payload: bytes


@cache
def _template(kind: str) -> tuple[str, str, str, bytes]:
    """(functie, Afzender, Ontvanger, compact payload) of one kind in the mix."""
    if kind == "WMO323-1MB":
        payload = big_declaratie()
        kind = "WMO323"
    else:
        folder = "iwmo" if kind.startswith("WMO") else "ijw"
        payload = compact((SAMPLES / folder / f"{kind.lower()}.xml").read_bytes())
    if kind == "JW301":  # the sample addresses 12345678: use the other zorgaanbieder
        payload = payload.replace(b">12345678<", b">87654321<")
    root = etree.fromstring(payload)
    afzender = root.findtext("{*}Header/{*}Afzender") or ""
    ontvanger = root.findtext("{*}Header/{*}Ontvanger") or ""
    return kind, afzender, ontvanger, payload


def message(kind: str, n: int) -> Outgoing:
    """Message number ``n`` of ``kind``: its own Identificatie (12 characters) and
    referentienummer."""
    functie, sender, receiver, payload = _template(kind)
    original = etree.fromstring(payload).findtext(
        "{*}Header/{*}BerichtIdentificatie/{*}Identificatie"
    )
    assert original is not None
    unique = f"{functie[:3]}{n:09d}"[:12]
    payload = payload.replace(f">{original}<".encode(), f">{unique}<".encode(), 1)
    di01 = env.build_di01(
        payload,
        zender=sender,
        zender_applicatie="Bench",
        ontvanger=receiver,
        functie=functie,
        referentienummer=str(uuid.uuid4()),
    )
    return Outgoing(functie, sender, receiver, soap.wrap_request(di01), payload)


def draw(count: int, seed: int, start: int = 0) -> list[Outgoing]:
    """``count`` messages in the mix's proportions (shuffled, reproducible by ``seed``)."""
    rng = random.Random(seed)
    kinds = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=count)
    return [message(kind, start + i) for i, kind in enumerate(kinds)]
