"""Schema errors in words a sender's developer understands, without quoting the document.

libxml2 quotes the offending value ("The value '12345678' is not accepted by the pattern '[0-9]{9}'");
messages carry BSNs, so every message is rewritten to say what was expected, never what was sent.
Only what comes from the schema (patterns, allowed values, lengths, element names) is kept.
Runs only for invalid documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from hub.domain.bericht import Fout

MAX_ERRORS = 100  # per document; one broken element type repeated in a declaratie can give thousands
MAX_ALLOWED_VALUES = 20  # shown in a reason; enumerations of product codes can be long
EXPLAIN_MAX_BYTES = 2 * 2**20  # xmlschema costs ~0.3 ms/KB: explain only documents below this size

_CLARK = re.compile(r"\{[^}]*\}")
_PREFIX = re.compile(r"(?<=/)[^/:\[\]]+:")
_SUBJECT = re.compile(r"^Element '(?P<el>[^']*)'(?:, attribute '(?P<attr>[^']*)')?: ")
_QUOTED = re.compile(r"'[^']*'")


@dataclass(frozen=True, slots=True)
class SchemaError:
    """A libxml2 schema error, copied out of the (shared) error log."""

    line: int
    type_name: str
    path: str
    message: str


def _local(name: str) -> str:
    return _CLARK.sub("", name).split(":")[-1]


def _names(listing: str) -> str:
    """'{ns}A, {ns}B' -> 'A or B'."""
    names = [_local(n.strip()) for n in listing.split(",") if n.strip()]
    return " or ".join(names)


def _values(listing: str) -> str:
    values = [v.strip().strip("'") for v in listing.split(",")]
    shown = ", ".join(values[:MAX_ALLOWED_VALUES])
    hidden = len(values) - MAX_ALLOWED_VALUES
    return shown + (f" (and {hidden} more)" if hidden > 0 else "")


_TYPE_HINTS = {
    "date": "a date as YYYY-MM-DD",
    "integer": "a whole number",
    "decimal": "a number",
    "boolean": "true or false",
}

Rule = tuple[re.Pattern[str], Callable[[re.Match[str], str, str | None], str]]

_RULES: tuple[Rule, ...] = (
    (re.compile(r"is not accepted by the pattern '(?P<p>.*)'\.?$"),
     lambda m, el, at: f"value does not match the required pattern {m['p']}"),
    (re.compile(r"is not an element of the set \{(?P<s>.*)\}\.?$"),
     lambda m, el, at: f"value is not one of the allowed values: {_values(m['s'])}"),
    (re.compile(r"exceeds the allowed maximum length of '(?P<n>\d+)'"),
     lambda m, el, at: f"value is longer than the maximum of {m['n']} characters"),
    (re.compile(r"underruns the allowed minimum length of '(?P<n>\d+)'"),
     lambda m, el, at: f"value is shorter than the minimum of {m['n']} characters"),
    (re.compile(r"differs from the allowed length of '(?P<n>\d+)'"),
     lambda m, el, at: f"value must be exactly {m['n']} characters long"),
    (re.compile(r"is less than the minimum value allowed \('(?P<n>[^']*)'\)"),
     lambda m, el, at: f"value is less than the minimum {m['n']}"),
    (re.compile(r"is greater than the maximum value allowed \('(?P<n>[^']*)'\)"),
     lambda m, el, at: f"value is greater than the maximum {m['n']}"),
    (re.compile(r"must be greater than '(?P<n>[^']*)'"),
     lambda m, el, at: f"value must be greater than {m['n']}"),
    (re.compile(r"must be less than '(?P<n>[^']*)'"),
     lambda m, el, at: f"value must be less than {m['n']}"),
    (re.compile(r"has more digits than are allowed \('(?P<n>\d+)'\)"),
     lambda m, el, at: f"value has more than {m['n']} digits"),
    (re.compile(r"has more fractional digits than are allowed \('(?P<n>\d+)'\)"),
     lambda m, el, at: f"value has more than {m['n']} digits after the decimal point"),
    (re.compile(r"is not a valid value of the (?:local )?(?:atomic|list|union) type '(?P<t>[^']*)'"),
     lambda m, el, at: _not_valid_type(_local(m["t"]))),
    (re.compile(r"is not a valid value of the local (?:atomic|list|union) type"),
     lambda m, el, at: "value is not valid for this element's type"),
    (re.compile(r"This element is not expected\. Expected is (?:one of )?\( (?P<e>.*) \)"),
     lambda m, el, at: f"element {el} is not expected here; expected: {_names(m['e'])}"),
    (re.compile(r"This element is not expected\.$"),
     lambda m, el, at: f"element {el} is not expected here"),
    (re.compile(r"Missing child element\(s\)\. Expected is (?:one of )?\( (?P<e>.*) \)"),
     lambda m, el, at: f"{el} lacks a required child element; expected: {_names(m['e'])}"),
    (re.compile(r"Character content other than whitespace is not allowed"),
     lambda m, el, at: f"text is not allowed directly in {el}: it may only contain child elements"),
    (re.compile(r"Element content is not allowed"),
     lambda m, el, at: f"{el} may only contain a value, not child elements"),
    (re.compile(r"Character or element content is not allowed"),
     lambda m, el, at: f"{el} must be empty"),
    (re.compile(r"The attribute '[^']*' is not allowed"),
     lambda m, el, at: f"attribute {at} is not allowed on {el}"),
    (re.compile(r"The attribute '(?P<a>[^']*)' is required but missing"),
     lambda m, el, at: f"attribute {_local(m['a'])} is required on {el}"),
    (re.compile(r"Duplicate key-sequence .* in (?:unique|key) identity-constraint '(?P<c>[^']*)'"),
     lambda m, el, at: f"value must be unique within the message (constraint {_local(m['c'])})"),
    (re.compile(r"No match found for key-sequence .* of keyref '(?P<c>[^']*)'"),
     lambda m, el, at: f"value refers to a key that does not exist (constraint {_local(m['c'])})"),
    (re.compile(r"No matching global declaration available for the validation root"),
     lambda m, el, at: "the root element is not declared by the message schema"),
)


def _not_valid_type(type_name: str) -> str:
    hint = _TYPE_HINTS.get(type_name.removeprefix("xs:"))
    if hint is None and type_name.endswith("Datum"):
        hint = _TYPE_HINTS["date"]
    return f"value is not a valid {type_name}" + (f" ({hint} expected)" if hint else "")


def rewrite(message: str) -> str:
    """A libxml2 schema message rewritten without document values."""
    m = _SUBJECT.match(message)
    el = _local(m["el"]) if m else "element"
    at = _local(m["attr"]) if m and m["attr"] else None
    rest = message[m.end():] if m else message
    for pattern, build in _RULES:
        found = pattern.search(rest)
        if found:
            return build(found, el, at)
    # Unknown form: keep the words, drop anything quoted (it may be a value) and namespace noise.
    return _QUOTED.sub("…", _CLARK.sub("", rest)).rstrip(".")


def readable_path(element: etree._Element) -> str:
    """/Bericht/Client/Relaties/Relatie[2]/Naam: local names, a position only where names repeat."""
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))


_STEP = re.compile(r"(?<=/)[^/:\[\]*]+:(?P<name>[^/\[\]]+)")


def locate(root: etree._Element, path: str) -> etree._Element | None:
    """The element a libxml2 error path points at.

    libxml2 writes steps with the document's prefixes (`wmo301:Client[2]`, `*` for the default
    namespace); matching on local names spares collecting every prefix of the document.
    """
    xpath = _STEP.sub(lambda m: f"*[local-name()='{m['name']}']", path)
    try:
        found = root.xpath(xpath)
    except etree.XPathError:
        return None
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return found[0]
    return None


def explain(
    root: etree._Element, errors: Iterable[SchemaError], explainer: Callable[[], Any] | None,
    size: int,
) -> tuple[Fout, ...]:
    """Fouts for libxml2's errors; xmlschema adds the position where libxml2 names no expected element."""
    errors = list(errors)
    fouts: list[Fout] = []
    unexplained: dict[int, tuple[etree._Element, int]] = {}  # fout index -> (element, its index in parent)
    for err in errors[:MAX_ERRORS]:
        element = locate(root, err.path) if err.path else None
        path = readable_path(element) if element is not None else _PREFIX.sub("", err.path) or None
        reason = rewrite(err.message)
        if err.type_name == "SCHEMAV_ELEMENT_CONTENT" and element is not None and "expected:" not in reason:
            parent = element.getparent()
            if parent is not None:
                unexplained[len(fouts)] = (element, parent.index(element))
        fouts.append(Fout(reason, err.line or None, path))
    if unexplained and explainer is not None and size <= EXPLAIN_MAX_BYTES:
        _explain_positions(root, fouts, unexplained, explainer)
    if len(errors) > MAX_ERRORS:
        fouts.append(Fout(f"{len(errors) - MAX_ERRORS} more errors not shown"))
    return tuple(fouts)


