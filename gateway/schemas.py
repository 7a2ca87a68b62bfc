"""Schema registry: finds XSD bundles, keys them by target namespace, compiles each once.

Official iStandaarden bundles can be dropped into an extra directory unchanged. Two of their
quirks are handled here rather than by editing files: message XSDs import
``schemaLocation="basisschema.xsd"`` while the file may be shipped as ``Basisschema.xsd``
(resolved case-insensitively within the importing folder), and releases live side by side
(3.1 and 3.2 are different namespaces, so both can be loaded at once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from lxml import etree

from gateway.bundled import schema_root
from gateway.standards import NamespaceInfo, parse_namespace
from gateway.xmlsafe import parse_trusted_file

XS = "http://www.w3.org/2001/XMLSchema"


class SchemaError(Exception):
    """A schema file that cannot be read or compiled; names the file and the reason."""


@dataclass(frozen=True, slots=True)
class SchemaFile:
    """A message XSD found on disk (one that declares a global element)."""

    path: Path
    namespace: str
    info: NamespaceInfo | None
    bericht_xsd_versie: str | None
    basisschema_xsd_versie: str | None


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A compiled XSD plus the appinfo versions a message must quote in XsdVersie (IV034)."""

    file: SchemaFile
    xsd: etree.XMLSchema

    @property
    def namespace(self) -> str:
        return self.file.namespace


class _CaseInsensitiveResolver(etree.Resolver):
    """Resolve an include/import whose file name differs only in case (2.1 quirk)."""

    def resolve(  # type: ignore[override]  # lxml-stubs omit the context argument
        self, system_url: str, public_id: str, context: object
    ) -> object:
        parsed = urlparse(system_url)
        if parsed.scheme not in ("", "file"):
            return None  # left to the parser, which has network access switched off
        wanted = Path(unquote(parsed.path))
        if wanted.exists() or not wanted.parent.is_dir():
            return None
        for candidate in wanted.parent.iterdir():
            if candidate.name.lower() == wanted.name.lower():
                return self.resolve_filename(str(candidate), context)  # type: ignore[attr-defined]
        return None


def _appinfo(root: etree._Element, name: str) -> str | None:
    for el in root.iterfind(f"{{{XS}}}annotation/{{{XS}}}appinfo/*"):
        if etree.QName(el).localname == name and el.text:
            return el.text.strip()
    return None


def read_schema_file(path: Path) -> SchemaFile | None:
    """Describe one XSD; None if it declares no global element (e.g. a basisschema)."""
    try:
        root = parse_trusted_file(str(path)).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise SchemaError(f"{path}: cannot read schema: {exc}") from None
    if root.tag != f"{{{XS}}}schema":
        raise SchemaError(f"{path}: not an XML Schema (root element is {root.tag})")
    if root.find(f"{{{XS}}}element") is None:
        return None
    namespace = root.get("targetNamespace", "")
    return SchemaFile(
        path=path,
        namespace=namespace,
        info=parse_namespace(namespace),
        bericht_xsd_versie=_appinfo(root, "BerichtXsdVersie"),
        basisschema_xsd_versie=_appinfo(root, "BasisschemaXsdVersie"),
    )


def _xsd_files(directory: Path) -> Iterable[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() == ".xsd" and p.is_file())


class SchemaRegistry:
    """Message schemas keyed by target namespace; each compiled at most once, on first use.

    Directories added later take precedence for a namespace they share with an earlier one,
    so an operator's official bundle replaces the project's own schema of the same release.
    """

    def __init__(self, directories: Sequence[Path] = (), *, include_bundled: bool = True) -> None:
        self._files: dict[str, SchemaFile] = {}
        self._compiled: dict[str, CompiledSchema] = {}
        self._lock = threading.Lock()
        if include_bundled:  # the project's own XSDs (schemas/iwmo, schemas/ijw)
            for sub in ("iwmo", "ijw"):
                self.add_directory(schema_root() / sub)
        for directory in directories:
            self.add_directory(directory)

    def add_directory(self, directory: Path) -> list[SchemaFile]:
        """Register every message XSD below ``directory``; returns what was found."""
        if not directory.is_dir():
            raise SchemaError(f"{directory}: not a directory")
        found = []
        for path in _xsd_files(directory):
            described = read_schema_file(path)
            if described is None:
                continue
            with self._lock:
                self._files[described.namespace] = described
                self._compiled.pop(described.namespace, None)
            found.append(described)
        return found

    def namespaces(self) -> list[str]:
        return sorted(self._files)

    def file_for(self, namespace: str) -> SchemaFile | None:
        return self._files.get(namespace)

    def get(self, namespace: str) -> CompiledSchema | None:
        """The compiled schema of a namespace, or None when no file declares it."""
        compiled = self._compiled.get(namespace)
        if compiled is not None:
            return compiled
        described = self._files.get(namespace)
        if described is None:
            return None
        with self._lock:
            compiled = self._compiled.get(namespace)
            if compiled is None:
                compiled = CompiledSchema(described, _compile(described.path))
                self._compiled[namespace] = compiled
        return compiled

    def compile_all(self) -> int:
        """Compile every registered schema now (e.g. at gateway start); returns the count."""
        for namespace in self.namespaces():
            self.get(namespace)
        return len(self._compiled)


def _compile(path: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(_CaseInsensitiveResolver())
    try:
        doc = etree.parse(str(path), parser)
        return etree.XMLSchema(doc)
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise SchemaError(f"{path}: cannot compile schema: {exc}") from None
