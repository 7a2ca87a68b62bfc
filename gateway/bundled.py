"""Where the bundled XSDs and WSDLs are: the top-level ``schemas/`` folder of a checkout, which
the wheel installs as the package ``ggk_schemas`` (see pyproject.toml). Found through
:mod:`importlib.resources`, so the gateway works from an installed wheel, outside the tree."""

from __future__ import annotations

import contextlib
import importlib.resources
from functools import cache
from pathlib import Path


class SchemasMissing(Exception):
    """No bundled schemas: a broken installation (the gateway must not start without them)."""


@cache
def schema_root() -> Path:
    """The folder holding ``iwmo/``, ``ijw/`` and ``stuf-ggk/``."""
    candidates: list[Path] = []
    with contextlib.suppress(ModuleNotFoundError):
        candidates.append(Path(str(importlib.resources.files("ggk_schemas"))))
    candidates.append(Path(__file__).resolve().parent.parent / "schemas")
    for candidate in candidates:
        if (candidate / "stuf-ggk").is_dir() and (candidate / "iwmo").is_dir():
            return candidate
    raise SchemasMissing(
        "the bundled schemas (ggk_schemas) are not installed; reinstall ggk-gateway"
    )


def stuf_ggk_dir() -> Path:
    """The StUF-GGk envelope XSDs and the OntvangAsynchroon WSDLs."""
    return schema_root() / "stuf-ggk"


WSDL_GENERATIONS = ("0210", "0310")
"""The envelope generations whose OntvangAsynchroon WSDL we publish (?wsdl=0210, ?wsdl=0310)."""


def ontvang_wsdl(generation: str = "0210") -> Path:
    """Our WSDL of OntvangAsynchroon for one envelope generation: ggk0210 (the current one, used
    by the stuf adapter and served at ?wsdl) or ggk0310 (the 0310 bundle's, ?wsdl=0310)."""
    if generation not in WSDL_GENERATIONS:
        raise ValueError(f"no WSDL for envelope generation {generation!r}")
    return stuf_ggk_dir() / f"ggk{generation}" / f"ggk{generation}_OntvangAsynchroon.wsdl"
