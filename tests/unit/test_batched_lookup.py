"""BatchedLookup: concurrent look-ups share one query; errors and cancellations stay with their callers."""

from __future__ import annotations

import asyncio

import pytest

from hub.adapters.db.batched_lookup import BatchedLookup


class Table:
    def __init__(self, rows: dict[str, int], fail: BaseException | None = None) -> None:
        self.rows = rows
        self.fail = fail
        self.asked: list[list[str]] = []

    async def fetch(self, keys: list[str]) -> dict[str, int]:
        self.asked.append(keys)
        await asyncio.sleep(0.01)  # a round trip: callers arriving meanwhile wait for the next query
        if self.fail is not None:
            raise self.fail
        return {k: self.rows[k] for k in keys if k in self.rows}


async def test_lookups_of_one_moment_share_one_query() -> None:
    table = Table({"a": 1, "b": 2})
    lookup: BatchedLookup[str, int] = BatchedLookup(table.fetch)
    assert await asyncio.gather(*(lookup.get(k) for k in ["a", "b", "x", "a"])) == [1, 2, None, 1]
    assert table.asked == [["a", "b", "x"]]


async def test_callers_arriving_during_a_query_go_in_the_next_one() -> None:
    table = Table({str(i): i for i in range(10)})
    lookup: BatchedLookup[str, int] = BatchedLookup(table.fetch, max_batch=4)
    first = asyncio.gather(*(lookup.get(str(i)) for i in range(6)))
    await asyncio.sleep(0.005)  # the first query is on its way
    late = asyncio.gather(*(lookup.get(str(i)) for i in range(6, 10)))
    assert await first == list(range(6)) and await late == list(range(6, 10))
    assert table.asked[0] == ["0", "1", "2", "3"]  # max_batch
    assert sorted(k for keys in table.asked for k in keys) == sorted(str(i) for i in range(10))
    assert len(table.asked) == 3


async def test_a_failed_query_fails_its_callers_only_and_the_next_query_runs() -> None:
    table = Table({"a": 1}, fail=ConnectionError("database down"))
    lookup: BatchedLookup[str, int] = BatchedLookup(table.fetch)
    results = await asyncio.gather(lookup.get("a"), lookup.get("b"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    table.fail = None
    assert await lookup.get("a") == 1


async def test_a_caller_that_gives_up_leaves_the_others_their_answer() -> None:
    table = Table({"a": 1, "b": 2})
    lookup: BatchedLookup[str, int] = BatchedLookup(table.fetch)
    impatient = asyncio.ensure_future(lookup.get("a"))
    patient = asyncio.ensure_future(lookup.get("b"))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == 2
    with pytest.raises(asyncio.CancelledError):
        await impatient
