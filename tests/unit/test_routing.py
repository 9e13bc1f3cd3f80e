"""The pure resolver: who receives each kind of message, on which day, over which channel."""

from __future__ import annotations

from datetime import date

import pytest

from hub.domain.bericht import Bericht, BerichtIdentificatie, Kop
from hub.domain.catalogue import CATALOGUE, Rol
from hub.domain.directory import ChannelRule, Kanaal, Merger, Party, Period, SendsFor, Timeline
from hub.domain.errors import ErrorCode, HubError
from hub.domain.parties import FIXED_PARTY_CODES, PartyKind, PartyRef
from hub.domain.routing import Bestemming, RoutingRules


def G(code: str) -> PartyRef:
    return PartyRef(PartyKind.GEMEENTE, code)


def A(code: str) -> PartyRef:
    return PartyRef(PartyKind.AANBIEDER, code)


CAK = PartyRef(PartyKind.CAK, "CAK")
VWS = PartyRef(PartyKind.VWS_PGB, "VWSPGB")
MERGER_DAY = date(2024, 1, 1)
PUSH_FROM = date(2026, 1, 1)
DAY = date(2026, 6, 1)


def rules() -> RoutingRules:
    fixed = [Party(PartyRef(kind, code), code) for kind, code in FIXED_PARTY_CODES.items()]
    return RoutingRules(
        "test",
        [
            *fixed,
            Party(G("0363"), "Amsterdam"),
            Party(G("0599"), "Rotterdam"),
            Party(G("0501"), "Brielle", Period(None, date(2023, 12, 31))),
            Party(G("1992"), "Voorne aan Zee", Period(MERGER_DAY, None)),
            Party(A("12345678"), "Zorg"),
            Party(A("87654321"), "Jeugdhulp"),
            Party(A("11223344"), "Softwarehuis"),
        ],
        [Merger("0501", "1992", MERGER_DAY)],
        [
            ChannelRule(G("0599"), Kanaal.MAILBOX, None, Period(None, date(2025, 12, 31))),
            ChannelRule(G("0599"), Kanaal.PUSH, "https://rotterdam.example/in", Period(PUSH_FROM, None)),
            ChannelRule(CAK, Kanaal.AMQP, None),
        ],
        [SendsFor(A("11223344"), A("12345678"), Period(date(2025, 1, 1), None))],
    )


RULES = rules()


def bericht(naam: str, afzender: str, ontvanger: str) -> Bericht:
    """A message with this header; for a retour the header is the heenbericht's (IV028)."""
    t = next(t for t in CATALOGUE if t.naam == naam)
    ident = BerichtIdentificatie("B-1", date(2026, 5, 1))
    own = BerichtIdentificatie("R-1", date(2026, 5, 2))
    kop = Kop(
        t.berichtcode,
        "3",
        "2",
        afzender,
        ontvanger,
        ident,
        retour=own if t.rol is Rol.RETOUR else None,
        verwijzing=ident if t.rol is Rol.ANTWOORD else None,
    )
    return Bericht(t, "3.2", kop)


def refused(code: ErrorCode, b: Bericht, on: date = DAY, **kw: object) -> str:
    with pytest.raises(HubError) as info:
        RULES.resolve(b, on, **kw)  # type: ignore[arg-type]
    assert info.value.code is code
    return info.value.detail


@pytest.mark.parametrize(
    ("naam", "afzender", "ontvanger", "expected"),
    [
        ("JW301", "0363", "12345678", A("12345678")),  # gemeente -> aanbieder
        ("WMO319", "0363", "87654321", A("87654321")),
        ("WMO315", "12345678", "0363", G("0363")),  # aanbieder -> gemeente
        ("JW323", "87654321", "0363", G("0363")),
        # Retour to a gemeente: the header is the 301's (Afzender 0363), the 302 goes back to 0363.
        ("JW302", "0363", "12345678", G("0363")),
        # Retour to an aanbieder: the header is the 305's (Afzender 12345678).
        ("WMO306", "12345678", "0363", A("12345678")),
        # 325 has a header of its own (IV087): gemeente -> aanbieder.
        ("JW325", "0363", "12345678", A("12345678")),
        ("WMO405", "0363", "CAK", CAK),  # iEb -> CAK
        ("WMO407", "0599", "CAK", CAK),
        ("WMO406", "0363", "CAK", G("0363")),  # iEb retour: CAK -> the gemeente
        ("PGB301", "0363", "VWSPGB", VWS),  # iPgb -> VWS PGB-portaal
        ("PGB302", "0363", "VWSPGB", G("0363")),
    ],
)
def test_each_kind_of_message_goes_to_its_receiver(
    naam: str, afzender: str, ontvanger: str, expected: PartyRef
) -> None:
    got = RULES.resolve(bericht(naam, afzender, ontvanger), DAY)
    assert got.ontvanger == expected
    assert got.queue_key == f"{expected.kind.value}.{expected.code}"


