"""Extract the official rule attachments of iWmo 3.2 and iJw 3.2 into a data file.

The official material (the public ``i-Sociaal-Lab/jaapjunior`` repository) says, per rule,
which messages it concerns, and for the conditions, constraints and restrictions also which
class (Berichtklasse) and element. This script reads it mechanically, so the catalogue can be
compared with it (``tests/test_attachments.py``) instead of with someone's reading:

- CD/CS/RS: the per-element tables, ``jw/…/Condities_constraints_per_data-element.md`` (one
  markdown section per rule and element, with a ``## Metadata`` list) and
  ``wmo/…/CD_CS_RS_per_dataelement`` (one markdown table);
- TR: the rule texts below ``regels/technische-regels/`` (``## Gebruik in berichten``), with the
  folder as the control level (xslt = in the message, berichtoverstijgend = across messages,
  externe bron = an external list).

Usage::

    python scripts/extract_rule_attachments.py [--git-dir MIRROR] [--out FILE]

``MIRROR`` is a bare git directory of the repository (the commit read is HEAD, recorded in the
output with the paths read). Only facts are written (ids, messages, classes, elements), in this
project's own format.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "official_rule_attachments.json"
DEFAULT_MIRROR = Path("/work/.mirror/i-Sociaal-Lab+jaapjunior/repo")
SOURCE = "i-Sociaal-Lab/jaapjunior"

TABLES = {
    "ijw": "packages/api/jw/bronnen/regels/condities-constraints/"
    "Condities_constraints_per_data-element.md",
    "iwmo": "packages/api/wmo/bronnen/regels/condities-constraints/ CD_CS_RS_per_dataelement",
}
RULE_TEXTS = {
    "ijw": "packages/api/jw/bronnen/regels/technische-regels",
    "iwmo": "packages/api/wmo/bronnen/regels/technische-regels",
}
TR_LEVELS = {"xslt": "message", "berichtoverstijgend": "across", "externe": "external"}
_TYPES = {"Conditie": "CD", "Constraint": "CS", "Restrictie": "RS"}
_RULE_ID = re.compile(r"^(CD|CS|RS|TR)\d{3}$")
_MESSAGE = re.compile(r"^(?:WMO|JW)(\d{3})$")
TYPOS = {"W<P307": "WMO307"}
"""Misspelt message names in the material, read as meant (wmo TR rule texts: ``W<P307``)."""


class Git:
    """Read files of one commit of a bare git directory."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self.commit = self._run("rev-parse", "HEAD").strip()

    def _run(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.git_dir), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def show(self, path: str) -> str:
        return self._run("show", f"{self.commit}:{path}")

    def files(self, under: str) -> list[str]:
        return self._run("ls-tree", "-r", "--name-only", self.commit, "--", under).splitlines()


def _message(raw: str) -> str:
    """``JW301`` → ``301``; ``JW Retour`` / ``WMO Retour`` → ``retour`` (every retourbericht)."""
    raw = TYPOS.get(raw.strip(), raw.strip())
    match = _MESSAGE.match(raw)
    if match:
        return match[1]
    if raw.endswith("Retour"):
        return "retour"
    raise ValueError(f"unknown message {raw!r}")


def _element(berichtelement: str, *cdt: str) -> str:
    """``Einddatum`` or ``Adres_Adres/LandCode_LandCode`` → ``Adres/LandCode``: the element
    names without the official ``_Type`` suffix, the composite parts after a slash."""
    parts = [p.strip() for p in (berichtelement, *cdt) if p.strip()]
    return "/".join(p.split("_")[0] for p in parts)


def ijw_table(text: str) -> list[dict[str, str]]:
    """The iJw per-element document: one ``# Regel`` section per (rule, message, element)."""
    rows: list[dict[str, str]] = []
    for section in re.split(r"^# Regel ", text, flags=re.M)[1:]:
        meta = dict(
            re.findall(
                r"^- (Regelcode|Type|Bericht|Berichtklasse|Element): (.+)$", section, flags=re.M
            )
        )
        if not {"Regelcode", "Type", "Bericht", "Berichtklasse", "Element"} <= set(meta):
            raise ValueError(f"section without full metadata: {section[:80]!r}")
        rows.append(
            {
                "rule": meta["Regelcode"].strip(),
                "message": _message(meta["Bericht"]),
                "class": meta["Berichtklasse"].strip(),
                "element": _element(meta["Element"]),
            }
        )
    return rows


def iwmo_table(text: str) -> list[dict[str, str]]:
    """The iWmo per-element document: one markdown table row per (rule, message, element)."""
    rows: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.startswith("| WMO"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        bericht, klasse, element, cdt1, cdt2, _key, _list, rule, _text, soort = cells[:10]
        if _TYPES.get(soort) != rule[:2]:
            raise ValueError(f"rule {rule} has type {soort!r}")
        rows.append(
            {
                "rule": rule,
                "message": _message(bericht),
                "class": klasse,
                "element": _element(element, cdt1, cdt2),
            }
        )
    return rows


def technical_rules(git: Git, standard: str) -> list[dict[str, object]]:
    """Every TR text of one standard: its messages and where the material files it."""
    out: list[dict[str, object]] = []
    for path in git.files(RULE_TEXTS[standard]):
        name = Path(path).name.removesuffix(".md")
        if not _RULE_ID.match(name):
            continue
        folder = Path(path).parent.name
        level = next(v for k, v in TR_LEVELS.items() if folder.startswith(k))
        text = git.show(path)
        block = re.search(r"^## Gebruik in berichten\s*$(.*?)^## ", text, flags=re.M | re.S)
        if block is None:
            raise ValueError(f"{path}: no 'Gebruik in berichten'")
        messages = sorted({_message(m) for m in re.findall(r"^- (\S+)\s*$", block[1], flags=re.M)})
        out.append({"rule": name, "kind": level, "messages": messages, "file": path})
    return out


def extract(git: Git) -> dict[str, object]:
    """The data file's content: source, commit, and the facts per standard."""
    attachments: list[dict[str, str]] = []
    technical: list[dict[str, object]] = []
    for standard, path in TABLES.items():
        text = git.show(path)
        rows = ijw_table(text) if standard == "ijw" else iwmo_table(text)
        for row in rows:
            if not _RULE_ID.match(row["rule"]):
                raise ValueError(f"{path}: odd rule id {row['rule']!r}")
            attachments.append({"standard": standard, **row})
        technical += [{"standard": standard, **r} for r in technical_rules(git, standard)]
    unique = {json.dumps(a, sort_keys=True): a for a in attachments}
    return {
        "source": SOURCE,
        "commit": git.commit,
        "files": sorted(TABLES.values()) + sorted(RULE_TEXTS.values()),
        "note": "Generated by scripts/extract_rule_attachments.py; do not edit by hand.",
        "attachments": sorted(
            unique.values(),
            key=lambda a: (a["standard"], a["rule"], a["message"], a["class"], a["element"]),
        ),
        "technical": sorted(technical, key=lambda t: (str(t["standard"]), str(t["rule"]))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-dir", type=Path, default=DEFAULT_MIRROR)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    data = extract(Git(args.git_dir))
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(data['attachments'])} attachments)")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
