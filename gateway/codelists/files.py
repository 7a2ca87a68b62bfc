"""Reading and validating a code list file (the bundled data and an operator's drop-in).

The file format is JSON, one list per file (docs/codelists.md)::

    {"format": 1, "name": "ijw-JZ020", "id": "JZ020", "title": "Productcategorie",
     "standard": "ijw", "datatype": "LDT_ProductCategorie", "category": null,
     "source": {"repository": ..., "path": ..., "commit": ..., "url": ...},
     "version": "iJw 3.2", "date": "2017-10-01",
     "entries": [{"code": "45", "name": "Jeugdhulp ambulant",
                  "begin": "2015-01-01", "end": null, "details": {...}}]}

Only ``name`` and ``entries`` (each with ``code`` and ``name``) are required. Every problem is
reported as one :class:`CodeListError` naming the file and the place in it, never a traceback:
an operator's file is input, and a list that fails validation must not replace a good one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from types import MappingProxyType

from gateway.codelists.model import CodeList, Entry, Source

FORMAT = 1
MAX_FILE_BYTES = 8 * 1024 * 1024
"""The largest list file read: the CBS list is 40 kB, the biggest product code list far less."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
STANDARDS = ("iwmo", "ijw")
CODE = re.compile(r"[^\s\x00-\x1f]{1,64}")
MAX_TEXT = 4000


class CodeListError(ValueError):
    """A code list file that cannot be used: the message names the file and the fault."""


def load_file(path: Path, origin: str | None = None) -> CodeList:
    """Read and validate one list file; ``origin`` is what :class:`Source` records."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CodeListError(f"{path}: {size} bytes, more than the {MAX_FILE_BYTES} allowed")
        raw = path.read_bytes()
    except OSError as exc:
        raise CodeListError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse(raw, str(path), origin or str(path))


def parse(raw: bytes, where: str, origin: str) -> CodeList:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodeListError(f"{where}: not UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CodeListError(f"{where}: not JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise CodeListError(f"{where}: not JSON: nested too deeply") from None
    return from_document(doc, where, origin)


def from_document(doc: object, where: str, origin: str) -> CodeList:
    if not isinstance(doc, dict):
        raise CodeListError(f"{where}: the top level is not a JSON object")
    fmt = doc.get("format", FORMAT)
    if fmt != FORMAT:
        raise CodeListError(f"{where}: format {fmt!r} is not known (this gateway reads {FORMAT})")
    name = _text(doc, "name", where, required=True)
    assert name is not None
    if not NAME.fullmatch(name):
        raise CodeListError(
            f"{where}: name {name!r}: letters, digits, '-', '_', '.' (at most 64), "
            "starting with a letter or digit"
        )
    standard = _text(doc, "standard", where)
    if standard is not None and standard not in STANDARDS:
        raise CodeListError(f"{where}: standard {standard!r} is not one of {', '.join(STANDARDS)}")
    raw_source = doc.get("source") or {}
    if not isinstance(raw_source, dict):
        raise CodeListError(f"{where}: source is not an object")
    source = Source(
        origin=origin,
        repository=_text(raw_source, "repository", f"{where}: source"),
        path=_text(raw_source, "path", f"{where}: source"),
        commit=_text(raw_source, "commit", f"{where}: source"),
        url=_text(raw_source, "url", f"{where}: source"),
        version=_text(doc, "version", where),
        date=_date(doc, "date", where),
    )
    entries = doc.get("entries")
    if not isinstance(entries, list) or not entries:
        raise CodeListError(f"{where}: entries is not a non-empty list")
    seen: set[str] = set()
    parsed: list[Entry] = []
    for i, raw in enumerate(entries):
        at = f"{where}: entries[{i}]"
        if not isinstance(raw, dict):
            raise CodeListError(f"{at} is not an object")
        code = _text(raw, "code", at, required=True)
        assert code is not None
        if not CODE.fullmatch(code):
            raise CodeListError(f"{at}: code {code[:70]!r} is empty, too long or has spaces")
        if code in seen:
            raise CodeListError(f"{at}: code {code!r} is listed twice")
        seen.add(code)
        begin, end = _date(raw, "begin", at), _date(raw, "end", at)
        if begin and end and end < begin:
            raise CodeListError(f"{at}: code {code!r} ends ({end}) before it begins ({begin})")
        parsed.append(
            Entry(
                code,
                _text(raw, "name", at, required=True) or "",
                begin,
                end,
                _details(raw, at),
            )
        )
    return CodeList.build(
        name=name,
        id=_text(doc, "id", where) or name,
        title=_text(doc, "title", where) or name,
        standard=standard,
        datatype=_text(doc, "datatype", where),
        category=_text(doc, "category", where),
        source=source,
        entries=tuple(parsed),
    )


def to_document(cl: CodeList) -> dict[str, object]:
    """``cl`` in the file format: what :func:`from_document` reads back (``ggk codelists
    export``, the starting point of an operator's edited list)."""
    s = cl.source
    doc: dict[str, object] = {
        "format": FORMAT,
        "name": cl.name,
        "id": cl.id,
        "title": cl.title,
        "standard": cl.standard,
        "datatype": cl.datatype,
        "category": cl.category,
        "source": {"repository": s.repository, "path": s.path, "commit": s.commit, "url": s.url},
        "version": s.version,
        "date": s.date.isoformat() if s.date else None,
        "entries": [
            {
                key: value
                for key, value in (
                    ("code", e.code),
                    ("name", e.name),
                    ("begin", e.begin.isoformat() if e.begin else None),
                    ("end", e.end.isoformat() if e.end else None),
                    ("details", dict(e.details) or None),
                )
                if value is not None
            }
            for e in cl.entries
        ],
    }
    return doc


def _text(obj: Mapping[str, object], key: str, where: str, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise CodeListError(f"{where}: {key} is missing")
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise CodeListError(f"{where}: {key} is not a text of at most {MAX_TEXT} characters")
    if required and not value.strip():
        raise CodeListError(f"{where}: {key} is empty")
    return value


def _date(obj: Mapping[str, object], key: str, where: str) -> date | None:
    value = _text(obj, key, where)
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else _bad_date(value)
    except ValueError:
        raise CodeListError(f"{where}: {key} {value[:40]!r} is not a date (YYYY-MM-DD)") from None


def _bad_date(value: str) -> date:
    raise ValueError(value)


def _details(raw: Mapping[str, object], where: str) -> Mapping[str, str]:
    details = raw.get("details")
    if details is None:
        return MappingProxyType({})
    if not isinstance(details, dict):
        raise CodeListError(f"{where}: details is not an object")
    out: dict[str, str] = {}
    for key, value in details.items():
        if not isinstance(value, str) or len(value) > MAX_TEXT or len(key) > 200:
            raise CodeListError(f"{where}: details[{key[:40]!r}] is not a short text")
        out[key] = value
    return MappingProxyType(out)