def test_default_channel_is_mailbox_and_amqp_where_configured() -> None:
    assert RULES.resolve(bericht("JW301", "0363", "12345678"), DAY) == Bestemming(
        A("12345678"), Kanaal.MAILBOX, None, "aanbieder.12345678"
    )
    assert RULES.resolve(bericht("WMO405", "0363", "CAK"), DAY).kanaal is Kanaal.AMQP


@pytest.mark.parametrize(
    ("naam", "afzender", "ontvanger", "answer_to"),
    [
        # The header says 0363, but the hub stored the 301 as sent by 0599: the retour goes to 0599.
        ("JW302", "0363", "12345678", G("0599")),
        ("WMO306", "12345678", "0363", A("87654321")),
        ("JW325", "0363", "12345678", A("87654321")),
    ],
)
def test_answer_to_wins_over_the_header(
    naam: str, afzender: str, ontvanger: str, answer_to: PartyRef
) -> None:
    assert RULES.resolve(bericht(naam, afzender, ontvanger), DAY, answer_to=answer_to).ontvanger == answer_to


def test_answer_to_of_the_wrong_kind_is_refused() -> None:
    refused(ErrorCode.ROUTE_NOT_ALLOWED, bericht("JW302", "0363", "12345678"), answer_to=A("87654321"))


def test_answer_to_for_a_heenbericht_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        RULES.resolve(bericht("JW301", "0363", "12345678"), DAY, answer_to=G("0363"))


@pytest.mark.parametrize("other", ["0599", "CIZ", "SVB", "12345678"])
def test_ieb_header_naming_another_receiver_is_refused(other: str) -> None:
    detail = refused(ErrorCode.ROUTE_NOT_ALLOWED, bericht("WMO405", "0363", other))
    assert "CAK" in detail and other in detail


@pytest.mark.parametrize("other", ["SVB", "CAK", "0599"])
def test_ipgb_header_naming_another_receiver_is_refused(other: str) -> None:
    refused(ErrorCode.ROUTE_NOT_ALLOWED, bericht("PGB301", "0363", other))


def test_merger_applies_from_its_effective_date() -> None:
    b = bericht("JW315", "12345678", "0501")
    assert RULES.resolve(b, date(2023, 12, 31)).ontvanger == G("0501")
    assert RULES.resolve(b, MERGER_DAY).ontvanger == G("1992")
    assert RULES.resolve(b, DAY).queue_key == "gemeente.1992"


def test_retour_to_a_merged_gemeente_goes_to_its_successor() -> None:
    b = bericht("JW302", "0363", "12345678")
    assert RULES.resolve(b, date(2024, 3, 1), answer_to=G("0501")).ontvanger == G("1992")


def test_chained_mergers_follow_through() -> None:
    r = RoutingRules(
        "chain",
        [
            Party(G("0001"), "A", Period(None, date(2019, 12, 31))),
            Party(G("0002"), "B", Period(None, date(2021, 12, 31))),
            Party(G("0003"), "C"),
            Party(A("12345678"), "Zorg"),
        ],
        [Merger("0001", "0002", date(2020, 1, 1)), Merger("0002", "0003", date(2022, 1, 1))],
    )
    b = bericht("JW315", "12345678", "0001")
    assert [
        r.resolve(b, d).ontvanger.code for d in (date(2019, 1, 1), date(2021, 1, 1), date(2022, 1, 1))
    ] == [
        "0001",
        "0002",
        "0003",
    ]


def test_channel_changes_on_its_date() -> None:
    b = bericht("JW315", "12345678", "0599")
    before = RULES.resolve(b, date(2025, 12, 31))
    after = RULES.resolve(b, PUSH_FROM)
    assert (before.kanaal, before.endpoint) == (Kanaal.MAILBOX, None)
    assert (after.kanaal, after.endpoint) == (Kanaal.PUSH, "https://rotterdam.example/in")


def test_merged_gemeente_takes_its_successors_channel() -> None:
    r = RoutingRules(
        "ch",
        [
            Party(G("0501"), "Brielle", Period(None, date(2023, 12, 31))),
            Party(G("1992"), "Voorne", Period(MERGER_DAY)),
            Party(A("12345678"), "Zorg"),
        ],
        [Merger("0501", "1992", MERGER_DAY)],
        [ChannelRule(G("1992"), Kanaal.PUSH, "https://voorne.example/in", Period(date(2025, 1, 1)))],
    )
    b = bericht("JW315", "12345678", "0501")
    assert r.resolve(b, date(2024, 6, 1)).kanaal is Kanaal.MAILBOX
    assert r.resolve(b, date(2025, 1, 1)).endpoint == "https://voorne.example/in"


@pytest.mark.parametrize(
    ("authenticated", "afzender", "on", "allowed"),
    [
        (A("12345678"), "12345678", DAY, True),  # itself
        (G("0363"), "0363", DAY, True),
        (A("11223344"), "12345678", date(2025, 1, 1), True),  # sends_for, from its first day
        (A("11223344"), "12345678", date(2024, 12, 31), False),  # before it
        (A("11223344"), "87654321", DAY, False),  # not listed
        (A("12345678"), "11223344", DAY, False),  # not the other way round
        (A("12345678"), "0363", DAY, False),
        (PartyRef(PartyKind.GEMEENTE, "12345678"), "12345678", DAY, False),  # same digits, wrong kind
    ],
)
def test_may_send_as(authenticated: PartyRef, afzender: str, on: date, allowed: bool) -> None:
    assert RULES.may_send_as(authenticated, afzender, on) is allowed


