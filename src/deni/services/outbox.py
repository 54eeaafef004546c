"""The transactional outbox: work written with the business change, sent later by a worker.

A message is a trigger, never the truth: each handler re-reads its request row and does
nothing when the row says the work is done, so a message sent twice (a lease that lapsed under
a slow worker, a retry from the dead-letter list) is harmless.

Retries are bounded (`MpesaPolicy.outbox_attempts_max`) with exponential backoff and full
jitter; a message that exhausts them, or whose handler fails unexpectedly that often, goes to
the dead-letter list (`deni outbox dead`, `deni outbox retry ID`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from deni.ids import new_id
from deni.services.common import SYSTEM_ACTOR, audit
from deni.services.mpesa.ports import MpesaPolicy, OutboxMessage, OutboxState
from deni.services.ports import Clock, Deps, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

PAYLOAD_CHARS_MAX = 4_000


class RetryLater(Exception):
    """The handler could not do its work now (Daraja busy or unreachable); try again later."""


Handler = Callable[[OutboxMessage], None]


@dataclass(frozen=True, slots=True)
class OutboxReport:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0


def enqueue(
    uow: UnitOfWork,
    *,
    topic: str,
    payload: Mapping[str, object],
    unique_key: str,
    now: datetime,
) -> bool:
    """Write a message in the caller's transaction. False when `unique_key` is already queued."""
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    assert len(encoded) <= PAYLOAD_CHARS_MAX, topic
    message = OutboxMessage(
        id=new_id(),
        topic=topic,
        payload=encoded,
        unique_key=unique_key,
        state=OutboxState.PENDING,
        attempts=0,
        next_attempt_at=now,
    )
    return uow.outbox.add(message, now)


def backoff_s(attempts: int, policy: MpesaPolicy, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempts)] (AWS architecture blog)."""
    assert attempts >= 1
    ceiling_s = min(policy.backoff_s_max, policy.backoff_base_s * 2 ** min(attempts, 30))
    return rng.uniform(0, ceiling_s)


def run_once(
    deps: Deps,
    *,
    handlers: Mapping[str, Handler],
    policy: MpesaPolicy,
    rng: random.Random,
) -> OutboxReport:
    """Claim one bounded batch of due messages and handle each once."""
    now = deps.clock.now()
    with deps.uow() as uow:
        batch = uow.outbox.claim_due(now=now, limit=policy.batch_max, lease_s=policy.lease_s)
        uow.commit()
    assert len(batch) <= policy.batch_max
    done = retried = dead = 0
    for message in batch:
        outcome = _handle(deps.uow, deps.clock, handlers, policy, rng, message)
        done += outcome == OutboxState.DONE
        retried += outcome == OutboxState.PENDING
        dead += outcome == OutboxState.DEAD
    return OutboxReport(claimed=len(batch), done=done, retried=retried, dead=dead)


def _handle(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    handlers: Mapping[str, Handler],
    policy: MpesaPolicy,
    rng: random.Random,
    message: OutboxMessage,
) -> OutboxState:
    handler = handlers.get(message.topic)
    error = ""
    if handler is None:
        # No handler can ever take it: straight to the dead-letter list.
        error = f"no handler for topic {message.topic!r}"
        message = replace(message, attempts=policy.outbox_attempts_max)
    else:
        try:
            handler(message)
        except RetryLater as retry:
            error = str(retry) or "retry later"
        except Exception as unexpected:
            # A bug or a database failure: keep the message, count the attempt, leave a trace.
            log.exception("outbox.handler_failed", topic=message.topic, message_id=message.id)
            error = f"{type(unexpected).__name__}: {unexpected}"
    now = clock.now()
    with uow_factory() as uow:
        state = _record(uow, message, error=error, now=now, policy=policy, rng=rng)
        uow.commit()
    if state is OutboxState.DEAD:
        log.warning("outbox.dead", topic=message.topic, message_id=message.id, error=error[:200])
    return state


def _record(
    uow: UnitOfWork,
    message: OutboxMessage,
    *,
    error: str,
    now: datetime,
    policy: MpesaPolicy,
    rng: random.Random,
) -> OutboxState:
    if not error:
        uow.outbox.mark_done(message.id, now=now)
        return OutboxState.DONE
    if message.attempts >= policy.outbox_attempts_max:
        uow.outbox.mark_dead(message.id, now=now, error=error)
        return OutboxState.DEAD
    delay_s = backoff_s(message.attempts, policy, rng)
    retry_at = now + timedelta(seconds=delay_s)
    uow.outbox.mark_retry(message.id, now=now, next_attempt_at=retry_at, error=error)
    return OutboxState.PENDING


def dead_letters(
    deps: Deps,
    *,
    limit: int,
) -> list[OutboxMessage]:
    with deps.uow.read_only() as uow:
        return uow.outbox.list(states=[OutboxState.DEAD], limit=limit)


def retry_dead(
    deps: Deps,
    *,
    message_id: str,
    actor_id: str = SYSTEM_ACTOR,
    channel: str = "cli",
) -> bool:
    """Put a dead message back in the queue with its attempts reset; audited."""
    now = deps.clock.now()
    with deps.uow() as uow:
        rearmed = uow.outbox.rearm(message_id, now=now)
        if rearmed:
            audit(
                uow,
                actor_id=actor_id,
                channel=channel,
                command="retry_dead_letter",
                details={"message_id": message_id},
                now=now,
            )
        uow.commit()
    return rearmed
