"""Mutations of valid messages that probe every simple type of the message schemas.

Each text-only element of a valid message gets a fixed set of replacement values (empty,
blanks, a line break, lengths around common limits, signs, decimals, dates that do not exist or
carry a zone, letters in numbers, …). Validating the results against two schema bundles shows
any behavioural difference of their types. ``tests/data/official_xsd_verdicts.json`` holds the
verdicts of the official XSDs, so the comparison runs on every machine; regenerate it where the
official material is present:

    GGK_OFFICIAL_DIR=… python -m tests.schema_mutations
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lxml import etree

from gateway.schemas import SchemaRegistry
from tests.official import ROOT, official_root, xsd_dir

VERDICTS = ROOT / "tests" / "data" / "official_xsd_verdicts.json"
VALUES: dict[str, str] = {
    "empty": "",
    "blank": "   ",
    "line-break": "Eerste regel\nTweede regel",
    "padded": "  x  ",
    "letters": "ABC",
    "digits-4": "1234",
    "digits-9": "123456789",
    "digits-13": "1234567890123",
    "text-21": "A" * 21,
    "text-201": "A" * 201,
    "negative": "-1",
    "decimal": "1.5",
    "zero": "0",
    "no-such-date": "2026-02-30",
    "date-with-zone": "2026-01-01Z",
    "time-with-zone": "10:00:00+01:00",
    "dotted-initials": "J.P.",
    "accented": "Ève",
}


def leaf_paths(root: etree._Element) -> Iterator[tuple[str, etree._Element]]:
    """(index-free local path, element) of every text-only element, first occurrence only."""
    seen: set[str] = set()
    for el in root.iter():
        if not isinstance(el.tag, str) or len(el) or el.text is None:
            continue
        steps = [etree.QName(a).localname for a in reversed(list(el.iterancestors()))]
        path = "/".join([*steps[1:], etree.QName(el).localname])
        if path not in seen:
            seen.add(path)
            yield path, el


def mutations(sample: Path) -> Iterator[tuple[str, bytes]]:
    """(key, document) for every leaf of the sample and every probe value."""
    tree = etree.parse(str(sample))
    for path, el in list(leaf_paths(tree.getroot())):
        original = el.text
        for name, value in VALUES.items():
            el.text = value
            yield f"{sample.parent.name}/{sample.stem}|{path}|{name}", etree.tostring(tree)
        el.text = original


def samples() -> list[Path]:
    return sorted((ROOT / "samples" / "iwmo").glob("*.xml")) + sorted(
        (ROOT / "samples" / "ijw").glob("*.xml")
    )


def verdicts(registry: SchemaRegistry, only: set[str] | None = None) -> dict[str, bool]:
    """XSD verdict of every mutation whose message the registry's bundle covers."""
    out: dict[str, bool] = {}
    for sample in samples():
        for key, data in mutations(sample):
            if only is not None and key not in only:
                continue
            doc = etree.fromstring(data)
            compiled = registry.get(etree.QName(doc).namespace or "")
            if compiled is None:
                continue
            out[key] = bool(compiled.xsd.validate(doc))
    return out


def official_registry(root: Path, into: Path) -> SchemaRegistry:
    """Only the official XSDs (both standards), none of ours."""
    return SchemaRegistry(
        [xsd_dir(root, "iwmo", into), xsd_dir(root, "ijw", into)], include_bundled=False
    )


def main() -> int:
    root = official_root()
    if root is None:
        print("official material absent: set GGK_OFFICIAL_DIR (see tests/official.py)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        found = verdicts(official_registry(root, Path(tmp)))
    VERDICTS.write_text(json.dumps(pack(found), indent=0, sort_keys=True) + "\n")
    print(f"wrote {len(found)} verdicts ({sum(found.values())} valid) to {VERDICTS}")
    return 0


def pack(found: dict[str, bool]) -> dict[str, str]:
    """Verdicts per ``sample|path`` as one character per probe value, in :data:`VALUES` order
    (``1`` valid, ``0`` invalid): 40 KB instead of 800."""
    packed: dict[str, str] = {}
    for leaf in sorted({key.rsplit("|", 1)[0] for key in found}):
        packed[leaf] = "".join("1" if found[f"{leaf}|{name}"] else "0" for name in VALUES)
    return packed


def unpack(packed: dict[str, str]) -> dict[str, bool]:
    return {
        f"{leaf}|{name}": flag == "1"
        for leaf, flags in packed.items()
        for name, flag in zip(VALUES, flags, strict=True)
    }


if __name__ == "__main__":
    sys.exit(main())
