"""Hostile and broken input, fuzzed through the real aiohttp app (real validator and routing rules,
in-memory stores and broker: tests/support/app.py).

Every input must get a well-formed JSON answer with a documented status and an ErrorCode (or a 2xx
that the fake store and broker both hold), never a 500, a crash or a hang. Inputs: the 34 example
messages mutated (bytes, elements, attributes, namespaces, header values), raw bytes, and the
request's own headers; plus explicit XML attacks and header lies.

Budget: HYPOTHESIS_PROFILE=ci (the default; derandomized, so every CI run tries the same inputs,
about 250 in all) or HYPOTHESIS_PROFILE=long (random, 20x as many) for an on-demand run:

    HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/unit/test_fuzz_intake.py -q
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lxml import etree

from hub.domain.errors import ErrorCode
from hub.domain.parties import PartyRef, kind_of_code
from hub.entrypoints.http_errors import STATUS
from hub.settings import Settings
from tests.support.app import TODAY, FakeApp, _registry, fake_app, wmo301
from tests.support.berichten import EXAMPLES, example, with_header
from tests.support.fakes import FakeAuditStore, FakePublisher

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise ValueError(f"HYPOTHESIS_PROFILE must be ci or long, not {PROFILE!r}")
SCALE = 20 if PROFILE == "long" else 1
# Per test; together ~250 examples in CI.
BUDGET = {"messages": 150 * SCALE, "raw": 50 * SCALE, "headers": 50 * SCALE}

# Every status POST /v1/berichten documents (docs/api.md); 500 is not among them.
DOCUMENTED = {200, 202, 400, 401, 403, 409, 413, 415, 422, 429, 503}
CODES = {c.value for c in ErrorCode}
ANSWER_WITHIN_S = 5.0
MAX_BODY = 2_000_000

FILES = sorted(EXAMPLES.rglob("*.xml"))
HEADER_FIELDS = (
    "BerichtCode",
    "BerichtVersie",
    "BerichtSubversie",
    "Afzender",
    "Ontvanger",
    "Identificatie",
    "Dagtekening",
    "IdentificatieRetour",
    "DagtekeningRetour",
)
PARTIES = ("0363", "0599", "12345678", "87654321", "CAK", "VWSPGB", "CIZ", "SVB")


# Bodies are at most 2 MB here (MAX_BODY); the hostile ones expand to nothing. 256 MiB is ~100x that.
MEMORY_BOUND_MIB = 256


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _fuzz_settings(budget: str) -> settings:
    return settings(
        max_examples=BUDGET[budget],
        deadline=None,
        derandomize=PROFILE == "ci",
        database=None,
        phases=(Phase.explicit, Phase.generate) if PROFILE == "ci" else tuple(Phase),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def _real_sender(data: bytes) -> str:
    from hub.validation.validator import Validator

    validator = Validator(_registry(str(Settings().schema_releases)), max_bytes=MAX_BODY)
    v = validator.validate(data, on=TODAY)
    assert v.bericht is not None, v.errors
    return v.bericht.afzender


@dataclass
class Harness:
    """The fake app on a loop of its own, so hypothesis (synchronous) can drive it."""

    loop: asyncio.AbstractEventLoop
    app: FakeApp
    tokens: dict[str, str]
    slowest: float = 0.0
    statuses: dict[int, int] | None = None
    rss_at_start_kib: int = 0
    rss_growth_kib: int = 0

    def post(self, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any] | None, str]:
        async def go() -> tuple[int, dict[str, Any] | None, str]:
            client: TestClient[web.Request, web.Application] = self.app.client
            async with client.post("/v1/berichten", data=io.BytesIO(data), headers=headers) as r:
                text = await r.text(errors="replace")
                try:
                    body = json.loads(text)
                except ValueError:
                    body = None
                return r.status, body, r.headers.get("Content-Type", "")

        started = time.monotonic()
        answer = self.loop.run_until_complete(asyncio.wait_for(go(), ANSWER_WITHIN_S * 4))
        elapsed = time.monotonic() - started
        self.slowest = max(self.slowest, elapsed)
        assert elapsed < ANSWER_WITHIN_S, f"answered after {elapsed:.1f} s"
        # Bounded memory: the process's peak RSS may not grow by more than MEMORY_BOUND_MIB over all
        # inputs together (peak RSS only ever rises, so one bound covers every input seen so far).
        self.rss_growth_kib = _peak_rss_kib() - self.rss_at_start_kib
        assert self.rss_growth_kib < MEMORY_BOUND_MIB * 1024, f"peak RSS grew {self.rss_growth_kib} KiB"
        if self.statuses is not None:
            self.statuses[answer[0]] = self.statuses.get(answer[0], 0) + 1
        return answer

    def check(self, data: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
        """Post and check the answer's shape; returns (status, error code or None for a 2xx)."""
        status, body, ctype = self.post(data, headers)
        assert status in DOCUMENTED, (status, body)
        assert ctype.startswith("application/json"), (status, ctype)
        assert isinstance(body, dict), (status, body)
        if status in (200, 202):
            mid = body["message_id"]
            store: FakeAuditStore = self.app.store
            publisher: FakePublisher = self.app.publisher
            assert mid in store.rows, "a 2xx for a message that is not stored"
            assert any(p[0].message_id == mid for p in publisher.published), "a 2xx not published"
            return status, None
        err = body["error"]
        assert err["code"] in CODES and STATUS[ErrorCode(err["code"])] == status, (status, err)
        assert isinstance(err["message"], str) and isinstance(err["errors"], list)
        assert body["request_id"]
        return status, err["code"]

    def auth(self, party: str) -> dict[str, str]:
        return {"Content-Type": "application/xml", "Authorization": f"Bearer {self.tokens[party]}"}


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    cm = fake_app(Settings(max_body_bytes=MAX_BODY, rate_per_second=0, max_concurrent_per_party=0))
    try:
        app = loop.run_until_complete(cm.__aenter__())
        tokens = {}
        for code in PARTIES:
            kind = kind_of_code(code)
            assert kind is not None
            tokens[code] = loop.run_until_complete(app.parties.create_token(PartyRef(kind, code), "fuzz"))
        h = Harness(loop, app, tokens, statuses={}, rss_at_start_kib=_peak_rss_kib())
        yield h
        print(
            f"\nfuzz ({PROFILE}): answers by status {dict(sorted((h.statuses or {}).items()))}, "
            f"slowest {h.slowest * 1000:.0f} ms, peak RSS growth {h.rss_growth_kib // 1024} MiB"
        )
        loop.run_until_complete(cm.__aexit__(None, None, None))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# -- mutations --------------------------------------------------------------------------------------