def _explain_positions(
    root: etree._Element, fouts: list[Fout], wanted: dict[int, tuple[etree._Element, int]],
    explainer: Callable[[], Any],
) -> None:
    """Ask xmlschema what was expected where libxml2 only says "not expected"."""
    # Keyed by the parent proxy's id; the tuple keeps the proxy alive, so lxml hands xmlschema the same one.
    by_parent: dict[int, tuple[int, etree._Element, int, etree._Element]] = {}
    for i, (el, pos) in wanted.items():
        parent_el = el.getparent()
        if parent_el is not None:
            by_parent[id(parent_el)] = (i, el, pos, parent_el)
    for xs_err in explainer().iter_errors(root):
        parent = getattr(xs_err, "elem", None)
        hit = by_parent.get(id(parent)) if parent is not None else None
        if hit is None or getattr(xs_err, "index", None) != hit[2]:
            continue
        i, element, pos, _ = hit
        parent_name = etree.QName(parent).localname
        expected = _xs_expected(xs_err)
        name = etree.QName(element).localname
        reason = f"element {name} is not expected at position {pos + 1} in {parent_name}"
        reason += f"; expected: {expected}" if expected else f"; {parent_name} allows no further element here"
        old = fouts[i]
        fouts[i] = Fout(reason, old.line, old.path)
        del by_parent[id(parent)]
        if not by_parent:
            return


def _xs_expected(xs_err: Any) -> str:
    names: list[str] = []
    for particle in getattr(xs_err, "expected", None) or ():
        name = getattr(particle, "local_name", None) or getattr(particle, "name", None)
        if isinstance(name, str):
            names.append(_local(name))
    return " or ".join(dict.fromkeys(names))
