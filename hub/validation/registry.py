"""The schema registry: which message XSDs the hub accepts, from which day until which day.

`xsd/releases.toml` lists one [[release]] table per folder of XSDs (basisschema.xsd + one file per
message, named by message: WMO301.xsd). Loading compiles every XSD once; a document's root namespace
then finds its message type, release and compiled schema. Several releases of one standard can be
loaded at once, each with its acceptance window, so a switch-over is configuration (docs/validation.md).
"""

from __future__ import annotations

import queue
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from lxml import etree

from hub.domain.catalogue import CATALOGUE, BerichtType, Catalogue, Rol, Standaard

BASISSCHEMA = "basisschema.xsd"


class RegistryError(Exception):
    """The releases file or a schema folder is wrong; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class Release:
    standaard: Standaard
    release: str  # "3.2"
    folder: Path
    accepted_from: date
    accepted_until: date | None  # inclusive; None = open-ended
    modelled_by_project: bool
    # An official bundle that differs from the catalogue's defaults, by configuration alone:
    # BerichtCode per message name, and the message name of a file not named after its message.
    berichtcodes: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def versie(self) -> tuple[str, str]:
        """(BerichtVersie, BerichtSubversie) as written in headers: "3.2" -> ("3", "2")."""
        major, _, minor = self.release.partition(".")
        return major, minor or "0"

    def accepts(self, day: date) -> bool:
        return self.accepted_from <= day and (self.accepted_until is None or day <= self.accepted_until)

    @property
    def window(self) -> str:
        until = self.accepted_until.isoformat() if self.accepted_until else "further notice"
        return f"{self.accepted_from.isoformat()} until {until}"

    def __str__(self) -> str:
        return f"{self.standaard.value} {self.release}"


class _SchemaPool:
    """Compiled copies of one XSD, one per concurrent user.

    An lxml XMLSchema keeps its error log on the object, so two threads validating with the same object
    at once would mix their errors. A queue of copies needs no lock of our own: a thread takes a copy (or
    compiles a new one when all are in use) and puts it back, so the pool grows to the thread count.
    """

    def __init__(self, path: Path, first: etree.XMLSchema) -> None:
        self._path = path
        self._free: queue.SimpleQueue[etree.XMLSchema] = queue.SimpleQueue()
        self._free.put(first)

    def take(self) -> etree.XMLSchema:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return _compile(self._path)

    def give_back(self, schema: etree.XMLSchema) -> None:
        self._free.put(schema)


_KOP_FIELDS: dict[Rol, tuple[str, ...]] = {
    Rol.HEEN: (
        "BerichtCode", "BerichtVersie", "BerichtSubversie", "Afzender", "Ontvanger", "BerichtIdentificatie",
    ),
}
_KOP_FIELDS[Rol.RETOUR] = (*_KOP_FIELDS[Rol.HEEN], "IdentificatieRetour", "DagtekeningRetour")
_KOP_FIELDS[Rol.ANTWOORD] = (*_KOP_FIELDS[Rol.HEEN], "DeclaratieIdentificatie")


@dataclass(slots=True)
class SchemaEntry:
    """One message XSD of one release."""

    type: BerichtType
    release: Release
    namespace: str
    path: Path
    pool: _SchemaPool = field(repr=False)
    # Header fields at a position fixed by the XSD (all elements before them required and single), so a
    # schema-valid document's header can be read by index instead of by name: see header_positions().
    header_positions: dict[str, int] = field(default_factory=dict, repr=False)
    # (BerichtCode, BerichtVersie, BerichtSubversie) every header of this XSD must carry.
    expected_header: tuple[str, str, str] = field(default=("", "", ""), repr=False)
    # Positions of the Kop's header fields (heen: code, versie, subversie, afzender, ontvanger,
    # identificatie; + IdentificatieRetour, DagtekeningRetour for a retour; + DeclaratieIdentificatie
    # for an antwoord), or None when the XSD does not fix them all.
    header_slots: tuple[int, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        code = self.release.berichtcodes.get(self.type.naam, self.type.berichtcode)
        self.expected_header = (code, *self.release.versie)
        names, pos = _KOP_FIELDS[self.type.rol], self.header_positions
        self.header_slots = tuple(pos[n] for n in names) if all(n in pos for n in names) else None
    _explainer: Any = field(default=None, repr=False)
    _explainer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def explainer(self) -> Any:
        """An xmlschema.XMLSchema of this XSD, compiled on first use (~200 ms) and cached.

        Only for explaining errors in invalid documents: never on the path of a valid message.
        """
        if self._explainer is None:
            with self._explainer_lock:
                if self._explainer is None:
                    import xmlschema

                    self._explainer = xmlschema.XMLSchema10(str(self.path), allow="local")
        return self._explainer


def _xsd_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _compile(path: Path) -> etree.XMLSchema:
    try:
        return etree.XMLSchema(etree.parse(str(path), _xsd_parser()))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as exc:
        raise RegistryError(f"{path}: does not compile as an XML Schema: {exc}") from exc


_XS = "{http://www.w3.org/2001/XMLSchema}"


def _read_xsd(path: Path) -> etree._Element:
    try:
        return etree.parse(str(path), _xsd_parser()).getroot()
    except (etree.XMLSyntaxError, OSError) as exc:
        raise RegistryError(f"{path}: not readable as XML: {exc}") from exc


def _target_namespace(path: Path, xsd: etree._Element) -> str:
    tns = xsd.get("targetNamespace")
    if not tns:
        raise RegistryError(f"{path}: has no targetNamespace")
    return tns


def header_positions(xsd: etree._Element) -> dict[str, int]:
    """Name -> index of the Header's leading elements whose position every valid document shares.

    Walks the sequence of the complexType named Header until the first element that is optional,
    repeats, or is not a plain element; {} when the XSD has no such type (then names are looked up).
    """
    positions: dict[str, int] = {}
    for ctype in xsd.iterchildren(f"{_XS}complexType"):
        if ctype.get("name") != "Header":
            continue
        sequence = ctype.find(f"{_XS}sequence")
        if sequence is None:
            return {}
        index = 0
        for child in sequence:
            if not isinstance(child.tag, str) or child.tag == f"{_XS}annotation":
                continue
            if child.tag != f"{_XS}element" or child.get("minOccurs", "1") != "1" or child.get(
                "maxOccurs", "1"
            ) != "1" or not child.get("name"):
                break
            positions[str(child.get("name"))] = index
            index += 1
    return positions


def _date(table: dict[str, Any], key: str, where: str) -> date | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, date):  # TOML dates arrive as datetime.date already
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise RegistryError(f"{where}: {key} is not an ISO date: {value!r}") from exc


def _release(table: dict[str, Any], base: Path, where: str) -> Release:
    for key in ("standaard", "release", "folder", "accepted_from"):
        if key not in table:
            raise RegistryError(f"{where}: missing key {key!r}")
    try:
        standaard = Standaard(table["standaard"])
    except ValueError as exc:
        known = ", ".join(s.value for s in Standaard)
        raise RegistryError(f"{where}: unknown standaard {table['standaard']!r} (known: {known})") from exc
    accepted_from = _date(table, "accepted_from", where)
    assert accepted_from is not None
    accepted_until = _date(table, "accepted_until", where)
    if accepted_until is not None and accepted_until < accepted_from:
        raise RegistryError(f"{where}: accepted_until is before accepted_from")
    folder = (base / str(table["folder"])).resolve()
    if not folder.is_dir():
        raise RegistryError(f"{where}: folder {folder} does not exist")
    codes = _str_table(table, "berichtcodes", where)
    for naam, code in codes.items():
        if not code.isdigit():
            raise RegistryError(f"{where}: berichtcodes.{naam} must be digits, not {code!r}")
    return Release(
        standaard, str(table["release"]), folder, accepted_from, accepted_until,
        bool(table.get("modelled_by_project", False)), codes, _str_table(table, "files", where),
    )


def _str_table(table: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = table.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise RegistryError(f"{where}: {key} must be a table of strings")
    return {str(k): v for k, v in value.items()}


def _overlap(a: Release, b: Release) -> bool:
    a_end = a.accepted_until or date.max
    b_end = b.accepted_until or date.max
    return a.accepted_from <= b_end and b.accepted_from <= a_end


class SchemaRegistry:
    """Immutable after load; safe to share between threads."""

    def __init__(self, releases: tuple[Release, ...], entries: tuple[SchemaEntry, ...]) -> None:
        self.releases = releases
        self.entries = entries
        self._by_ns: dict[str, tuple[SchemaEntry, ...]] = {}
        for entry in entries:
            self._by_ns[entry.namespace] = (*self._by_ns.get(entry.namespace, ()), entry)

    @classmethod
    def load(cls, releases_toml: Path | str, catalogue: Catalogue = CATALOGUE) -> SchemaRegistry:
        path = Path(releases_toml)
        try:
            config = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegistryError(f"{path}: cannot read releases file: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(f"{path}: not valid TOML: {exc}") from exc
        tables = config.get("release")
        if not isinstance(tables, list) or not tables:
            raise RegistryError(f"{path}: no [[release]] tables")
        releases = tuple(
            _release(t, path.parent, f"{path} [[release]] #{i + 1}") for i, t in enumerate(tables)
        )
        entries: list[SchemaEntry] = []
        for rel in releases:
            entries.extend(_load_folder(rel, catalogue))
        _check_namespaces(entries)
        return cls(releases, tuple(entries))

    def candidates(self, namespace: str) -> tuple[SchemaEntry, ...]:
        """Every loaded XSD with this target namespace (one per release window); () when unknown."""
        return self._by_ns.get(namespace, ())

    def lookup(self, namespace: str, day: date) -> SchemaEntry | None:
        """The XSD for this namespace accepted on `day`, or None."""
        for entry in self._by_ns.get(namespace, ()):
            if entry.release.accepts(day):
                return entry
        return None

    def accepted_on(self, day: date) -> tuple[Release, ...]:
        """The releases accepted on `day`."""
        return tuple(r for r in self.releases if r.accepts(day))

    def namespaces(self) -> frozenset[str]:
        return frozenset(self._by_ns)


def _load_folder(rel: Release, catalogue: Catalogue) -> Iterator[SchemaEntry]:
    files = sorted(p for p in rel.folder.glob("*.xsd") if p.name != BASISSCHEMA)
    if not files:
        raise RegistryError(f"{rel.folder}: no message XSDs for {rel}")
    unknown = set(rel.files) - {p.name for p in files}
    if unknown:
        raise RegistryError(f"{rel.folder}: files named in the releases file are missing: {sorted(unknown)}")
    for xsd in files:
        try:
            berichttype = catalogue.get(rel.standaard, rel.files.get(xsd.name, xsd.stem).upper())
        except KeyError:
            raise RegistryError(
                f"{xsd}: no message {xsd.stem!r} in the catalogue for {rel.standaard.value}"
            ) from None
        tree = _read_xsd(xsd)
        yield SchemaEntry(
            berichttype, rel, _target_namespace(xsd, tree), xsd, _SchemaPool(xsd, _compile(xsd)),
            header_positions(tree),
        )


def _check_namespaces(entries: list[SchemaEntry]) -> None:
    """One namespace may be loaded twice only in releases whose windows do not overlap."""
    seen: dict[str, list[SchemaEntry]] = {}
    for entry in entries:
        for other in seen.get(entry.namespace, []):
            if _overlap(entry.release, other.release):
                raise RegistryError(
                    f"namespace {entry.namespace} is defined by both {other.path} ({other.release}, "
                    f"{other.release.window}) and {entry.path} ({entry.release}, {entry.release.window}) "
                    "in overlapping acceptance windows"
                )
        seen.setdefault(entry.namespace, []).append(entry)