XML_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("<>&\"'\t\n;:"), max_size=40
)
ODD_TEXT = st.one_of(
    XML_TEXT,
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "9" * 400,
            "0363",
            "12345678",
            "CAK",
            "2026-02-30",
            "2026-01-05",
            "&amp;",
            "\u202e",
            "\U0001f600",
            "x" * 100_000,
        ]
    ),
)
NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


def _elements(root: etree._Element) -> list[etree._Element]:
    return [e for e in root.iter() if isinstance(e.tag, str)]


def _mutate_tree(data: bytes, draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    for _ in range(draw(st.integers(1, 3))):
        els = _elements(root)
        el = els[draw(st.integers(0, len(els) - 1))]
        op = draw(
            st.sampled_from(
                ["remove", "duplicate", "text", "rename", "attribute", "namespace", "xmlns", "header", "nest"]
            )
        )
        try:
            if op == "remove" and el is not root:
                parent = el.getparent()
                assert parent is not None
                parent.remove(el)
            elif op == "duplicate" and el is not root:
                parent = el.getparent()
                assert parent is not None
                parent.insert(parent.index(el), etree.fromstring(etree.tostring(el)))
            elif op == "text":
                el.text = draw(ODD_TEXT)
            elif op == "rename":
                el.tag = etree.QName(etree.QName(el).namespace, draw(NAME)).text
            elif op == "attribute":
                value = draw(st.sampled_from(["x", "0363", "a" * 200_000])) + draw(XML_TEXT)
                el.set(draw(NAME), value)
            elif op == "namespace":
                uri = draw(
                    st.sampled_from(
                        [
                            "http://www.istandaarden.nl/iwmo/3_1/wmo301/schema",
                            "http://www.istandaarden.nl/ijw/3_2/jw399/schema",
                            "http://www.istandaarden.nl/iwmo/3_2/wmo302/schema",
                            "urn:x",
                            "",
                        ]
                    )
                )
                el.tag = etree.QName(uri or None, etree.QName(el).localname).text
            elif op == "xmlns":
                n = draw(st.sampled_from([10, 1000, 5000]))
                wrapper = etree.Element(
                    etree.QName(etree.QName(el).namespace, "W").text,
                    nsmap={f"p{i}": f"urn:n{i}" for i in range(n)},
                )
                if el is not root:
                    parent = el.getparent()
                    assert parent is not None
                    parent.replace(el, wrapper)
                    wrapper.append(el)
                else:
                    wrapper.append(root)
                    root = wrapper
            elif op == "header":
                name = draw(st.sampled_from(HEADER_FIELDS))
                for found in root.iter():
                    if isinstance(found.tag, str) and etree.QName(found).localname == name:
                        found.text = draw(ODD_TEXT)
                        break
            elif op == "nest":
                inner = el
                for _ in range(draw(st.sampled_from([50, 300, 3000]))):
                    inner = etree.SubElement(inner, etree.QName(etree.QName(el).namespace, "N").text)
        except ValueError:  # a value lxml will not put in a tree (control characters ...): skip
            continue
    return bytes(etree.tostring(root, xml_declaration=draw(st.booleans()), encoding="UTF-8"))


def _mutate_bytes(data: bytes, draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not buf:
            break
        at = draw(st.integers(0, len(buf) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "swap-encoding"]))
        if op == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            buf[at:at] = draw(
                st.binary(min_size=1, max_size=16)
                | st.sampled_from(
                    [b"<", b"&", b"]]>", b"<!DOCTYPE x>", b"\x00", b"\xff\xfe", b"<?pi?>", b"&lol;"]
                )
            )
        elif op == "delete":
            del buf[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del buf[at:]
        else:
            buf = bytearray(
                bytes(buf).replace(
                    b'encoding="UTF-8"',
                    draw(
                        st.sampled_from(
                            [
                                b'encoding="UTF-16"',
                                b'encoding="ISO-8859-1"',
                                b'encoding="bogus"',
                                b'encoding="EBCDIC"',
                            ]
                        )
                    ),
                )
            )
    return bytes(buf)


@st.composite
def mutated(draw: Callable[[st.SearchStrategy[Any]], Any]) -> tuple[str, bytes]:
    path: Path = draw(st.sampled_from(FILES))
    data = path.read_bytes()
    sender = _SENDERS[path.name]
    if draw(st.booleans()):
        data = _mutate_tree(data, draw)
    if draw(st.booleans()):
        data = _mutate_bytes(data, draw)
    return sender, data


_SENDERS = {p.name: _real_sender(p.read_bytes()) for p in FILES}


@_fuzz_settings("messages")
@given(case=mutated())
def test_mutated_messages_get_a_documented_answer(harness: Harness, case: tuple[str, bytes]) -> None:
    sender, data = case
    harness.check(data, harness.auth(sender))


@_fuzz_settings("raw")
@given(data=st.binary(max_size=4096) | st.text(max_size=2000).map(lambda s: s.encode("utf-8", "replace")))
def test_raw_bytes_get_a_documented_answer(harness: Harness, data: bytes) -> None:
    status, code = harness.check(data, harness.auth("0363"))
    assert status in (400, 422), (status, code)


HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@_fuzz_settings("headers")
@given(
    content_type=st.sampled_from(["application/xml", "text/xml", "application/x+xml", "text/plain", ""])
    | HEADER_VALUE,
    authorization=st.sampled_from(["good", "other", "none"]) | HEADER_VALUE,
    request_id=st.none() | HEADER_VALUE,
    extra=st.dictionaries(st.from_regex(r"X-[A-Za-z]{1,10}", fullmatch=True), HEADER_VALUE, max_size=3),
)
def test_header_values_get_a_documented_answer(
    harness: Harness, content_type: str, authorization: str, request_id: str | None, extra: dict[str, str]
) -> None:
    headers = dict(extra)
    headers["Content-Type"] = content_type
    if authorization == "good":
        headers["Authorization"] = f"Bearer {harness.tokens['0363']}"
    elif authorization == "other":
        headers["Authorization"] = f"Bearer {harness.tokens['0599']}"
    elif authorization != "none":
        headers["Authorization"] = authorization
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    status, code = harness.check(wmo301(), headers)
    if authorization not in ("good", "other"):
        assert (status, code) == (401, "unauthenticated")


# -- explicit attacks --------------------------------------------------------------------------------

LOL = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)
ATTACKS = {
    "billion laughs": LOL,
    "external entity": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<r>&x;</r>",
    "external dtd": b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:1/evil.dtd"><r/>',
    "parameter entity": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd">'
    b" %p;]><r/>",
    "internal dtd only": b'<?xml version="1.0"?><!DOCTYPE r [<!ELEMENT r ANY>]><r/>',
    "quadratic blowup": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]><r>'
    + b"&a;" * 2_000
    + b"</r>",
    "deep nesting": b"<a>" * 100_000 + b"</a>" * 100_000,
    "huge attribute": b'<r a="' + b"x" * 1_500_000 + b'"/>',
    "many attributes": b"<r " + b" ".join(f'a{i}="1"'.encode() for i in range(50_000)) + b"/>",
    "many namespaces": b"<r " + b" ".join(f'xmlns:p{i}="urn:{i}"'.encode() for i in range(50_000)) + b"/>",
    "many elements": b"<r>" + b"<e/>" * 400_000 + b"</r>",
    "xinclude": b'<r xmlns:xi="http://www.w3.org/2001/XInclude">'
    b'<xi:include href="file:///etc/passwd" parse="text"/></r>',
    "utf-16 with bom": "\ufeff<?xml version='1.0' encoding='UTF-16'?><r/>".encode("utf-16-le"),
    "nul bytes": b"<r>\x00</r>",
    "empty": b"",
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_xml_attacks_are_refused_without_resolving_anything(harness: Harness, name: str) -> None:
    status, answer, _ = harness.post(ATTACKS[name], harness.auth("0363"))
    assert "root:" not in json.dumps(answer), "a local file was read into the answer"
    status, code = harness.check(ATTACKS[name], harness.auth("0363"))
    assert status in (400, 413, 422), (status, code)
    assert code in ("hostile_xml", "not_well_formed", "unknown_message", "too_large"), code


def test_xml_attack_inside_a_real_message_is_hostile(harness: Harness) -> None:
    body = (
        wmo301()
        .replace(b"?>", b'?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>', 1)
        .replace(b"<wmo301:Bsn>", b"<wmo301:Bsn>&e;", 1)
    )
    status, body_answer, _ = harness.post(body, harness.auth("0363"))
    assert status == 400 and body_answer is not None
    assert body_answer["error"]["code"] == "hostile_xml"
    assert "root:" not in json.dumps(body_answer)


# -- header lies -------------------------------------------------------------------------------------


def test_afzender_of_another_party_is_403(harness: Harness) -> None:
    body = wmo301(afzender="0599")
    assert harness.check(body, harness.auth("0363")) == (403, "afzender_mismatch")


def test_retour_for_a_message_that_does_not_exist_is_unknown_conversation(harness: Harness) -> None:
    n = time.time_ns() % 10**8
    body = with_header(example("iwmo-3.2", "WMO302"), identificatie=f"NOPE{n}", identificatie_retour=f"R{n}")
    assert harness.check(body, harness.auth("12345678")) == (422, "unknown_conversation")


@pytest.mark.parametrize(
    ("folder", "naam", "ontvanger"),
    [("ieb-1.0", "WMO405", "12345678"), ("ieb-1.0", "WMO405", "0599"), ("ipgb-1.0", "PGB301", "CAK")],
)
def test_message_type_not_allowed_between_the_parties_is_refused(
    harness: Harness, folder: str, naam: str, ontvanger: str
) -> None:
    body = with_header(
        example(folder, naam),
        ontvanger=ontvanger,
        identificatie=f"R{time.time_ns() % 10**9}",
        dagtekening=date(2026, 1, 5),
    )
    # This project's schemas fix the receiver code of iEb (CAK) and iPgb (VWSPGB): the schema refuses
    # first. The route check behind it is tested in test_intake.py.
    assert harness.check(body, harness.auth("0363")) == (422, "schema_invalid")


def test_a_message_from_an_aanbieder_to_an_aanbieder_is_refused(harness: Harness) -> None:
    body = with_header(
        example("iwmo-3.2", "WMO315"),
        ontvanger="87654321",
        identificatie=f"A{time.time_ns() % 10**9}",
        dagtekening=date(2026, 1, 5),
    )
    # A 315's Ontvanger is a 4-digit gemeentecode in the schema: an AGB code there is schema_invalid.
    assert harness.check(body, harness.auth("12345678")) == (422, "schema_invalid")
