"""Deterministic mutations of a valid message, after the ways senders really break them.

Each mutation takes a parsed document (which it may change) and a random generator, and returns a label
for what it did, or None when it does not apply to this document. `variants()` applies them all, several
times each, to one seed document.
"""

from __future__ import annotations

import copy
import itertools
import random
import re
from collections.abc import Callable, Iterator

from lxml import etree

Mutation = Callable[[etree._Element, random.Random], str | None]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGITS = re.compile(r"\d+")
_CODE = re.compile(r"[0-9A-Z]{1,2}")


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _elements(root: etree._Element) -> list[etree._Element]:
    return [el for el in root.iter() if isinstance(el.tag, str) and el is not root]


def _leaves(root: etree._Element, pattern: re.Pattern[str] | None = None) -> list[etree._Element]:
    return [
        el
        for el in _elements(root)
        if len(el) == 0 and el.text is not None and (pattern is None or pattern.fullmatch(el.text))
    ]


def _header_field(root: etree._Element, name: str) -> etree._Element | None:
    header = root[0]
    return next((c for c in header if _local(c) == name), None)


def _set_header(name: str, values: tuple[str, ...]) -> Mutation:
    def mutate(root: etree._Element, rng: random.Random) -> str | None:
        el = _header_field(root, name)
        if el is None:
            return None
        el.text = rng.choice(values)
        return f"{name}={el.text!r}"

    return mutate


def missing_element(root: etree._Element, rng: random.Random) -> str | None:
    el = rng.choice(_elements(root))
    parent = el.getparent()
    assert parent is not None
    parent.remove(el)
    return f"without {_local(el)}"


def extra_element(root: etree._Element, rng: random.Random) -> str | None:
    parent = rng.choice([el for el in _elements(root) if len(el)] or [root])
    ns = etree.QName(parent).namespace
    extra = etree.Element(f"{{{ns}}}Onbekend" if ns else "Onbekend")
    extra.text = "x"
    parent.insert(rng.randint(0, len(parent)), extra)
    return f"unknown element in {_local(parent)}"


def wrong_order(root: etree._Element, rng: random.Random) -> str | None:
    pairs = [
        (a, b)
        for parent in [root, *_elements(root)]
        for a, b in itertools.pairwise(parent)
        if isinstance(a.tag, str) and isinstance(b.tag, str) and a.tag != b.tag
    ]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    a.addprevious(b)
    return f"{_local(b)} before {_local(a)}"


def duplicated_element(root: etree._Element, rng: random.Random) -> str | None:
    el = rng.choice(_elements(root))
    el.addnext(copy.deepcopy(el))
    return f"{_local(el)} twice"


_BAD_DATES = (
    "2023-02-30",
    "20230101",
    "",
    "2023-1-01",
    "2023-01-01Z",
    "2023-01-01+01:00",
    "01-01-2023",
    "2023-13-01",
    " 2023-01-01",
)


def bad_date(root: etree._Element, rng: random.Random) -> str | None:
    dates = _leaves(root, _DATE)
    if not dates:
        return None
    el = rng.choice(dates)
    el.text = rng.choice(_BAD_DATES)
    return f"{_local(el)}={el.text!r}"


def out_of_range(root: etree._Element, rng: random.Random) -> str | None:
    el = rng.choice(_leaves(root))
    text = el.text or ""
    if _DIGITS.fullmatch(text):
        el.text = rng.choice(("-1", "1" + "0" * rng.randint(5, 13), text + "0" * rng.randint(1, 4), "1.5"))
    else:
        el.text = text + "x" * rng.choice((1, 5, 12, 40, 200))
    return f"{_local(el)} too long or out of range"


def bad_code(root: etree._Element, rng: random.Random) -> str | None:
    codes = [el for el in _leaves(root, _CODE) if _local(el) not in ("Huisletter", "Voorletters")]
    if not codes:
        return None
    el = rng.choice(codes)
    el.text = rng.choice(("99", "00", "X", "A1", "7", "1 ", "001"))
    return f"{_local(el)}={el.text!r}"


def bad_bsn(root: etree._Element, rng: random.Random) -> str | None:
    bsns = [el for el in _elements(root) if _local(el) == "Bsn"]
    if not bsns:
        return None
    el = rng.choice(bsns)
    el.text = rng.choice(("99999365A", "12345678", " 999993653", "9999936530", "999-99-365", ""))
    return f"Bsn={el.text!r}"


def wrong_retourcode(root: etree._Element, rng: random.Random) -> str | None:
    codes = [el for el in _elements(root) if _local(el) == "RetourCode"]
    if not codes:
        return None
    el = rng.choice(codes)
    el.text = rng.choice(("0000", "9999", "200", "S301", "8000"))
    return f"RetourCode={el.text!r}"


def valid_change(root: etree._Element, rng: random.Random) -> str | None:
    """A value changed within what its type allows (most of these stay valid)."""
    el = rng.choice(_leaves(root))
    text = el.text or ""
    name = _local(el)
    if _DATE.fullmatch(text):
        el.text = f"{rng.randint(2020, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    elif name in ("Identificatie", "IdentificatieRetour"):
        el.text = rng.choice(("A", "123456789012", "ID-2024-1", "x y"))
    elif name == "Bsn":
        el.text = rng.choice(("999990019", "999990020", "999990032", "999993653"))
    elif _DIGITS.fullmatch(text) and len(text) > 4:
        el.text = "".join(rng.choice("123456789") for _ in text)
    elif name in ("Commentaar", "Achternaam", "Straatnaam", "Plaatsnaam", "Organisatie", "Voornamen"):
        el.text = rng.choice(("Nieuwe tekst", "a", "Ééntje", "Jansen-de Vries"))
    else:
        return None
    return f"{name}={el.text!r}"


