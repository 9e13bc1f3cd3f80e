"""SqlAlchemyPartyStore and the `hub parties` / `hub migrate` commands against real databases."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.adapters.db import SqlAlchemyPartyStore, create_party_store
from hub.adapters.db.migrate import head_revision
from hub.adapters.db.tables import tokens
from hub.domain.parties import PartyKind, PartyRef
from hub.entrypoints.cli import main
from hub.service.ports import PartyExists

AANBIEDER = PartyRef(PartyKind.AANBIEDER, "12345678")
GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0363")
CAK = PartyRef(PartyKind.CAK, "CAK")


@pytest.fixture
async def parties(database_url: str) -> AsyncIterator[SqlAlchemyPartyStore]:
    store = await create_party_store(database_url)
    yield store
    await store.close()


async def test_party_registration_round_trip(parties: SqlAlchemyPartyStore) -> None:
    added = await parties.add_party(AANBIEDER, "Zorg BV")
    assert await parties.get_party(AANBIEDER) == added
    assert added.registered_at.tzinfo is not None
    assert await parties.get_party(PartyRef(PartyKind.AANBIEDER, "87654321")) is None

    with pytest.raises(PartyExists) as caught:
        await parties.add_party(AANBIEDER, "Another name")
    assert caught.value.existing.naam == "Zorg BV"

    await parties.add_party(GEMEENTE, "Amsterdam")
    assert [p.ref for p in await parties.list_parties()] == [AANBIEDER, GEMEENTE]  # by kind, then code


async def test_token_lifecycle(parties: SqlAlchemyPartyStore) -> None:
    token = await parties.create_token(AANBIEDER, "portal")
    other = await parties.create_token(CAK, "batch")  # fixed parties need no registration here
    assert token.startswith("hub_") and len(token) > 40 and token != other

    assert await parties.party_for_token(token) == AANBIEDER
    assert await parties.party_for_token(other) == CAK
    assert await parties.party_for_token(token + "x") is None
    assert await parties.party_for_token("") is None

    assert await parties.revoke_token(token) is True
    assert await parties.party_for_token(token) is None
    assert await parties.revoke_token(token) is False  # already revoked
    assert await parties.party_for_token(other) == CAK  # the other one still works

    listed = await parties.list_tokens()
    assert [(t.party, t.label, t.revoked_at is not None) for t in listed] == [
        (AANBIEDER, "portal", True),
        (CAK, "batch", False),
    ]
    assert await parties.revoke_token(str(listed[1].id)) is True
    assert await parties.party_for_token(other) is None
    assert await parties.revoke_token("999999") is False
    assert [t.party for t in await parties.list_tokens(CAK)] == [CAK]


async def test_only_the_sha256_of_a_token_is_stored(parties: SqlAlchemyPartyStore) -> None:
    token = await parties.create_token(GEMEENTE, "x")
    async with parties.engine.connect() as conn:
        rows = (await conn.execute(select(tokens))).mappings().all()
    assert len(rows) == 1
    assert rows[0]["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {str(v) for v in rows[0].values()}


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def hub_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    # No routing files: an aanbieder is only known when registered in the database.
    monkeypatch.setenv("HUB_ROUTING_RULES", str(tmp_path / "no-rules"))
    return database_url


def test_cli_parties_add_list_token_create_and_revoke(
    hub_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["parties", "token", "create", "--party", "12345678"]) == 1
    assert "hub parties add" in capsys.readouterr().err  # unregistered aanbieder: refused, with the fix

    assert main(["parties", "add", "--kind", "aanbieder", "--code", "12345678", "--name", "Zorg BV"]) == 0
    assert main(["parties", "add", "--kind", "aanbieder", "--code", "12345678"]) == 1
    assert "registered already" in capsys.readouterr().err

    assert main(["parties", "token", "create", "--party", "12345678", "--label", "portal"]) == 0
    token = capsys.readouterr().out
    assert token.startswith("hub_") and token.count("\n") == 1  # only the token on stdout
    assert run(lambda s: s.party_for_token(token.strip()), hub_env) == AANBIEDER

    assert main(["parties", "token", "create", "--party", "0363"]) == 0  # a gemeente: kind from the code
    assert capsys.readouterr().out.startswith("hub_")
    assert main(["parties", "list"]) == 0
    listing = capsys.readouterr().out
    assert "aanbieder:12345678" in listing and "Zorg BV" in listing and "gemeente:0363" in listing
    assert "hub_" not in listing

    assert main(["parties", "token", "revoke", token.strip()]) == 0
    assert run(lambda s: s.party_for_token(token.strip()), hub_env) is None
    assert main(["parties", "token", "revoke", token.strip()]) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["parties", "add", "--kind", "aanbieder", "--code", "1234"],  # an AGB code has 8 digits
        ["parties", "add", "--kind", "cak", "--code", "SVB"],  # fixed parties have their own code
        ["parties", "token", "create", "--party", "X12"],  # no kind has this form
    ],
)
def test_cli_refuses_invalid_codes(hub_env: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("hub parties: ")


def test_cli_without_migrated_database_says_run_migrate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "sub" / "hub.sqlite"
    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    assert main(["parties", "list"]) == 1
    assert "run `hub migrate` first" in capsys.readouterr().err
    assert not db.exists()  # asking did not create an empty database

    assert main(["migrate"]) == 0  # creates the folder, too
    assert capsys.readouterr().out.strip() == f"database at revision {head_revision()}"
    assert main(["migrate"]) == 0  # again: nothing to do, same answer
    assert main(["parties", "list"]) == 0


def run(call: object, url: str) -> object:
    """Call an async PartyStore method from a sync test with a store of its own."""

    async def go() -> object:
        store = await create_party_store(url)
        try:
            return await call(store)  # type: ignore[operator]
        finally:
            await store.close()

    return asyncio.run(go())
