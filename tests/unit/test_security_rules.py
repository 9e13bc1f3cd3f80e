"""routing_rules/certificates.csv and limits.csv (checked with file:line like the other files), the
certificate look-up, the authenticator's certificate path, and the limiters."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from hub.adapters.routing_files import check_folder, load_rules
from hub.domain.parties import PartyKind, PartyRef
from hub.service.auth import ClientCertificate, TokenAuthenticator
from hub.service.limits import ByteBudget, ConcurrencyLimiter, RateLimiter, retry_after

RULES_DIR = Path(__file__).resolve().parents[2] / "routing_rules"
GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0363")
SUPPLIER = PartyRef(PartyKind.AANBIEDER, "11223344")
AANBIEDER = PartyRef(PartyKind.AANBIEDER, "12345678")
FP = "ab" * 32
DAY = date(2026, 3, 1)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return Path(shutil.copytree(RULES_DIR, tmp_path / "rules"))


def append(path: Path, line: str) -> int:
    text = path.read_text(encoding="utf-8")
    path.write_text(text + line + "\n", encoding="utf-8")
    return text.count("\n") + 1


BROKEN = [
    ("certificates.csv", "gemeente:0363,123,,,", "oin '123' is not 20 digits"),
    ("certificates.csv", "gemeente:0363,,abc,,", "fingerprint is not a SHA-256"),
    ("certificates.csv", "gemeente:0363,,,,", "needs an oin, a fingerprint or both"),
    ("certificates.csv", "gemeente:9998,00000001000000009998,,,", "party gemeente:9998 is not in"),
    ("certificates.csv", "0363,00000001000000000363,,,", "is not kind:code"),
    (
        "certificates.csv",
        "gemeente:0599,99000000000000000363,,2026-01-01,",
        "certificate with oin 99000000000000000363",
    ),
    ("certificates.csv", f"gemeente:0363,,{FP},2025-01-01,\ncak:CAK,,{FP},2026-01-01,", "overlaps"),
    ("certificates.csv", "gemeente:0363,00000001000000000363,,2026-01-01,2025-01-01", "before valid_from"),
    ("limits.csv", "gemeente:0363,0,,", "must be positive"),
    ("limits.csv", "gemeente:0363,fast,,", "rate_per_second must be a number"),
    ("limits.csv", "gemeente:0363,,,", "needs rate_per_second, burst or max_concurrent"),
    ("limits.csv", "aanbieder:11223344,1,,", "limits for aanbieder:11223344 are set already"),
    ("limits.csv", "gemeente:9998,1,,", "party gemeente:9998 is not in"),
]


@pytest.mark.parametrize(("name", "row", "fragment"), BROKEN)
def test_each_broken_row_is_reported_with_file_and_line(
    folder: Path, name: str, row: str, fragment: str
) -> None:
    line = append(folder / name, row)
    rules, errors = check_folder(folder)
    assert rules is None
    lines = {line, line + row.count("\n")}
    found = [str(e) for e in errors]
    assert any(
        any(e.startswith(f"{folder / name}:{n}: ") for n in lines) and fragment in e for e in found
    ), found


def test_certificates_map_by_fingerprint_first_then_oin_within_their_period(folder: Path) -> None:
    # A pinned certificate (fingerprint, colons and capitals allowed) whose subject carries gemeente
    # 0363's OIN: while the pin holds, it wins.
    pin = ":".join(FP.upper()[i : i + 2] for i in range(0, 64, 2))
    append(folder / "certificates.csv", f"aanbieder:12345678,,{pin},,2026-02-28")
    rules = load_rules(folder)
    by_fp = rules.certificate("99000000000000000363", FP, date(2026, 2, 1))
    assert by_fp is not None and by_fp.party == AANBIEDER  # the pinned certificate
    by_oin = rules.certificate("99000000000000000363", FP, DAY)  # the pin has expired: the OIN's row
    assert by_oin is not None and by_oin.party == GEMEENTE
    assert rules.certificate("99000000000000000363", "00" * 32, date(2024, 12, 31)) is None
    assert rules.certificate(None, "00" * 32, DAY) is None
    admin = rules.certificate("99000000000000000001", "00" * 32, DAY)
    assert admin is not None and admin.party is None


async def test_a_known_certificate_wins_an_unknown_one_falls_back_to_a_token_when_tokens_are_on() -> None:
    rules = load_rules(RULES_DIR)

    async def lookup(token: str) -> PartyRef | None:
        return AANBIEDER if token == "t" else None

    def auth(bearer: bool) -> TokenAuthenticator:
        return TokenAuthenticator(
            lookup, certificates=rules.certificate, bearer_tokens=bearer, today=lambda: DAY
        )

    known = ClientCertificate("00" * 32, "99000000000000000363", "CN=x")
    unknown = ClientCertificate("00" * 32, "00000001999999999999", "CN=y")
    operator = ClientCertificate("00" * 32, "99000000000000000001", "CN=ops")
    principal = await auth(True).authenticate("Bearer t", known)
    assert principal is not None and principal.party == GEMEENTE  # the certificate, not the token
    principal = await auth(True).authenticate("Bearer t", unknown)
    assert principal is not None and principal.party == AANBIEDER
    assert await auth(False).authenticate("Bearer t", unknown) is None
    assert await auth(False).authenticate("Bearer t", None) is None
    principal = await auth(False).authenticate(None, operator)
    assert principal is not None and principal.admin and principal.party is None


def test_rate_limiter_token_bucket_and_overrides() -> None:
    now = [0.0]
    rules = load_rules(RULES_DIR)  # limits.csv: aanbieder:11223344 gets 200/s, burst 2000
    limiter = RateLimiter(1.0, 3, overrides=rules.limit_override, clock=lambda: now[0])
    assert [limiter.take(GEMEENTE) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take(GEMEENTE) == pytest.approx(1.0)
    now[0] = 0.5
    assert limiter.take(GEMEENTE) == pytest.approx(0.5)
    now[0] = 1.0
    assert limiter.take(GEMEENTE) == 0.0
    assert all(limiter.take(SUPPLIER) == 0.0 for _ in range(2000))
    assert limiter.take(SUPPLIER) == pytest.approx(1 / 200)
    assert retry_after(0.01) == 1 and retry_after(2.2) == 3
    off = RateLimiter(0, 1)
    assert all(off.take(GEMEENTE) == 0.0 for _ in range(100))


def test_concurrency_limiter_and_byte_budget() -> None:
    rules = load_rules(RULES_DIR)
    limiter = ConcurrencyLimiter(2, overrides=rules.limit_override)
    assert limiter.acquire(GEMEENTE) and limiter.acquire(GEMEENTE) and not limiter.acquire(GEMEENTE)
    assert limiter.acquire(AANBIEDER)  # per party
    limiter.release(GEMEENTE)
    assert limiter.acquire(GEMEENTE)
    assert all(limiter.acquire(SUPPLIER) for _ in range(32)) and not limiter.acquire(SUPPLIER)

    budget = ByteBudget(100)
    assert budget.try_reserve(60) and not budget.try_reserve(41) and budget.try_reserve(40)
    budget.release(60)
    assert budget.in_use == 40 and budget.peak == 100
    unlimited = ByteBudget(0)
    assert unlimited.try_reserve(10**12)