MUTATIONS: dict[str, Mutation] = {
    "wrong BerichtCode": _set_header("BerichtCode", ("999", "414", "436", "491", "4150", "", "abc")),
    "wrong BerichtVersie": _set_header("BerichtVersie", ("2", "4", "03", "", "3.2", "-3")),
    "wrong BerichtSubversie": _set_header("BerichtSubversie", ("1", "3", "02", "x")),
    "wrong Afzender": _set_header("Afzender", ("123", "ABCD", "03630", "1234567", "CAK", "0363 ", "")),
    "wrong Ontvanger": _set_header("Ontvanger", ("123", "ABCD", "123456789", "1234567", "VWSPGB", "")),
    "missing element": missing_element,
    "extra element": extra_element,
    "wrong order": wrong_order,
    "duplicated element": duplicated_element,
    "bad date": bad_date,
    "out of range": out_of_range,
    "bad code": bad_code,
    "bad bsn": bad_bsn,
    "wrong retourcode": wrong_retourcode,
    "valid change": valid_change,
}

_NAMESPACE = re.compile(rb"http://www\.istandaarden\.nl/(iwmo|ijw)/3_2/")


def wrong_namespace(document: bytes, rng: random.Random) -> tuple[str, bytes]:
    """The whole message in another release's or standard's namespace, or in none."""
    choice = rng.choice(("3_1", "other", "none", "typo"))
    if choice == "3_1":
        return "namespace of release 3.1", _NAMESPACE.sub(rb"http://www.istandaarden.nl/\1/3_1/", document)
    if choice == "other":
        swap = {b"iwmo": b"ijw", b"ijw": b"iwmo"}
        return "namespace of the other standard", _NAMESPACE.sub(
            lambda m: b"http://www.istandaarden.nl/" + swap[m[1]] + b"/3_2/", document
        )
    if choice == "typo":
        return "namespace with a typo", document.replace(b"/schema", b"/Schema", 1)
    root = etree.fromstring(document)
    for el in root.iter():
        if isinstance(el.tag, str):
            el.tag = etree.QName(el).localname
    etree.cleanup_namespaces(root)
    return "no namespace", etree.tostring(root)


def reserialised(document: bytes, rng: random.Random) -> tuple[str, bytes]:
    """The message as another serialiser writes it: other prefixes, a default namespace, no indentation."""
    root = etree.fromstring(document)
    choice = rng.choice(("prefixes", "default", "compact"))
    if choice == "compact":
        for el in root.iter():
            if len(el):
                el.text = None
            el.tail = None
        return "valid: compact", etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    nsmap = {prefix: uri for prefix, uri in root.nsmap.items() if prefix}
    message_ns = etree.QName(root).namespace
    names = iter(f"n{i}" for i in range(100))
    new_map: dict[str | None, str] = {
        (None if choice == "default" and uri == message_ns else next(names)): uri for uri in nsmap.values()
    }
    clone = etree.Element(root.tag, nsmap=new_map)  # type: ignore[arg-type]
    clone.extend(copy.deepcopy(child) for child in root)
    return f"valid: {choice}", etree.tostring(clone, xml_declaration=True, encoding="UTF-8")


# Every maximum length and number of digits in use, and one more: probes each leaf's boundary.
PROBE_LENGTHS = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    15,
    16,
    20,
    21,
    24,
    25,
    26,
    35,
    36,
    37,
    64,
    65,
    80,
    81,
    200,
    201,
)


def length_probes(seed_document: bytes) -> Iterator[tuple[str, bytes]]:
    """For each kind of leaf (first occurrence), its value replaced by values of each probe length.

    Digits stay digits (so numbers probe their range: 99, 100 ...), text stays letters.
    """
    root = etree.fromstring(seed_document)
    seen: set[str] = set()
    for el in list(root.iter()):
        if not isinstance(el.tag, str) or len(el) or el.text is None or _local(el) in seen:
            continue
        seen.add(_local(el))
        original = el.text
        char = "9" if _DIGITS.fullmatch(original) else "A"
        for length in PROBE_LENGTHS:
            el.text = char * length
            yield (f"length probe: {_local(el)} of {length}", etree.tostring(root, encoding="UTF-8"))
        el.text = original


def variants(
    seed_document: bytes, rng: random.Random, rounds: int, probe: bool
) -> Iterator[tuple[str, bytes]]:
    """(label, document) for every mutation applied `rounds` times, namespace and serialiser variants,
    and (with `probe`) the length probes."""
    base = etree.fromstring(seed_document)
    for _ in range(rounds):
        for kind, mutate in MUTATIONS.items():
            root = copy.deepcopy(base)
            label = mutate(root, rng)
            if label is not None:
                yield f"{kind}: {label}", etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        yield wrong_namespace(seed_document, rng)
        yield reserialised(seed_document, rng)
    if probe:
        yield from length_probes(seed_document)
