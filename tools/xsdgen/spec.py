"""Reading the model files in spec/: basisschema types, code lists and message trees."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from tools.xsdgen.model import Node, Simple, parse_tree

SPEC_DIR = Path(__file__).parent / "spec"

_SECTION = re.compile(r"\[(?P<kind>[a-z]+)(?:\s+(?P<arg>[A-Z0-9]+))?(?:\s+(?P<std>[a-z]+))?\]\s*(?P<doc>.*)")
_SIMPLE = re.compile(
    r"(?P<name>[A-Za-z0-9]+)\s+(?P<base>string|integer|date|time)\s+(?P<facets>.*?)\s+\|\s+(?P<doc>.+)"
)
_RANGE = re.compile(r"(-?\d*)\.\.(-?\d*)")


@dataclass(frozen=True, slots=True)
class Message:
    nummer: str
    doc: str
    body: tuple[Node, ...]
    header: tuple[Node, ...] = ()  # header elements after XsdVersie (only for [antwoord])


@dataclass(slots=True)
class SpecFile:
    simple: list[Simple] = field(default_factory=list)
    complex: list[Node] = field(default_factory=list)
    codes: dict[tuple[str, str], str] = field(default_factory=dict)  # (LIST, std or "") -> codes
    heen: dict[str, Message] = field(default_factory=dict)
    antwoord: dict[str, Message] = field(default_factory=dict)


def _bounds(text: str) -> tuple[int | None, int | None]:
    m = _RANGE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad range {text!r}")
    return (int(m[1]) if m[1] else None, int(m[2]) if m[2] else None)


def _simple(line: str) -> Simple:
    m = _SIMPLE.fullmatch(line)
    if m is None:
        raise ValueError(f"cannot read simple type {line!r}")
    t = Simple(m["name"], m["base"], m["doc"])
    for facet in m["facets"].split():
        key, _, value = facet.partition("=")
        if key == "length":
            lo, hi = _bounds(value)
            t = replace(t, min_length=lo, max_length=hi)
        elif key == "range":
            lo, hi = _bounds(value)
            t = replace(t, min=lo, max=hi)
        elif key == "pattern":
            t = replace(t, pattern=value)
        elif key == "codes":  # `$LIST` stays a reference until resolve_codes()
            t = replace(t, enum=value if value.startswith("$") else " ".join(value.split(",")))
        else:
            raise ValueError(f"unknown facet {facet!r} in {line!r}")
    return t


def read_spec(name: str) -> SpecFile:
    """Read one model file (basis.txt, zorg.txt ...) without resolving code lists."""
    spec = SpecFile()
    sections: list[tuple[re.Match[str], list[str]]] = []
    for raw in (SPEC_DIR / name).read_text(encoding="utf-8").splitlines():
        if raw.startswith("#") or (not sections and not raw.strip()):
            continue
        m = _SECTION.fullmatch(raw.strip()) if raw.startswith("[") else None
        if m is not None:
            sections.append((m, []))
        elif not sections:
            raise ValueError(f"{name}: text before the first section: {raw!r}")
        else:
            sections[-1][1].append(raw)
    headers: dict[str, tuple[Node, ...]] = {}
    simple_lines: list[str] = []
    for m, lines in sections:
        kind, arg, text = m["kind"], m["arg"] or "", "\n".join(lines)
        if kind == "simple":
            simple_lines += [ln.strip() for ln in lines if ln.strip()]
        elif kind == "complex":
            spec.complex += parse_tree(text)
        elif kind == "codes":
            spec.codes[(arg, m["std"] or "")] = " ".join(text.split())
        elif kind == "heen":
            spec.heen[arg] = Message(arg, m["doc"], parse_tree(text))
        elif kind == "antwoord":
            spec.antwoord[arg] = Message(arg, m["doc"], parse_tree(text))
        elif kind == "header":
            headers[arg] = parse_tree(text)
        else:
            raise ValueError(f"{name}: unknown section [{kind}]")
    for nr, msg in spec.antwoord.items():
        spec.antwoord[nr] = Message(nr, msg.doc, msg.body, headers.pop(nr))
    if headers:
        raise ValueError(f"{name}: [header] without [antwoord]: {sorted(headers)}")
    spec.simple = [_simple(ln) for ln in simple_lines]
    return spec


def resolve_codes(types: list[Simple], codes: dict[tuple[str, str], str], std: str) -> list[Simple]:
    """Fill in `$LIST` references with the lists of one standard (its own list wins over the common one)."""
    out: list[Simple] = []
    for t in types:
        if t.enum.startswith("$"):
            key = t.enum[1:]
            enum = codes.get((key, std)) or codes.get((key, ""))
            if enum is None:
                raise ValueError(f"no code list {key} for {std}")
            t = replace(t, enum=enum)
        out.append(t)
    return out
