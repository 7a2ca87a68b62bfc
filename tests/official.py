"""Official iStandaarden 3.2 material for conformance tests, when it is on this machine.

The project writes its own schemas and rules; the official XSDs and example messages are only
compared with, never shipped. Point ``GGK_OFFICIAL_DIR`` at an extracted copy of the public
``i-Sociaal-Lab/jaapjunior`` repository (or put one in ``.official/``):

    git --git-dir <mirror> archive HEAD packages/api/jw packages/api/wmo | tar -x -C .official

Those copies carry a markdown title line before some documents; :func:`xml_bytes` cuts it.
The official StUF-GGk bundles (``VNG-Realisatie/StUF-koppelvlak-iWmo-iJw``, docs/documenten)
go unzipped below ``.official/ggk/<zip name>/`` (tests/test_wsdl_clients.py).
Tests that need the material skip with this explanation when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_REASON = (
    "official iStandaarden 3.2 material absent: set GGK_OFFICIAL_DIR to an extracted "
    "i-Sociaal-Lab/jaapjunior tree (see tests/official.py)"
)
FOLDERS = {"ijw": "jw", "iwmo": "wmo"}


def official_root() -> Path | None:
    """The extracted tree, or None."""
    for candidate in (os.environ.get("GGK_OFFICIAL_DIR"), str(ROOT / ".official")):
        if candidate and (Path(candidate) / "packages/api/jw/bronnen/xsd").is_dir():
            return Path(candidate)
    return None


def xml_bytes(path: Path) -> bytes:
    """The first XML document in a file: some copies carry a markdown title line before it,
    and a few have a second document appended under another ``## name`` heading."""
    data = path.read_bytes()
    data = data[data.find(b"<") :]
    heading = data.find(b"\n## ")
    if heading >= 0:
        data = data[:heading]
    return data[: data.rfind(b">") + 1]


def xsd_dir(root: Path, standard: str, into: Path) -> Path:
    """The official XSDs of one standard, cleaned, in a folder the schema registry can load."""
    out = into / standard
    out.mkdir(parents=True, exist_ok=True)
    for xsd in (root / "packages/api" / FOLDERS[standard] / "bronnen/xsd").glob("*.xsd"):
        (out / xsd.name).write_bytes(xml_bytes(xsd))
    return out


def examples(root: Path) -> list[Path]:
    """Every official example message, iJw first."""
    found: list[Path] = []
    for folder in FOLDERS.values():
        found += sorted((root / "packages/api" / folder / "bronnen/berichten").glob("*.xml"))
    return found