@pytest.mark.parametrize(
    ("naam", "afzender", "ontvanger", "on"),
    [
        ("JW301", "0363", "99999999", DAY),  # aanbieder not in the directory
        ("JW315", "12345678", "9999", DAY),  # gemeente not in the directory
        ("JW315", "12345678", "0501x", DAY),  # no valid code at all
        ("JW315", "12345678", "1992", date(2023, 12, 31)),  # before it existed
    ],
)
def test_unknown_receiver_names_only_the_code(naam: str, afzender: str, ontvanger: str, on: date) -> None:
    detail = refused(ErrorCode.UNKNOWN_RECEIVER, bericht(naam, afzender, ontvanger), on)
    assert ontvanger in detail
    assert afzender not in detail and "B-1" not in detail


@pytest.mark.parametrize(
    ("naam", "afzender", "ontvanger"),
    [
        ("JW301", "12345678", "0363"),  # an aanbieder sending a 301 (a gemeente's message)
        ("JW301", "0363", "0599"),  # a 301 to a gemeente
        ("WMO315", "0363", "12345678"),  # a 315 from a gemeente
        ("WMO315", "87654321", "12345678"),  # aanbieder to aanbieder
        ("WMO405", "12345678", "CAK"),  # iEb from an aanbieder
    ],
)
def test_kind_mismatch_is_refused(naam: str, afzender: str, ontvanger: str) -> None:
    refused(ErrorCode.ROUTE_NOT_ALLOWED, bericht(naam, afzender, ontvanger))


def test_registered_aanbieder_is_looked_up_when_the_files_do_not_list_it() -> None:
    asked: list[PartyRef] = []

    def registered(ref: PartyRef) -> Party | None:
        asked.append(ref)
        return Party(ref, "Nieuw") if ref.code == "55555555" else None

    got = RULES.resolve(bericht("JW301", "0363", "55555555"), DAY, registered=registered)
    assert got == Bestemming(A("55555555"), Kanaal.MAILBOX, None, "aanbieder.55555555")
    refused(ErrorCode.UNKNOWN_RECEIVER, bericht("JW301", "0363", "66666666"), registered=registered)
    RULES.resolve(bericht("JW301", "0363", "12345678"), DAY, registered=registered)  # in the files
    RULES.resolve(bericht("JW315", "12345678", "0363"), DAY, registered=registered)  # a gemeente
    assert asked == [A("55555555"), A("66666666")]


def test_registered_party_outside_its_period_is_unknown() -> None:
    def registered(ref: PartyRef) -> Party | None:
        return Party(ref, "Gestopt", Period(None, date(2025, 12, 31)))

    refused(ErrorCode.UNKNOWN_RECEIVER, bericht("JW301", "0363", "55555555"), registered=registered)


def test_party_lookup_is_exact_and_dated() -> None:
    assert RULES.party(G("0501"), date(2023, 12, 31)) == Party(
        G("0501"), "Brielle", Period(None, date(2023, 12, 31))
    )
    assert RULES.party(G("0501"), MERGER_DAY) is None  # party() does not follow mergers
    assert RULES.party(PartyRef(PartyKind.AANBIEDER, "0363"), DAY) is None
    assert RULES.party(CAK, DAY) is not None


@pytest.mark.parametrize(
    ("parties", "mergers", "message"),
    [
        ([Party(G("0363"), "A"), Party(G("0363"), "A2", Period(date(2020, 1, 1)))], [], "overlaps"),
        (
            [Party(G("0001"), "A"), Party(G("0002"), "B")],
            [Merger("0001", "0002", date(2020, 1, 1)), Merger("0002", "0001", date(2021, 1, 1))],
            "cycle",
        ),
        (
            [Party(G("0001"), "A")],
            [Merger("0001", "0002", date(2020, 1, 1)), Merger("0001", "0003", date(2021, 1, 1))],
            "twice",
        ),
        ([Party(PartyRef(PartyKind.GEMEENTE, "363"), "A")], [], "not a valid code"),
    ],
)
def test_inconsistent_records_are_refused(parties: list[Party], mergers: list[Merger], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RoutingRules("bad", parties, mergers)


def test_timeline_gaps_and_ends() -> None:
    t = Timeline.of_periods(
        [(Period(date(2020, 1, 1), date(2020, 12, 31)), "a"), (Period(date(2022, 1, 1)), "b")]
    )
    at = [
        t.at(d.toordinal())
        for d in (
            date(2019, 12, 31),
            date(2020, 1, 1),
            date(2020, 12, 31),
            date(2021, 6, 1),
            date(2022, 1, 1),
            date.max,
        )
    ]
    assert at == [None, "a", "a", None, "b", "b"]
