"""The portal's languages without a server: the English catalogue translates every Dutch msgid
and is in sync with the templates and the code (nobody adds untranslated text); the language
a request gets; Dutch time, numbers and money; a Fo03 code for every one the code answers and
docs/errors.md lists."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from gateway.portal import explain, i18n
from gateway.portal.pages import templates

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "gateway" / "portal" / "locale" / "en" / "LC_MESSAGES" / "portal.po"


def _extracted() -> set[str | tuple[str, ...]]:
    """The msgids babel.cfg finds in the templates and the portal's code, as
    ``pybabel extract -F babel.cfg`` finds them."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)  # type: ignore[no-untyped-call]
    found: set[str | tuple[str, ...]] = set()
    for _, _, message, _, _ in extract_from_dir(str(ROOT), method_map, options_map):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def _catalogue() -> dict[str | tuple[str, ...], object]:
    with PO.open("rb") as po:
        catalogue = read_po(po)
    return {(m.id if isinstance(m.id, str) else tuple(m.id)): m for m in catalogue if m.id}


def test_the_english_catalogue_is_in_sync_with_the_templates_and_the_code() -> None:
    extracted, catalogued = _extracted(), set(_catalogue())
    assert len(extracted) > 150, "the extraction found (almost) nothing: babel.cfg broken?"
    missing = extracted - catalogued
    stale = catalogued - extracted
    assert not missing, f"not in portal.po (run the update of docs/portal.md): {missing}"
    assert not stale, f"in portal.po but no longer in the source: {stale}"


def test_every_msgid_has_an_english_translation() -> None:
    for msgid, message in _catalogue().items():
        string = message.string  # type: ignore[attr-defined]
        strings = string if isinstance(string, tuple) else (string,)
        assert all(s.strip() for s in strings), f"untranslated: {msgid!r}"
        assert "fuzzy" not in message.flags, f"fuzzy: {msgid!r}"  # type: ignore[attr-defined]
        # the same %(name)s placeholders on both sides (a missing one is an error at render)
        ids = msgid if isinstance(msgid, tuple) else (msgid,)
        wanted = set(re.findall(r"%\((\w+)\)s", ids[0]))
        for s in strings:
            assert set(re.findall(r"%\((\w+)\)s", s)) == wanted, msgid


def test_no_template_text_escapes_gettext() -> None:
    """A template's visible words are wrapped: without its gettext calls, trans blocks,
    tags and values, no words are left (but the command a hint shows as such)."""
    environment = templates().environments["en"]
    loader = environment.loader
    assert loader is not None
    for name in loader.list_templates():
        source = loader.get_source(environment, name)[0]
        text = re.sub(r"{% trans.*?{% endtrans %}", " ", source, flags=re.S)
        text = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", " ", text, flags=re.S)
        text = re.sub(r"<[^>]*>", " ", text)
        words = list(re.findall(r"[A-Za-zÀ-ÿ]{2,}", text))
        assert words == [] or set(words) <= {"ggk", "stats", "csv"}, (name, words)


def test_the_language_a_request_gets() -> None:
    assert i18n.choose(None, None) == "nl"
    assert i18n.choose(None, "en-US,en;q=0.9") == "en"
    assert i18n.choose(None, "de-DE,de;q=0.9,en;q=0.5,nl;q=0.7") == "nl"
    assert i18n.choose(None, "fr, de") == "nl"
    assert i18n.choose(None, "en;q=0, nl;q=0.1") == "nl"
    assert i18n.choose(None, "en;q=bogus, nl") == "nl"
    assert i18n.choose("en", "nl") == "en"  # chosen beats guessed
    assert i18n.choose("xx", "en") == "en"  # a cookie of nothing the portal speaks: ignored
    with pytest.raises(ValueError):
        i18n.language("de")


def test_dutch_time_numbers_and_money() -> None:
    nl, en = i18n.language("nl"), i18n.language("en")
    assert nl.euro(123456) == "€\xa01.234,56"
    assert en.euro(123456) == "€1,234.56"
    assert nl.euro("x") == "x"
    assert nl.number(1234567) == "1.234.567"
    # 2026-07-01 10:00 UTC is 12:00 summer time; 2026-01-01 10:00 UTC is 11:00 winter time
    assert nl.when(1782900000) == "1 jul 2026 12:00:00"
    assert nl.when(1767261600) == "1 jan 2026 11:00:00"
    assert en.when(1782900000) == "1 Jul 2026 12:00:00"
    assert nl.when(None) == "-"


def test_a_translated_template_escapes_its_values() -> None:
    environment = templates().environments["en"]
    page = environment.from_string(
        "{% trans name=x %}Uw browser toont het certificaat van <strong>{{ name }}</strong>."
        "{% endtrans %}"
    )
    assert page.render(x="<script>") == (
        "Your browser presents the certificate of <strong>&lt;script&gt;</strong>."
    )
    with pytest.raises(jinja2.UndefinedError):
        environment.get_template("inbox.html").render()


def _documented_codes() -> set[str]:
    text = (ROOT / "docs" / "errors.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    return {c for line in table for c in re.findall(r"`((?:StUF|IB|CC)\d{3})`", line)}


def _answered_codes() -> set[str]:
    found: set[str] = set()
    for folder in ("gateway", "adapters", "routing"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(re.findall(r"\"((?:StUF|IB|CC)\d{3})\"", path.read_text()))
    return found


def test_every_fo03_code_has_a_sentence_and_docs_and_code_agree() -> None:
    documented, answered = _documented_codes(), _answered_codes()
    assert answered - documented == set(), "answered but not in docs/errors.md"
    assert documented - answered == set(), "in docs/errors.md but never answered"
    assert set(explain.FO03) == answered
    english = i18n.language("en")
    for code in answered:
        dutch = explain.fo03(code)
        assert english.gettext(dutch) != dutch, code
