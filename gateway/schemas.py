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
    bericht_xsd_min: str | None = None
    """BerichtXsdMinVersie of the appinfo: the oldest XsdVersie a message may quote for it."""
    bericht_xsd_max: str | None = None
    """BerichtXsdMaxVersie of the appinfo: the newest XsdVersie a message may quote for it."""

    def accepts(self, versie: str) -> bool:
        """Whether a message quoting BerichtXsdVersie ``versie`` was made for this XSD: within
        BerichtXsdMinVersie..BerichtXsdMaxVersie, or equal to BerichtXsdVersie when the
        appinfo gives no range (the project's own XSDs)."""
        wanted = version_key(versie)
        low = version_key(self.bericht_xsd_min or self.bericht_xsd_versie or "")
        high = version_key(self.bericht_xsd_max or self.bericht_xsd_versie or "")
        return wanted is not None and low is not None and high is not None and low <= wanted <= high


def version_key(versie: str) -> tuple[int, ...] | None:
    """``1.10.0`` → (1, 10, 0), compared as numbers (RS048: three whole numbers with dots)."""
    parts = versie.strip().split(".")
    if not versie.strip() or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


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
        bericht_xsd_min=_appinfo(root, "BerichtXsdMinVersie"),
        bericht_xsd_max=_appinfo(root, "BerichtXsdMaxVersie"),
    )


def _xsd_files(directory: Path) -> Iterable[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() == ".xsd" and p.is_file())


class SchemaRegistry:
    """Message schemas keyed by target namespace; each compiled at most once, on first use.

    Directories added later take precedence for a namespace they share with an earlier one,
    so an operator's official bundle replaces the project's own schema of the same release.
    An onderhoudsrelease keeps the namespace (3.2.1 beside 3.2.0) but declares another
    BerichtXsdVersie: every version of a namespace is kept, and a message gets the one whose
    BerichtXsdMinVersie..MaxVersie range holds the XsdVersie it quotes (:meth:`get`).
    """

    def __init__(self, directories: Sequence[Path] = (), *, include_bundled: bool = True) -> None:
        self._files: dict[str, SchemaFile] = {}
        self._versions: dict[str, dict[str | None, SchemaFile]] = {}
        self._compiled: dict[Path, CompiledSchema] = {}
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
                versions = self._versions.setdefault(described.namespace, {})
                replaced = versions.pop(described.bericht_xsd_versie, None)
                versions[described.bericht_xsd_versie] = described
                if replaced is not None:
                    self._compiled.pop(replaced.path, None)
                self._compiled.pop(described.path, None)
            found.append(described)
        return found

    def namespaces(self) -> list[str]:
        return sorted(self._files)

    def file_for(self, namespace: str) -> SchemaFile | None:
        return self._files.get(namespace)

    def has_several(self, namespace: str) -> bool:
        """Whether more than one XsdVersie of a namespace is loaded (then the message's own
        XsdVersie must be read to choose; otherwise there is nothing to choose)."""
        return len(self._versions.get(namespace, ())) > 1

    def versions(self, namespace: str) -> list[SchemaFile]:
        """Every loaded XSD of a namespace (one per BerichtXsdVersie), in loading order."""
        return list(self._versions.get(namespace, {}).values())

    def choose(self, namespace: str, xsd_versie: str | None = None) -> SchemaFile | None:
        """The XSD of a namespace for a message quoting BerichtXsdVersie ``xsd_versie``: the
        one declaring exactly that version (the XSD the message was made with, IV034); else
        the default (loaded last) or the newest loaded one whose Min..MaxVersie range holds it;
        else the default, which IV034 then reports as not the message's own."""
        default = self._files.get(namespace)
        if xsd_versie is None or default is None:
            return default
        exact = self._versions.get(namespace, {}).get(xsd_versie.strip())
        if exact is not None:
            return exact
        fitting = [f for f in self.versions(namespace) if f.accepts(xsd_versie)]
        if not fitting:
            return default
        if default in fitting:
            return default
        return max(fitting, key=lambda f: version_key(f.bericht_xsd_versie or "") or ())

    def get(self, namespace: str, xsd_versie: str | None = None) -> CompiledSchema | None:
        """The compiled schema of a namespace (for a message quoting ``xsd_versie``, see
        :meth:`choose`), or None when no file declares the namespace."""
        described = self.choose(namespace, xsd_versie)
        if described is None:
            return None
        compiled = self._compiled.get(described.path)
        if compiled is not None:
            return compiled
        with self._lock:
            compiled = self._compiled.get(described.path)
            if compiled is None:
                compiled = CompiledSchema(described, _compile(described.path))
                self._compiled[described.path] = compiled
        return compiled

    def compile_all(self) -> int:
        """Compile every registered schema now (e.g. at gateway start); returns the count."""
        for namespace in self.namespaces():
            for described in self.versions(namespace):
                self.get(namespace, described.bericht_xsd_versie)
        return len(self._compiled)


def _compile(path: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(_CaseInsensitiveResolver())
    try:
        doc = etree.parse(str(path), parser)
        return etree.XMLSchema(doc)
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise SchemaError(f"{path}: cannot compile schema: {exc}") from None
