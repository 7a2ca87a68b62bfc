"""Write gateway/codelists/data/*.json from the official code lists mirrored in a git repository.

The iStandaarden code lists (iWmo/iJw 3.2: productcategorie, eenheid, frequentie, reden
beëindiging, retourcodes, …), the Fo01 fault code list and the CBS gemeentecodes are mirrored as
Markdown (and one JSON) in i-Sociaal-Lab/jaapjunior under packages/api/{jw,wmo}/bronnen/codelijsten.
This script reads them from a bare git directory at a given commit and writes the project's own
data files, one per list, each naming its source path and commit, so the shipped data can be
refreshed and its provenance checked. The facts (codes, names, dates) carry over; the files are
ours.

    python scripts/make_codelists.py [--git-dir DIR] [--commit REV] [--out DIR]

The written files are committed; the gateway never reads the mirror at run time.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GIT_DIR = Path("/work/.mirror/i-Sociaal-Lab+jaapjunior/repo")
REPOSITORY = "i-Sociaal-Lab/jaapjunior"
FOLDERS = {
    "ijw": "packages/api/jw/bronnen/codelijsten",
    "iwmo": "packages/api/wmo/bronnen/codelijsten",
}
FORMAT = 1

CODE_COLUMNS = ("code", "gemeentecode", "productcode", "foutcode", "berichtcode", "reden wijziging")
NAME_COLUMNS = (
    "omschrijving",
    "betekenis",
    "gemeentenaam",
    "omschrijving/indeling 2022",
    "omschrijving foutcode",
    "naam",
    "waarde",
    "berichttype",
)
BEGIN_COLUMNS = ("ingangsdatum",)
END_COLUMNS = ("expiratiedatum", "einddatum")
META_KEYS = ("veld", "eigenschap")

# Lists that are the same for both standards: written once, from the iJw folder (whose
# gemeentecodes metadata is consistent: peildatum 01-01-2026, the 2026 indeling it names).
SHARED = {"CBS": "gemeentecodes", "Fo01": "Fo01", "Foutcodelijst": "vecozo-foutcodes"}
SKIP = ("overzicht-codelijsten",)

# The element types of lists whose source does not name one (facts of the 3.2 XSDs, whose
# annotations name the list: schemas/*/3_2/basisschema.xsd).
DATATYPES = {
    "JZ020": "LDT_ProductCategorie",
    "WMO020": "LDT_ProductCategorie",
    "WJ756": "LDT_Eenheid",
    "CBS": "LDT_Gemeente",
    "COD002VEKTIS": "LDT_BerichtCode",
    "COD032": "LDT_LandCode",
}
# Where the source's metadata names the element differently from the XSD type.
DATATYPE_FIXES = {"LDT_GemeenteCode": "LDT_Gemeente", "LDT_Berichtcode": "LDT_BerichtCode"}


@dataclass
class Entry:
    code: str
    name: str
    begin: str | None = None
    end: str | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


def git(git_dir: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [c.strip() for c in inner.split("|")]


def tables(text: str) -> list[Table]:
    """Every Markdown table in ``text`` (header row, separator row, body rows)."""
    found: list[Table] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and re.fullmatch(r"[\s|:\-]+", block[1]):
            found.append(Table(cells(block[0]), [cells(b) for b in block[2:]]))
        block = []
    return found


def dutch_date(value: str) -> str | None:
    """dd-mm-yyyy → ISO; None for anything else (nvt, empty)."""
    m = re.fullmatch(r"(\d{2})-(\d{2})-(\d{4})", value.strip())
    if not m:
        return None
    return date(int(m[3]), int(m[2]), int(m[1])).isoformat()


def metadata(found: list[Table]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for t in found:
        if t.header and t.header[0].lower() in META_KEYS:
            for row in t.rows:
                if len(row) >= 2 and row[0]:
                    meta.setdefault(row[0].lower(), row[1])
    return meta


def entries_from_tables(found: list[Table]) -> list[Entry]:
    """The code tables' rows; a code listed in several tables (WJ001 per message group) is
    one entry whose details join the distinct values."""
    out: dict[str, Entry] = {}
    for t in found:
        head = [h.lower() for h in t.header]
        if not head or head[0] in META_KEYS:
            continue
        code_col = next((head.index(n) for n in CODE_COLUMNS if n in head), None)
        if code_col is None:
            continue
        name_col = next(
            (head.index(n) for n in NAME_COLUMNS if n in head), 1 if code_col == 0 else 0
        )
        begin_col = next((head.index(n) for n in BEGIN_COLUMNS if n in head), None)
        end_col = next((head.index(n) for n in END_COLUMNS if n in head), None)
        for row in t.rows:
            row = row + [""] * (len(head) - len(row))
            code = row[code_col].strip().strip("`")
            if not code:
                continue
            details = {
                t.header[i]: row[i]
                for i in range(len(head))
                if i not in (code_col, name_col, begin_col, end_col)
                and row[i]
                and row[i] not in ("—", "-")
            }
            entry = Entry(
                code,
                row[name_col],
                dutch_date(row[begin_col]) if begin_col is not None else None,
                dutch_date(row[end_col]) if end_col is not None else None,
                details,
            )
            if code not in out:
                out[code] = entry
                continue
            known = out[code]
            for key, value in details.items():
                parts = [p.strip() for p in known.details.get(key, "").split(",") if p.strip()]
                for p in value.split(","):
                    if p.strip() and p.strip() not in parts:
                        parts.append(p.strip())
                known.details[key] = ", ".join(parts)
    return list(out.values())


def list_id(stem: str) -> str:
    """The list's id from its file name (WMO002_…): the metadata's own id has typos (WM002)."""
    return stem.split("_")[0].split(" ")[0]


def source_url(meta: dict[str, str]) -> str | None:
    m = re.search(r"https?://[^\s)|]+", meta.get("bron", ""))
    return m[0].rstrip("/") + "/" if m else None


def write(out_dir: Path, doc: dict[str, object]) -> None:
    path = out_dir / f"{doc['name']}.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def document(
    *,
    name: str,
    list_id_: str,
    title: str,
    standard: str | None,
    datatype: str | None,
    path: str,
    commit: str,
    url: str | None,
    version: str | None,
    day: str | None,
    entries: list[Entry],
    category: str | None = None,
) -> dict[str, object]:
    doc: dict[str, object] = {
        "format": FORMAT,
        "name": name,
        "id": list_id_,
        "title": title,
        "standard": standard,
        "datatype": datatype,
        "source": {"repository": REPOSITORY, "path": path, "commit": commit, "url": url},
        "version": version,
        "date": day,
    }
    if category is not None:
        doc["category"] = category
    doc["entries"] = [
        {
            k: v
            for k, v in (
                ("code", e.code),
                ("name", e.name),
                ("begin", e.begin),
                ("end", e.end),
                ("details", e.details or None),
            )
            if v is not None
        }
        for e in entries
    ]
    return doc


def title_of(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""


def hulpmiddelen(text: str, *, path: str, commit: str, out_dir: Path, names: list[str]) -> None:
    """The iWmo hulpmiddelen indeling (2022): one product code list per category (11, 12, 13),
    the category being the code's first two digits ("Codering: 11 X 00")."""
    per_category: dict[str, list[Entry]] = {}
    for e in entries_from_tables(tables(text)):
        per_category.setdefault(e.code[:2], []).append(e)
    for category, entries in sorted(per_category.items()):
        name = f"iwmo-productcodes-{category}"
        write(
            out_dir,
            document(
                name=name,
                list_id_="productcodes",
                title=f"Productcodes categorie {category} (indeling hulpmiddelen iWmo 2022)",
                standard="iwmo",
                datatype="LDT_ProductCode",
                path=path,
                commit=commit,
                url=None,
                version="indeling 2022 (20220105)",
                day="2022-01-05",
                entries=entries,
                category=category,
            ),
        )
        names.append(name)


