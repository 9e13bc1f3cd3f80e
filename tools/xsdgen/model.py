"""The building blocks of the schema model: simple types, complex types and message element trees.

Message structures are written as indented text trees, one element a line:

    Name[card] [Type] [pattern=REGEX] [@std,std] [# documentation]

- `card` is nothing (exactly once), `?` (optional), `+` (one or more) or `*` (zero or more);
- `Type` names a basisschema type (`LDT_...`/`CDT_...`); a line without a type is a record whose children
  follow, indented two spaces more, and becomes a named complex type of the message;
- `pattern=` narrows the basisschema type for this element only (the message's own restriction);
- `@ijw` (or `@iwmo,ieb`) keeps the line only for those standards;
- a bare `RetourCodes` line expands to the retour-code block (one or more `RetourCode`s).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

UNBOUNDED = None


@dataclass(frozen=True, slots=True)
class Simple:
    """A simple type (LDT_...): an XML Schema builtin restricted by facets."""

    name: str  # without the LDT_ prefix
    base: str  # xs builtin: string, integer, date, time
    doc: str
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    min: int | None = None
    max: int | None = None
    enum: str = ""  # allowed codes, separated by white space

    @property
    def qname(self) -> str:
        return "LDT_" + self.name

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self.enum.split())


@dataclass(frozen=True, slots=True)
class Complex:
    """A complex type (CDT_...) of the basisschema: a sequence of elements, written `Name[card] Type, ...`."""

    name: str  # without the CDT_ prefix
    doc: str
    spec: str

    @property
    def qname(self) -> str:
        return "CDT_" + self.name

    @property
    def fields(self) -> tuple[Node, ...]:
        return tuple(_parse_line(part.strip(), 0) for part in self.spec.split(","))


@dataclass(frozen=True, slots=True)
class Node:
    """One element of a message: a leaf with a type, or a record with children."""

    name: str
    type: str | None = None
    min_occurs: int = 1
    max_occurs: int | None = 1  # None: unbounded
    pattern: str | None = None
    only: frozenset[str] = frozenset()  # standard slugs this element exists in; empty: all
    doc: str = ""
    children: tuple[Node, ...] = field(default_factory=tuple)

    @property
    def is_record(self) -> bool:
        return self.type is None

    @property
    def is_list(self) -> bool:
        """A wrapper around one repeated record (Relaties, ToegewezenProducten): no retour codes."""
        return len(self.children) == 1 and self.children[0].max_occurs is UNBOUNDED

    def with_children(self, children: tuple[Node, ...]) -> Node:
        return replace(self, children=children)


_CARD = {"": (1, 1), "?": (0, 1), "+": (1, UNBOUNDED), "*": (0, UNBOUNDED)}
_LINE = re.compile(
    r"(?P<name>[A-Za-z][A-Za-z0-9]*)(?P<card>[?+*]?)"
    r"(?:\s+(?P<type>(?:LDT|CDT)_[A-Za-z0-9]+))?"
    r"(?:\s+pattern=(?P<pattern>\S+))?"
    r"(?:\s+@(?P<only>[a-z,]+))?"
    r"(?:\s+#\s*(?P<doc>.*))?$"
)

RETOURCODES = Node(
    "RetourCodes",
    doc="Result codes for the record they are part of.",
    children=(Node("RetourCode", "LDT_RetourCode", 1, UNBOUNDED),),
)


def _parse_line(text: str, lineno: int) -> Node:
    m = _LINE.match(text)
    if m is None:
        raise ValueError(f"model line {lineno}: cannot read {text!r}")
    lo, hi = _CARD[m["card"]]
    only = frozenset(m["only"].split(",")) if m["only"] else frozenset()
    return Node(m["name"], m["type"], lo, hi, m["pattern"], only, (m["doc"] or "").strip())


def parse_tree(text: str) -> tuple[Node, ...]:
    """Read an indented element tree (see the module docstring)."""
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    pos = 0

    def block(indent: int) -> tuple[Node, ...]:
        nonlocal pos
        nodes: list[Node] = []
        while pos < len(lines):
            lineno, line = lines[pos]
            depth = len(line) - len(line.lstrip(" "))
            if depth < indent:
                break
            if depth > indent:
                raise ValueError(f"model line {lineno}: unexpected indentation")
            pos += 1
            node = _parse_line(line.strip(), lineno)
            children = block(indent + 2)
            if node.name == "RetourCodes" and node.type is None and not children:
                node = replace(RETOURCODES, min_occurs=node.min_occurs, max_occurs=node.max_occurs)
            elif children:
                if node.type is not None:
                    raise ValueError(f"model line {lineno}: {node.name} has both a type and children")
                node = node.with_children(children)
            elif node.type is None:
                raise ValueError(f"model line {lineno}: {node.name} has neither a type nor children")
            nodes.append(node)
        return tuple(nodes)

    tree = block(0)
    if pos != len(lines):
        raise ValueError(f"model line {lines[pos][0]}: unexpected indentation")
    return tree


def for_standaard(nodes: tuple[Node, ...], slug: str) -> tuple[Node, ...]:
    """The tree as it holds in one standard: drop elements marked for other standards."""
    return tuple(
        n.with_children(for_standaard(n.children, slug)) for n in nodes if not n.only or slug in n.only
    )


def with_retourcodes(node: Node) -> Node:
    """The retour form of a record: every record that is not a mere list wrapper gets RetourCodes last.

    This is how the retourberichten (302, 306 ...) are built from their heenbericht: the same tree,
    with the receiver's verdict (RetourCodes) added to each record.
    """
    if not node.is_record:
        return node
    children = tuple(with_retourcodes(c) for c in node.children)
    if not node.is_list:
        children = (*children, RETOURCODES)
    return node.with_children(children)
