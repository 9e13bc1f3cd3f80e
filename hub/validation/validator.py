"""Validate one document: safe parse, message type and release, header, XSD, header facts.

The path of a valid message is kept lean (it runs for every message the hub receives): one parse,
a dict look-up, one pass over the Header's children and one lxml schema validation. Everything that
explains an error runs only for invalid documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from lxml import etree

from hub.domain.bericht import Bericht, BerichtIdentificatie, Fout, Kop, Validatie
from hub.domain.catalogue import BerichtType, Rol
from hub.domain.errors import ErrorCode
from hub.validation.explain import SchemaError, explain
from hub.validation.registry import SchemaEntry, SchemaRegistry
from hub.validation.safe_xml import DEFAULT_MAX_BYTES, Limits, SafeParser, XmlRefused

_MAX_NS_IN_REASON = 200


class Validator:
    """Thread-safe: parsers and compiled schemas are never used by two threads at once."""

    def __init__(
        self, registry: SchemaRegistry, *, max_bytes: int = DEFAULT_MAX_BYTES, limits: Limits | None = None,
    ) -> None:
        self.registry = registry
        self._parser = SafeParser(limits or Limits(max_bytes=max_bytes))

    def validate(self, data: bytes, *, on: date | None = None) -> Validatie:
        """The verdict on `data` as received on `on` (default: today)."""
        try:
            root = self._parser.parse(data, check_tree=False)
        except XmlRefused as refused:
            return Validatie(None, refused.code, (Fout(refused.reason, refused.line),))
        tag = root.tag
        namespace, _, local = tag[1:].partition("}") if tag[:1] == "{" else ("", "", tag)
        if local != "Bericht" or not namespace:
            return self._refuse(
                root, data, ErrorCode.UNKNOWN_MESSAGE,
                "the root element must be Bericht in the namespace of an iStandaarden message",
            )
        day = on or date.today()
        entry = self.registry.lookup(namespace, day)
        if entry is None:
            return self._not_accepted(root, data, namespace, day)

        header = _header(root)
        mismatch = _header_mismatch(entry, header)
        if mismatch:
            return self._refuse(
                root, data, ErrorCode.HEADER_MISMATCH, mismatch, entry, path="/Bericht/Header",
                kop=_kop(entry.type, header),
            )

        schema = entry.pool.take()
        try:
            if schema.validate(root):
                return _valid(entry, header)
            # Copied before the schema goes back to the pool: its error log belongs to the next user.
            log: Iterable[etree._LogEntry] = schema.error_log  # type: ignore[assignment]
            errors = [SchemaError(e.line, e.type_name, e.path, e.message) for e in log]
        finally:
            entry.pool.give_back(schema)
        return self._invalid(root, data, entry, header, errors)

    def _refuse(
        self, root: etree._Element, data: bytes, code: ErrorCode, reason: str,
        entry: SchemaEntry | None = None, *, path: str | None = None, kop: Kop | None = None,
    ) -> Validatie:
        try:
            self._parser.check_tree(root, data)  # only now: see safe_xml's module docstring
        except XmlRefused as refused:
            return Validatie(None, refused.code, (Fout(refused.reason),))
        return Validatie(
            None, code, (Fout(reason, None, path),),
            type=entry.type if entry else None, release=entry.release.release if entry else None, kop=kop,
        )

    def _not_accepted(self, root: etree._Element, data: bytes, namespace: str, day: date) -> Validatie:
        known = self.registry.candidates(namespace)
        if not known:
            return self._refuse(
                root, data, ErrorCode.UNKNOWN_MESSAGE,
                f"namespace {namespace[:_MAX_NS_IN_REASON]} names no message type the hub knows",
            )
        entry = known[0]
        standaard = entry.type.standaard
        accepted = [str(r) for r in self.registry.accepted_on(day) if r.standaard is standaard]
        windows = "; ".join(f"{e.release} from {e.release.window}" for e in known)
        now = (
            f"on {day.isoformat()} the hub accepts {', '.join(accepted)}"
            if accepted else f"on {day.isoformat()} the hub accepts no {standaard.value} release"
        )
        reason = f"{entry.type.naam} of {windows} is not accepted on this date; {now}"
        kop = _kop(entry.type, _header(root))
        return self._refuse(root, data, ErrorCode.RELEASE_NOT_ACCEPTED, reason, entry, kop=kop)

    def _invalid(
        self, root: etree._Element, data: bytes, entry: SchemaEntry, header: dict[str, etree._Element],
        errors: list[SchemaError],
    ) -> Validatie:
        try:
            self._parser.check_tree(root, data)
        except XmlRefused as refused:
            return Validatie(None, refused.code, (Fout(refused.reason),))
        fouts = explain(root, errors, entry.explainer, len(data))
        return Validatie(
            None, ErrorCode.SCHEMA_INVALID, fouts, type=entry.type, release=entry.release.release,
            kop=_kop(entry.type, header),
        )


def _valid(entry: SchemaEntry, header: dict[str, etree._Element]) -> Validatie:
    kop = _kop(entry.type, header)
    if kop is None:  # the schema requires every field _kop reads; only a broken XSD gets here
        return Validatie(
            None, ErrorCode.SCHEMA_INVALID,
            (Fout("the header lacks fields the hub needs (the message schema is too lenient)",
                  None, "/Bericht/Header"),),
            type=entry.type, release=entry.release.release,
        )
    return Validatie(Bericht(entry.type, entry.release.release, kop))


def _header(root: etree._Element) -> dict[str, etree._Element]:
    """The Header's child elements by local name; {} when there is no Header first."""
    if not len(root):
        return {}
    header = root[0]
    tag = header.tag
    if not isinstance(tag, str) or not tag.endswith("}Header"):
        return {}
    fields: dict[str, etree._Element] = {}
    for child in header:
        tag = child.tag
        if isinstance(tag, str):
            fields[tag[tag.rfind("}") + 1:]] = child
    return fields


