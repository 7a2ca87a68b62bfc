"""The official code lists as data: names and validity of codes, with source and version.

The lists (iWmo/iJw 3.2 code lists, the Fo01 fault codes, the CBS gemeentecodes, the iWmo
hulpmiddelen product codes) ship in ``data/`` as this project's own JSON files, written by
scripts/make_codelists.py from the mirrored official lists. An operator replaces or adds a
list without a release: a file in the drop-in directory (``[codelists] directory``; ``ggk
codelists update``) replaces the bundled list of the same name. docs/codelists.md.

    from gateway.codelists import codelists
    cl = codelists()
    cl.name("iwmo-WMO020", "01")            # 'Hulp bij het huishouden'
    cl.valid_on("gemeentecodes", "0150", day)
    cl.source("gemeentecodes").version

:func:`configure` (at start-up) names the drop-in directory and loads eagerly, so a bad file
stops the start with a clear error instead of failing inside a request; :func:`codelists` is
then a cached look-up that never reads the disk again.
"""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import structlog

from gateway.codelists.files import CodeListError, load_file
from gateway.codelists.model import CodeList, Entry, Source
from gateway.codelists.registry import CodeLists, UnknownList, load
from gateway.standards import dutch_today

__all__ = [
    "CodeList",
    "CodeListError",
    "CodeLists",
    "Entry",
    "Source",
    "UnknownList",
    "codelists",
    "configure",
    "load_file",
]

log = structlog.get_logger("ggk.codelists")
_lock = threading.Lock()
_current: CodeLists | None = None
_directory: Path | None = None


def configure(directory: Path | None) -> CodeLists:
    """Use ``directory`` for drop-in lists from now on; loads and validates at once.

    Raises :class:`CodeListError` (a ValueError: ``ggk serve`` reports it as "cannot start")
    when a drop-in file is malformed; the lists in use are then unchanged.
    """
    global _current, _directory
    loaded = load(directory)
    with _lock:
        _current, _directory = loaded, directory
    log.info("codelists.loaded", lists=len(loaded.lists), replaced=sorted(loaded.replaced))
    stale = stale_gemeentecodes(loaded, dutch_today())
    if stale is not None:
        log.warning("codelists.stale", list="gemeentecodes", reason=stale)
    return loaded


def stale_gemeentecodes(lists: CodeLists, today: date) -> str | None:
    """Why the CBS list in use is older than this year's indeling, or None. Herindelingen take
    effect on 1 January: a list dated before it lacks the year's new gemeenten (TR378 would
    refuse them) until the operator installs the new list (docs/codelists.md)."""
    cl = lists.get("gemeentecodes")
    if cl is None or cl.source.date is None or cl.source.date.year >= today.year:
        return None
    return (
        f"the list is dated {cl.source.date}, before the indeling of 1 January {today.year}: "
        "install the current CBS list (ggk codelists update)"
    )


def codelists() -> CodeLists:
    """The lists in use (cached): bundled plus the configured drop-in directory."""
    global _current
    current = _current
    if current is not None:
        return current
    with _lock:
        if _current is None:
            _current = load(_directory)
        return _current