def country_list(text: str) -> tuple[dict[str, str], list[Entry]]:
    data = json.loads(text)
    body = data["codelijst"]
    meta = {
        "id": body["id"],
        "naam": body["naam"],
        "bron": body.get("Bron-link", ""),
        "standaard": f"{data.get('standaard', '')} {data.get('versie', '')}".strip(),
    }
    return meta, [Entry(c["code"], c["omschrijving"]) for c in body["codes"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-dir", type=Path, default=DEFAULT_GIT_DIR)
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--out", type=Path, default=ROOT / "gateway" / "codelists" / "data")
    args = parser.parse_args(argv)
    commit = git(args.git_dir, "rev-parse", args.commit).strip()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.json"):
        old.unlink()
    names: list[str] = []
    for standard, folder in FOLDERS.items():
        listing = git(args.git_dir, "ls-tree", "-r", "--name-only", "-z", commit, folder)
        for path in sorted(p for p in listing.split("\0") if p):
            stem = path.rsplit("/", 1)[1].removesuffix(".md").removesuffix(".json")
            if stem.startswith(SKIP):
                continue
            text = git(args.git_dir, "show", f"{commit}:{path}")
            if "hulpmiddelen" in stem:
                hulpmiddelen(text, path=path, commit=commit, out_dir=args.out, names=names)
                continue
            if path.endswith(".json"):
                meta, entries = country_list(text)
            else:
                found = tables(text)
                meta, entries = metadata(found), entries_from_tables(found)
            if not entries:
                print(f"no code table in {path}: skipped", file=sys.stderr)
                continue
            ident = list_id(stem)
            key = stem.split("_")[0]
            shared = SHARED.get(key)
            if shared is not None and standard != "ijw":
                continue
            name = shared or f"{standard}-{ident}"
            datatype = meta.get("element") or meta.get("gegevenselement") or DATATYPES.get(key)
            datatype = DATATYPE_FIXES.get(datatype or "", datatype)
            day = dutch_date(meta.get("peildatum", "")) or dutch_date(
                meta.get("laatst bijgewerkt", "")
            )
            version = meta.get("standaard") or (
                f"{meta.get('domein', '')} {meta.get('versie', '')}".strip() or None
            )
            if shared == "gemeentecodes":
                version = f"CBS gemeentelijke indeling per {day}" if day else "CBS"
            elif shared is not None:
                m = re.search(r"Laatste update:\s*(.+)", text)
                version = m[1].strip() if m else None
            write(
                args.out,
                document(
                    name=name,
                    list_id_=ident if shared is None else key,
                    title=meta.get("naam") or title_of(text),
                    standard=None if shared else standard,
                    datatype=datatype.strip("`") if datatype else None,
                    path=path,
                    commit=commit,
                    url=source_url(meta),
                    version=version,
                    day=day,
                    entries=entries,
                ),
            )
            names.append(name)
    print(f"wrote {len(names)} lists to {args.out}: {', '.join(sorted(names))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