def _text(header: dict[str, etree._Element], name: str) -> str | None:
    el = header.get(name)
    return el.text.strip() if el is not None and el.text else None


def _header_mismatch(entry: SchemaEntry, header: dict[str, etree._Element]) -> str | None:
    """Why BerichtCode/Versie/Subversie disagree with the namespace, or None. Missing ones are left to the
    schema. The reason names what is expected, not what was sent."""
    versie, subversie = entry.release.versie
    expected = (
        ("BerichtCode", entry.type.berichtcode),
        ("BerichtVersie", versie),
        ("BerichtSubversie", subversie),
    )
    wrong = [(name, value) for name, value in expected if (_text(header, name) or value) != value]
    if not wrong:
        return None
    parts = ", ".join(f"{name} {value}" for name, value in wrong)
    return (
        f"the header does not match the message's namespace: {entry.type.naam} of {entry.release} "
        f"requires {parts}"
    )


def _identificatie(el: etree._Element | None) -> BerichtIdentificatie | None:
    """Identificatie + Dagtekening from a BerichtIdentificatie-like element."""
    if el is None:
        return None
    ident = dagtekening = None
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag.endswith("}Identificatie"):
            ident = child.text
        elif tag.endswith("}Dagtekening"):
            dagtekening = child.text
    return _pair(ident, dagtekening)


def _pair(ident: str | None, dagtekening: str | None) -> BerichtIdentificatie | None:
    if not ident or not dagtekening:
        return None
    try:
        return BerichtIdentificatie(ident.strip(), date.fromisoformat(dagtekening.strip()[:10]))
    except ValueError:
        return None


def _kop(berichttype: BerichtType, header: dict[str, etree._Element]) -> Kop | None:
    """The header facts, or None when a required one cannot be read."""
    code, versie, subversie = (_text(header, n) for n in ("BerichtCode", "BerichtVersie", "BerichtSubversie"))
    afzender, ontvanger = _text(header, "Afzender"), _text(header, "Ontvanger")
    identificatie = _identificatie(header.get("BerichtIdentificatie"))
    if not (code and versie and subversie and afzender and ontvanger and identificatie):
        return None
    retour = verwijzing = None
    if berichttype.rol is Rol.RETOUR:
        retour = _pair(_text(header, "IdentificatieRetour"), _text(header, "DagtekeningRetour"))
        if retour is None:
            return None
    elif berichttype.rol is Rol.ANTWOORD:
        verwijzing = _identificatie(header.get("DeclaratieIdentificatie"))
        if verwijzing is None:
            return None
    return Kop(code, versie, subversie, afzender, ontvanger, identificatie, retour, verwijzing)
