"""The portal's languages: Dutch (the source text, gettext msgids) by default, English from a
Babel-managed gettext catalogue; times in Europe/Amsterdam; numbers and money as the
language writes them (``€ 1.234,56``).

Which language a request gets: the visitor's choice (the ``ggk-taal`` cookie, set by the
language switch on every page; a preference, not a secret), else the first language of
``Accept-Language`` the portal speaks, else Dutch.

The English catalogue is the committed ``locale/en/LC_MESSAGES/portal.po``, compiled in memory
when the portal starts (Babel's own compiler): the same code path from a source checkout and
from the wheel, with no build step to forget. ``docs/portal.md`` says how to extract and
update it; tests/test_portal_i18n.py keeps it in sync with the templates and the code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations

from gateway.standards import dutch_today

LANGUAGES = ("nl", "en")
"""What the portal speaks; the first is the default and the source language."""
DEFAULT = LANGUAGES[0]
LANG_COOKIE = "ggk-taal"
"""The visitor's chosen language: ``nl`` or ``en``, nothing else is read from it."""
LANG_COOKIE_SECONDS = 365 * 86400
ZONE = ZoneInfo("Europe/Amsterdam")
"""Every time on a page is Dutch time (the ``tzdata`` package when the system has none)."""
DOMAIN = "portal"
NAMES = {"nl": "Nederlands", "en": "English"}
"""Each language in its own words, as the switch offers it."""


@dataclass(frozen=True, slots=True)
class Language:
    """One language of the portal: its translations and its way of writing times, numbers
    and money."""

    code: str
    locale: Locale
    translations: NullTranslations

    def gettext(self, message: str) -> str:
        """The Dutch ``message`` in this language (itself in Dutch)."""
        return self.translations.ugettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.translations.ungettext(singular, plural, n)

    def when(self, value: object) -> str:
        """An epoch time as Dutch time, e.g. ``28 mei 2026 22:26:40``; ``-`` for none."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "-"
        moment = datetime.fromtimestamp(value, UTC)
        return format_datetime(moment, "d MMM y HH:mm:ss", tzinfo=ZONE, locale=self.locale)

    def day(self, value: object) -> str:
        """An ISO date (``2026-10-05``) as the language writes it (``5 okt 2026``); anything
        else as itself (a message's value is shown, never dropped)."""
        try:
            moment = date.fromisoformat(str(value))
        except ValueError:
            return str(value)
        return format_date(moment, "d MMM y", locale=self.locale)

    def euro(self, cents: object) -> str:
        """Eurocents as money (``€ 1.234,56``); anything else (``x``: not shown) as itself."""
        if not isinstance(cents, int) or isinstance(cents, bool):
            return str(cents)
        return format_currency(cents / 100, "EUR", locale=self.locale)

    def number(self, value: object) -> str:
        """A number with the language's grouping (``1.234``); anything else as itself."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return str(value)
        return format_decimal(value, locale=self.locale)


def catalogue(code: str) -> NullTranslations:
    """The translations of ``code``, compiled from its committed .po file (Dutch has none: its
    text is the msgids)."""
    if code == DEFAULT:
        return NullTranslations()
    source = resources.files("gateway.portal").joinpath(f"locale/{code}/LC_MESSAGES/{DOMAIN}.po")
    with source.open("rb") as po:
        messages = read_po(po, locale=code, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, messages)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


@cache
def language(code: str) -> Language:
    """The portal's language ``code`` (one of LANGUAGES), loaded once."""
    if code not in LANGUAGES:
        raise ValueError(f"the portal does not speak {code!r}")
    locale = Locale.parse("nl_NL" if code == "nl" else "en_GB")
    return Language(code, locale, catalogue(code))


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The language of a request: the chosen one (cookie), else the best of Accept-Language
    the portal speaks, else Dutch."""
    if cookie in LANGUAGES:
        return cookie
    return from_accept_language(accept_language or "") or DEFAULT


def from_accept_language(header: str) -> str | None:
    """The portal language a browser prefers most (``en-US,en;q=0.9,nl;q=0.8`` → ``en``), by
    q-value and then by order; None when it names none the portal speaks."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None


def today_in_amsterdam() -> str:
    """Today's date in Dutch time (YYYY-MM-DD): the date the validator checks against."""
    return dutch_today().isoformat()
