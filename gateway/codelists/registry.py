"""The set of code lists in use: the bundled lists, each replaced by an operator's drop-in
list of the same name, and look-ups by list name, by element type and by product category."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from gateway.codelists.files import CodeListError, load_file, parse
from gateway.codelists.model import CodeList, Entry, Source

PRODUCTCODES = re.compile(r"(iwmo|ijw)-productcodes-(\w{1,2})")


class UnknownList(KeyError):
    """A list name that neither the bundled data nor the drop-in directory has."""


@dataclass(frozen=True, slots=True, eq=False)
class CodeLists:
    """Every list by name. ``replaced`` names the bundled lists a drop-in file replaced."""

    lists: Mapping[str, CodeList]
    replaced: frozenset[str] = frozenset()
    directory: Path | None = None
    _by_type: Mapping[tuple[str | None, str], str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    _by_category: Mapping[tuple[str, str], CodeList] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )

    @classmethod
    def of(
        cls, lists: Mapping[str, CodeList], replaced: frozenset[str], directory: Path | None
    ) -> CodeLists:
        by_type: dict[tuple[str | None, str], str] = {}
        by_category: dict[tuple[str, str], CodeList] = {}
        for cl in sorted(lists.values(), key=lambda c: c.name):
            named = PRODUCTCODES.fullmatch(cl.name)
            if named is not None:  # the name says it: <standard>-productcodes-<category>
                by_category[(named[1], named[2])] = cl
            elif cl.datatype and cl.category is None:
                by_type.setdefault((cl.standard, cl.datatype), cl.name)
        return cls(
            MappingProxyType(dict(lists)),
            replaced,
            directory,
            MappingProxyType(by_type),
            MappingProxyType(by_category),
        )

    def __iter__(self) -> Iterator[CodeList]:
        return iter(sorted(self.lists.values(), key=lambda c: c.name))

    def names(self) -> list[str]:
        return sorted(self.lists)

    def get(self, list_name: str) -> CodeList | None:
        return self.lists.get(list_name)

    def entry(self, list_name: str, code: str) -> Entry | None:
        """The code's entry; None when the list or the code is not known."""
        cl = self.lists.get(list_name)
        return cl.entry(code) if cl is not None else None

    def name(self, list_name: str, code: str) -> str | None:
        """What the code means (``Hulp bij het huishouden``); None when not known."""
        e = self.entry(list_name, code)
        return e.name if e is not None else None

    def valid_on(self, list_name: str, code: str, day: date) -> bool:
        """Whether the list has the code and it is valid on ``day``; False for an unknown list."""
        e = self.entry(list_name, code)
        return e is not None and e.valid_on(day)

    def source(self, list_name: str) -> Source:
        cl = self.lists.get(list_name)
        if cl is None:
            raise UnknownList(list_name)
        return cl.source

    def for_type(self, standard: str | None, datatype: str) -> CodeList | None:
        """The list coding an XSD type in a standard (``ijw``, ``LDT_ProductCategorie`` →
        ``ijw-JZ020``), or the list both standards share (``LDT_Gemeente``)."""
        name = self._by_type.get((standard, datatype)) or self._by_type.get((None, datatype))
        return self.lists.get(name) if name else None

    def productcodes(self, standard: str, category: str) -> CodeList | None:
        """The product code list of one ProductCategorie (the list named
        ``<standard>-productcodes-<category>``), if the gateway has one."""
        return self._by_category.get((standard, category))

    def productcode_categories(self, standard: str) -> frozenset[str]:
        """The categories of ``standard`` that have a product code list (TR381 reads only
        their products)."""
        return frozenset(c for s, c in self._by_category if s == standard)


@cache
def bundled() -> Mapping[str, CodeList]:
    """The lists shipped in the package (gateway/codelists/data, scripts/make_codelists.py);
    read once per process (every start of an in-process gateway would parse them again)."""
    out: dict[str, CodeList] = {}
    folder = resources.files("gateway.codelists") / "data"
    for item in folder.iterdir():
        if item.name.endswith(".json"):
            cl = parse(item.read_bytes(), f"bundled {item.name}", "bundled")
            out[cl.name] = cl
    return MappingProxyType(out)


def drop_ins(directory: Path) -> dict[str, CodeList]:
    """The operator's lists: every ``*.json`` in the directory (none when it does not exist).
    A list's name is the one inside the file; two files with one name are refused."""
    if not directory.exists():
        return {}
    if not directory.is_dir():
        raise CodeListError(f"{directory}: the code list directory is not a directory")
    out: dict[str, CodeList] = {}
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix == ".json")
    except OSError as exc:
        raise CodeListError(f"{directory}: cannot list: {exc.strerror or exc}") from None
    for path in files:
        if path.name.startswith("."):
            continue  # an update's temporary file
        cl = load_file(path)
        if cl.name in out:
            raise CodeListError(f"{path}: list {cl.name!r} is also in {out[cl.name].source.origin}")
        out[cl.name] = cl
    return out


def load(directory: Path | None) -> CodeLists:
    """The bundled lists with the drop-in directory's lists over them."""
    lists = dict(bundled())
    extra = drop_ins(directory) if directory is not None else {}
    replaced = frozenset(name for name in extra if name in lists)
    lists.update(extra)
    return CodeLists.of(lists, replaced, directory)
