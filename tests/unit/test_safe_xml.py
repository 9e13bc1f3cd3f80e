"""Hostile and broken input is refused with the right code, before it can cost much."""

from __future__ import annotations

import tracemalloc

import pytest

from hub.domain.errors import ErrorCode
from hub.validation import safe_xml
from hub.validation.safe_xml import Limits, SafeParser, XmlRefused


def refusal(data: bytes, limits: Limits | None = None) -> XmlRefused:
    with pytest.raises(XmlRefused) as caught:
        SafeParser(limits).parse(data)
    return caught.value


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<lolz>&lol9;</lolz>"""

HOSTILE_PROLOGS = {
    "billion laughs": BILLION_LAUGHS,
    "xxe file": b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
    "xxe http": b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><r>&x;</r>',
    "external dtd": b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/r.dtd"><r/>',
    "internal subset": b"<!DOCTYPE r [<!ELEMENT r (#PCDATA)>]><r/>",
    "parameter entity": b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><r/>',
    "after comment and pi": b'<?xml version="1.0"?><!-- <r/> --><?pi x?>\n<!DOCTYPE r><r/>',
    "after bom": b"\xef\xbb\xbf<!DOCTYPE r><r/>",
    "utf-16": '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>'.encode("utf-16"),
    "after declaration": b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>',
    "after bom and declaration": b'\xef\xbb\xbf<?xml version="1.0"?><!DOCTYPE r><r/>',
    "after a declaration with '>'": b'<?xml version="1.0" encoding="a>b"?><!DOCTYPE r><r/>',
    "after a stylesheet pi": b'<?xml-stylesheet href="s"?>\n<!DOCTYPE r><r/>',
}


@pytest.mark.parametrize("data", HOSTILE_PROLOGS.values(), ids=HOSTILE_PROLOGS.keys())
def test_doctype_and_entities_are_refused(data: bytes) -> None:
    refused = refusal(data)
    assert refused.code is ErrorCode.HOSTILE_XML
    assert "DOCTYPE" in refused.reason
    assert "passwd" not in refused.reason and "lol" not in refused.reason


@pytest.mark.parametrize("data", HOSTILE_PROLOGS.values(), ids=HOSTILE_PROLOGS.keys())
def test_no_hostile_prolog_takes_the_plain_prolog_shortcut(data: bytes) -> None:
    assert safe_xml._PLAIN_PROLOG.match(data) is None


def test_the_usual_prologs_take_the_shortcut() -> None:
    for data in (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<wmo301:Bericht/>',
        b"\xef\xbb\xbf<?xml version='1.0'?><r/>",
        b"\n  <r/>",
        b"<r/>",
    ):
        assert safe_xml._PLAIN_PROLOG.match(data), data


def test_docinfo_catches_a_doctype_the_prolog_scan_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safe_xml, "_refuse_doctype", lambda data: None)
    refused = refusal(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>')
    assert refused.code is ErrorCode.HOSTILE_XML


def test_doctype_text_inside_the_document_is_not_a_doctype() -> None:
    root = SafeParser().parse(b"<r><!-- <!DOCTYPE x> --><![CDATA[<!DOCTYPE y>]]></r>")
    assert root.tag == "r"


def test_ten_thousand_deep_is_refused_by_libxml2() -> None:
    refused = refusal(b"<a>" * 10_000 + b"</a>" * 10_000)
    assert refused.code is ErrorCode.HOSTILE_XML
    assert "deep" in refused.reason


def test_deeper_than_the_limit_is_refused() -> None:
    refused = refusal(b"<a>" * 65 + b"</a>" * 65)
    assert refused.code is ErrorCode.HOSTILE_XML
    assert "64" in refused.reason
    SafeParser().parse(b"<a>" * 64 + b"</a>" * 64)  # at the limit: fine


def test_depth_can_be_checked_later() -> None:
    parser = SafeParser()
    data = b"<a>" * 100 + b"</a>" * 100
    root = parser.parse(data, check_tree=False)
    with pytest.raises(XmlRefused) as caught:
        parser.check_tree(root, data)
    assert caught.value.code is ErrorCode.HOSTILE_XML


def test_size_limit_refuses_before_parsing_without_a_copy() -> None:
    body = b"<r>" + b"x" * (200 * 2**20) + b"</r>"
    tracemalloc.start()
    try:
        refused = refusal(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.code is ErrorCode.TOO_LARGE
    assert peak < 2**20  # the 200 MB body was not copied


def test_size_limit_is_configurable() -> None:
    assert refusal(b"<r>" + b"x" * 100 + b"</r>", Limits(max_bytes=100)).code is ErrorCode.TOO_LARGE
    SafeParser(Limits(max_bytes=107)).parse(b"<r>" + b"x" * 100 + b"</r>")


def test_too_many_nodes_are_refused_before_parsing() -> None:
    refused = refusal(b"<r>" + b"<a/>" * 2000 + b"</r>", Limits(max_nodes=1000))
    assert refused.code is ErrorCode.HOSTILE_XML
    assert "nodes" in refused.reason


def test_attribute_over_libxml2_limit_is_refused() -> None:
    refused = refusal(b'<r a="' + b"x" * (11 * 2**20) + b'"/>')
    assert refused.code is ErrorCode.HOSTILE_XML


def test_long_attribute_is_refused_by_the_tree_check() -> None:
    refused = refusal(b'<r a="' + b"x" * 5000 + b'"/>')
    assert refused.code is ErrorCode.HOSTILE_XML
    assert "attribute" in refused.reason


def test_many_namespaces_are_refused() -> None:
    decls = b" ".join(b'xmlns:p%d="urn:n%d"' % (i, i) for i in range(5000))
    refused = refusal(b"<r " + decls + b"><a/></r>")
    assert refused.code is ErrorCode.HOSTILE_XML
    assert "namespaces" in refused.reason


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"<?xml version='1.0'?>\n<r>\n  <a>\n</r>", 4),
        (b"<r>\n\n<a b='1' b='2'/></r>", 3),
        (b"<r>&undeclared;</r>", 1),
        (b"", 1),
        (b"not xml at all", 1),
        (b"<r/><r/>", 1),
    ],
)
def test_not_well_formed_has_the_line(data: bytes, line: int) -> None:
    refused = refusal(data)
    assert refused.code is ErrorCode.NOT_WELL_FORMED
    assert refused.line == line


def test_reasons_do_not_quote_the_document() -> None:
    refused = refusal(b"<r>\n<Bsn>999900006</Bsnx>\n</r>")
    assert refused.code is ErrorCode.NOT_WELL_FORMED
    assert "999900006" not in refused.reason and "Bsn" not in refused.reason


def test_clean_document_parses() -> None:
    data = b'<?xml version="1.0" encoding="UTF-8"?>\n<m:Bericht xmlns:m="urn:m"><m:A>1</m:A></m:Bericht>'
    root = SafeParser().parse(data)
    assert root.tag == "{urn:m}Bericht"
    assert root[0].text == "1"
