"""Reading a TOML table so that a misspelt key is refused, not silently ignored.

A loader reads its settings through a :class:`Table`; every key it asks for (``get``, ``[]``,
``in``, :meth:`Table.pick`) becomes a known key. When the loader has read everything,
:meth:`Table.done` refuses whatever the file holds beyond that, naming the nearest known key
(``max_mesage_bytes`` → ``max_message_bytes``). The known keys are therefore exactly what the
loader reads: there is no second list that could drift from it. A loader must read every key
it understands unconditionally (not only when another key has some value), or that key would
be refused when it is present.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Mapping
from typing import Any


class UnknownKey(ValueError):
    """A table holds a key its loader does not read; the message is one line."""


_MISSING: Any = object()


class Table:
    """One TOML table (``where`` names it in messages, e.g. ``[gateway]``, ``route #2``)."""

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise UnknownKey(f"{where} must be a table, not {type(raw).__name__}")
        self.raw: Mapping[str, Any] = raw
        self.where = where
        self.known: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.known.add(key)
        return self.raw.get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.known.add(key)
        return self.raw[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.known.add(key)
        return key in self.raw

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def table(self, key: str, where: str | None = None) -> Table:
        """The sub-table ``key`` (empty when absent), itself checked for unknown keys."""
        return Table(self.get(key, {}), where or f"[{key}]")

    def tables(self, key: str, label: str) -> list[Table]:
        """An array of tables (``[[route]]``): each entry is named ``label #n``."""
        entries = self.get(key, [])
        if not isinstance(entries, list):
            raise UnknownKey(f"{self.where}: {key} must be an array of tables ([[{key}]])")
        return [Table(entry, f"{label} #{i + 1}") for i, entry in enumerate(entries)]

    def pick(self, cls: type[Any]) -> dict[str, Any]:
        """The keys that are fields of dataclass ``cls`` (its constructor's keywords), read."""
        return {f.name: self.raw[f.name] for f in dataclasses.fields(cls) if f.name in self}

    def done(self) -> None:
        """Refuse the first key (in file order) that the loader did not read."""
        for key in self.raw:
            if key not in self.known:
                raise UnknownKey(f"{self.where}: {unknown(key, self.known)}")


def unknown(key: str, known: set[str]) -> str:
    """``unknown setting 'brokr' (did you mean 'broker'?)``, or the known ones when none is
    close."""
    near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    if near:
        return f"unknown setting {key!r} (did you mean {near[0]!r}?)"
    listed = ", ".join(sorted(known)) or "none"
    return f"unknown setting {key!r} (known: {listed})"
