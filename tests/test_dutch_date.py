"""The iStandaarden's dates are dates in the Netherlands: the gateway checks a Dagtekening
against today's date there, not the host's (a host on UTC is a day behind from 22:00 or 23:00
UTC until midnight, and refused a Dagtekening of today as one in the future: TR135; the
portal's forms, which prefill Dutch dates, failed in that hour)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gateway import validation
from gateway.standards import DUTCH_TIME, dutch_today
from gateway.validation import Validator
from tests.conftest import SAMPLES


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_today_is_the_dutch_date_in_the_last_hours_of_a_utc_day() -> None:
    assert dutch_today(at("2026-12-06T22:59:59")) == date(2026, 12, 6)
    assert dutch_today(at("2026-12-06T23:00:00")) == date(2026, 12, 7)  # CET: UTC+1
    assert dutch_today(at("2026-07-01T21:59:59")) == date(2026, 7, 1)
    assert dutch_today(at("2026-07-01T22:00:00")) == date(2026, 7, 2)  # CEST: UTC+2


def test_the_validator_checks_a_dagtekening_against_the_dutch_date(
    monkeypatch: pytest.MonkeyPatch, validator: Validator
) -> None:
    """A JW305 whose Dagtekening lies after the date TR135 compares with is refused; the
    date is the Dutch one when the validator is not given one."""
    sample = (SAMPLES / "ijw" / "jw305.xml").read_bytes()
    dagtekening = sample.split(b"<ijw:Dagtekening>", 1)[1].split(b"<", 1)[0].decode()
    day = date.fromisoformat(dagtekening)
    registry = validator.registry
    checked = Validator(registry)  # no date given: the Dutch date at each call
    monkeypatch.setattr(validation, "dutch_today", lambda: day)
    assert checked.validate_payload(sample).report.valid
    monkeypatch.setattr(validation, "dutch_today", lambda: date.fromordinal(day.toordinal() - 1))
    refused = checked.validate_payload(sample).report
    assert "TR135" in {p.rule for p in refused.errors}, refused.errors


def test_tijdstip_bericht_is_dutch_local_time() -> None:
    """StUF's tijdstipBericht has no zone: the gateway writes the Netherlands' local time (a
    Bv03 at 23:30 UTC on 6 December says 00:30 on the 7th), whatever the host's zone."""
    from gateway import envelope as env

    written = env.tijdstip_now()
    dutch = datetime.now(DUTCH_TIME)
    parsed = datetime.strptime(written[:14], "%Y%m%d%H%M%S").replace(tzinfo=DUTCH_TIME)
    assert abs((dutch - parsed).total_seconds()) < 60, (written, dutch)
    winter = datetime(2026, 12, 6, 23, 30, tzinfo=UTC).astimezone(DUTCH_TIME)
    assert env.tijdstip_now(winter) == "20261207003000000"
