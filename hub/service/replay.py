"""Replay: deliver a stored message again, from its stored body, under the same message_id.

For dead letters after the cause is fixed, and for a receiver that lost what it had. The receiver
can drop a replay of something it already has by its X-Message-Id. The status goes back to
`forwarded` before the publish: were it the other way round, a worker could take the copy while
the row still says `dead_lettered` and drop it as stale.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.service.ports import BerichtStatus, BodyUnreadable, BrokerUnavailable, HubStore, Publisher


@dataclass(frozen=True, slots=True)
class ReplayResult:
    message_id: str
    ok: bool
    detail: str


async def replay(message_id: str, *, store: HubStore, publisher: Publisher, by: str) -> ReplayResult:
    stored = await store.get(message_id)
    if stored is None:
        return ReplayResult(message_id, False, "no such message")
    if stored.status is BerichtStatus.RECEIVED:
        return ReplayResult(message_id, False, "never forwarded: the sender's retry forwards it")
    try:
        body = await store.body(message_id)
    except BodyUnreadable as exc:
        return ReplayResult(message_id, False, str(exc))
    if body is None:
        return ReplayResult(message_id, False, "its body was deleted by retention")
    queue = f"{stored.receiver.kind.value}.{stored.receiver.code}"
    await store.mark_replayed(message_id, by=by, queue=queue)
    try:
        queue = await publisher.publish(stored, body)
    except BrokerUnavailable as exc:
        # Not in any queue now: back among the dead letters, where ops see it and replay it again
        # (left `forwarded`, nothing would ever deliver it).
        await store.add_event(message_id, "replay_publish_failed", {"reason": str(exc)})
        await store.mark_dead_lettered(message_id, reason=f"replay not published: {exc}"[:300])
        return ReplayResult(message_id, False, f"RabbitMQ did not take it ({exc}); replay it again")
    return ReplayResult(message_id, True, f"replayed to {queue}")
