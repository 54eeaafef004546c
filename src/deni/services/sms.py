"""Deliver stored notifications by SMS: bounded batches, bounded retries with backoff."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from deni.services.ports import Clock, SmsNotSent, SmsQueue, SmsSender

BATCH_MAX = 100
ATTEMPTS_MAX = 5
LEASE_S = 120  # longer than one send's timeouts; a crashed sender's claim lapses after it
BACKOFF_FIRST_S = 30
BACKOFF_S_MAX = 3_600


@dataclass(frozen=True, slots=True)
class SmsReport:
    sent: int
    retrying: int
    failed: int


def backoff_s(attempts: int) -> int:
    """Wait before the next attempt: 30 s, 60 s, 120 s, ... up to an hour."""
    assert attempts >= 1
    return int(min(BACKOFF_FIRST_S * (1 << min(attempts - 1, 16)), BACKOFF_S_MAX))


def send_pending_sms(
    *,
    queue: SmsQueue,
    sender: SmsSender,
    clock: Clock,
    batch: int = BATCH_MAX,
    attempts_max: int = ATTEMPTS_MAX,
) -> SmsReport:
    """Send up to `batch` notifications that are due. Safe to run from several workers."""
    assert 1 <= batch <= BATCH_MAX
    assert 1 <= attempts_max <= 20
    sent = retrying = failed = 0
    for pending in queue.claim_due(now=clock.now(), limit=batch, lease_s=LEASE_S):
        attempt = pending.attempts + 1
        try:
            sender.send(
                phone=pending.phone,
                body=pending.body,
                idempotency_key=f"notification:{pending.notification_id}",
            )
        except SmsNotSent as error:
            now = clock.now()
            if error.permanent or attempt >= attempts_max:
                queue.mark_failed(pending.notification_id, now=now, error=str(error), retry_at=None)
                failed += 1
            else:
                retry_at = now + timedelta(seconds=backoff_s(attempt))
                queue.mark_failed(
                    pending.notification_id, now=now, error=str(error), retry_at=retry_at
                )
                retrying += 1
            continue
        queue.mark_sent(pending.notification_id, now=clock.now())
        sent += 1
    return SmsReport(sent, retrying, failed)
