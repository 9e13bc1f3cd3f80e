"""Validate one document: safe parse, message type and release, header, XSD, header facts.

The path of a valid message is kept lean (it runs for every message the hub receives): one parse,
a dict look-up, one pass over the Header's children and one lxml schema validation. Everything that
explains an error runs only for invalid documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from lxml import etree

from hub.domain.bericht import Bericht, BerichtIdentificatie, Fout, Kop, Validatie
from hub.domain.catalogue import BerichtType, Rol
from hub.domain.errors import ErrorCode
from hub.domain.vandaag import vandaag
from hub.validation.explain import SchemaError, explain
from hub.validation.registry import SchemaEntry, SchemaRegistry
from hub.validation.safe_xml import DEFAULT_MAX_BYTES, Limits, SafeParser, XmlRefused

_MAX_NS_IN_REASON = 200


class Validator:
    """Thread-safe: parsers and compiled schemas are never used by two threads at once."""

    def __init__(
        self,
        registry: SchemaRegistry,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        limits: Limits | None = None,
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
                root,
                data,
                ErrorCode.UNKNOWN_MESSAGE,
                "the root element must be Bericht in the namespace of an iStandaarden message",
            )
        day = on or vandaag()
        entry = self.registry.lookup(namespace, day)
        if entry is None:
            return self._not_accepted(root, data, namespace, day)

        # The schema first: for a valid document the header can then be read by position (fast path).
        # The verdict is the same as checking the header first: a mismatch wins over schema errors.
        schema = entry.pool.take()
        try:
            valid = schema.validate(root)
            # Copied before the schema goes back to the pool: its error log belongs to the next user.
            log: Iterable[etree._LogEntry] = () if valid else schema.error_log  # type: ignore[assignment]
            errors = [SchemaError(e.line, e.type_name, e.path, e.message) for e in log]
        finally:
            entry.pool.give_back(schema)
        slots = entry.header_slots if valid else None
        if slots is not None:
            kop = _fast_kop(entry, slots, root)
            if kop is not None:
                return Validatie(
                    Bericht(entry.type, entry.release.release, _with_retourcodes(entry, root, kop))
                )

        header = _header(root)
        mismatch = _header_mismatch(entry, header)
        if mismatch:
            return self._refuse(
                root,
                data,
                ErrorCode.HEADER_MISMATCH,
                mismatch,
                entry,
                path="/Bericht/Header",
                kop=_kop(entry.type, header),
            )
        if valid:
            return _valid(entry, header, root)
        return self._invalid(root, data, entry, header, errors)

    def _refuse(
        self,
        root: etree._Element,
        data: bytes,
        code: ErrorCode,
        reason: str,
        entry: SchemaEntry | None = None,
        *,
        path: str | None = None,
        kop: Kop | None = None,
    ) -> Validatie:
        try:
            self._parser.check_tree(root, data)  # only now: see safe_xml's module docstring
        except XmlRefused as refused:
            return Validatie(None, refused.code, (Fout(refused.reason),))
        return Validatie(
            None,
            code,
            (Fout(reason, None, path),),
            type=entry.type if entry else None,
            release=entry.release.release if entry else None,
            kop=kop,
        )

    def _not_accepted(self, root: etree._Element, data: bytes, namespace: str, day: date) -> Validatie:
        known = self.registry.candidates(namespace)
        if not known:
            return self._refuse(
                root,
                data,
                ErrorCode.UNKNOWN_MESSAGE,
                f"namespace {namespace[:_MAX_NS_IN_REASON]} names no message type the hub knows",
            )
        entry = known[0]
        standaard = entry.type.standaard
        accepted = [str(r) for r in self.registry.accepted_on(day) if r.standaard is standaard]
        windows = "; ".join(f"{e.release} from {e.release.window}" for e in known)
        now = (
            f"on {day.isoformat()} the hub accepts {', '.join(accepted)}"
            if accepted
            else f"on {day.isoformat()} the hub accepts no {standaard.value} release"
        )
        reason = f"{entry.type.naam} of {windows} is not accepted on this date; {now}"
        kop = _kop(entry.type, _header(root))
        return self._refuse(root, data, ErrorCode.RELEASE_NOT_ACCEPTED, reason, entry, kop=kop)

    def _invalid(
        self,
        root: etree._Element,
        data: bytes,
        entry: SchemaEntry,
        header: dict[str, Any],
        errors: list[SchemaError],
    ) -> Validatie:
        try:
            self._parser.check_tree(root, data)
        except XmlRefused as refused:
            return Validatie(None, refused.code, (Fout(refused.reason),))
        fouts = explain(root, errors, entry.explainer, len(data))
        return Validatie(
            None,
            ErrorCode.SCHEMA_INVALID,
            fouts,
            type=entry.type,
            release=entry.release.release,
            kop=_kop(entry.type, header),
        )


def _fast_kop(entry: SchemaEntry, slots: tuple[int, ...], root: etree._Element) -> Kop | None:
    """The Kop of a schema-valid document read by position; None when the slow path must decide
    (a header that disagrees with the release, or an unreadable date)."""
    header: Any = root[0]
    kids = header[: max(slots) + 1]  # one call for all Header children needed
    code, versie, subversie = kids[slots[0]].text, kids[slots[1]].text, kids[slots[2]].text
    if (code, versie, subversie) != entry.expected_header:
        return None
    identificatie = _identificatie(kids[slots[5]])
    afzender, ontvanger = kids[slots[3]].text, kids[slots[4]].text
    if identificatie is None or not afzender or not ontvanger or not code or not versie or not subversie:
        return None
    retour = verwijzing = None
    if len(slots) == 8:  # a retour
        retour = _pair(kids[slots[6]].text, kids[slots[7]].text)
        if retour is None:
            return None
    elif len(slots) == 7:  # an antwoord (325)
        verwijzing = _identificatie(kids[slots[6]])
        if verwijzing is None:
            return None
    return Kop(
        code,
        versie,
        subversie,
        afzender.strip(),
        ontvanger.strip(),
        identificatie,
        retour,
        verwijzing,
    )


def _with_retourcodes(entry: SchemaEntry, root: etree._Element, kop: Kop) -> Kop:
    """A retour or 325 carries RetourCodes (header and per record): the conversation shows them.
    Each code once, in document order; a heenbericht has none, so its tree is not walked."""
    if entry.type.rol is Rol.HEEN:
        return kop
    codes = dict.fromkeys((el.text or "").strip() for el in root.iter(f"{{{entry.namespace}}}RetourCode"))
    codes.pop("", None)
    return kop._replace(retourcodes=tuple(codes))


def _valid(entry: SchemaEntry, header: dict[str, Any], root: etree._Element) -> Validatie:
    kop = _kop(entry.type, header)
    if kop is None:  # the schema requires every field _kop reads; only a broken XSD gets here
        return Validatie(
            None,
            ErrorCode.SCHEMA_INVALID,
            (
                Fout(
                    "the header lacks fields the hub needs (the message schema is too lenient)",
                    None,
                    "/Bericht/Header",
                ),
            ),
            type=entry.type,
            release=entry.release.release,
        )
    return Validatie(Bericht(entry.type, entry.release.release, _with_retourcodes(entry, root, kop)))


_NESTED = frozenset({"BerichtIdentificatie", "DeclaratieIdentificatie"})


def _header(root: etree._Element) -> dict[str, Any]:
    """The Header's fields by local name: text, or the element for the two nested identifications.

    {} when the first child is no Header. One pass, no per-node type checks: the safe parser leaves
    only elements in the tree (no comments, PIs or entity references).
    """
    if not len(root):
        return {}
    header = root[0]
    if not header.tag.endswith("}Header"):
        return {}
    fields: dict[str, Any] = {}
    for child in header:
        tag = child.tag
        name = tag[tag.rfind("}") + 1 :]
        fields[name] = child if name in _NESTED else child.text
    return fields


def _text(header: dict[str, Any], name: str) -> str | None:
    value = header.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _header_mismatch(entry: SchemaEntry, header: dict[str, Any]) -> str | None:
    """Why BerichtCode/Versie/Subversie disagree with the namespace, or None. Missing ones are left to the
    schema. The reason names what is expected, not what was sent."""
    code, versie, subversie = entry.expected_header
    expected = (
        ("BerichtCode", code),
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
    """Identificatie + Dagtekening from a BerichtIdentificatie-like element (in that order, by schema)."""
    if el is None or len(el) < 2:
        return None
    ident, dagtekening = el[0], el[1]
    if not (ident.tag.endswith("}Identificatie") and dagtekening.tag.endswith("}Dagtekening")):
        return None
    return _pair(ident.text, dagtekening.text)


def _pair(ident: str | None, dagtekening: str | None) -> BerichtIdentificatie | None:
    if not ident or not dagtekening:
        return None
    try:
        return BerichtIdentificatie(ident.strip(), date.fromisoformat(dagtekening.strip()[:10]))
    except ValueError:
        return None


def _kop(berichttype: BerichtType, header: dict[str, Any]) -> Kop | None:
    """The header facts, or None when a required one cannot be read."""
    get = header.get
    code, versie, subversie = get("BerichtCode"), get("BerichtVersie"), get("BerichtSubversie")
    afzender, ontvanger = get("Afzender"), get("Ontvanger")
    identificatie = _identificatie(get("BerichtIdentificatie"))
    if not (code and versie and subversie and afzender and ontvanger and identificatie):
        return None
    retour = verwijzing = None
    rol = berichttype.rol
    if rol is Rol.RETOUR:
        retour = _pair(get("IdentificatieRetour"), get("DagtekeningRetour"))
        if retour is None:
            return None
    elif rol is Rol.ANTWOORD:
        verwijzing = _identificatie(get("DeclaratieIdentificatie"))
        if verwijzing is None:
            return None
    return Kop(
        code.strip(),
        versie.strip(),
        subversie.strip(),
        afzender.strip(),
        ontvanger.strip(),
        identificatie,
        retour,
        verwijzing,
    )
