"""Bearer tokens to parties: parsing, the admin token, and the short cache that bounds revocation."""

from __future__ import annotations

import hashlib

from hub.domain.parties import PartyKind, PartyRef
from hub.service.auth import TokenAuthenticator

GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0363")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _authenticator(valid: dict[str, PartyRef], clock: Clock, calls: list[str]) -> TokenAuthenticator:
    async def lookup(token: str) -> PartyRef | None:
        calls.append(token)
        return valid.get(token)

    return TokenAuthenticator(
        lookup, admin_token_sha256=hashlib.sha256(b"root-token").hexdigest(), ttl=5.0, clock=clock
    )


async def test_bearer_token_maps_to_its_party_and_other_schemes_do_not() -> None:
    auth = _authenticator({"t1": GEMEENTE}, Clock(), [])
    principal = await auth.authenticate("Bearer t1")
    assert principal is not None and principal.party == GEMEENTE and not principal.admin
    assert await auth.authenticate("bearer t1") is not None  # the scheme is case-insensitive
    for header in (None, "", "Bearer", "Bearer ", "Basic t1", "t1", "Bearer " + "x" * 600):
        assert await auth.authenticate(header) is None


async def test_admin_token_gives_the_admin_role_and_no_party() -> None:
    auth = _authenticator({}, Clock(), [])
    principal = await auth.authenticate("Bearer root-token")
    assert principal is not None and principal.admin and principal.party is None


async def test_lookups_are_cached_and_a_revocation_takes_effect_after_the_ttl() -> None:
    clock, calls = Clock(), list[str]()
    valid = {"t1": GEMEENTE}
    auth = _authenticator(valid, clock, calls)
    assert await auth.authenticate("Bearer t1") is not None
    assert await auth.authenticate("Bearer t1") is not None
    assert calls == ["t1"]
    del valid["t1"]  # revoked in the database
    clock.now = 4.9
    assert await auth.authenticate("Bearer t1") is not None
    clock.now = 5.1
    assert await auth.authenticate("Bearer t1") is None
    # Unknown tokens are cached too, so guessing does not hammer the database.
    assert await auth.authenticate("Bearer guess") is None
    assert await auth.authenticate("Bearer guess") is None
    assert calls == ["t1", "t1", "guess"]
