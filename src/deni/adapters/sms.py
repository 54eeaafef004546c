"""SMS: Africa's Talking over HTTP, a fake that keeps messages in the database, and the queue of
notifications waiting for their SMS.

A message that carries a secret (a reset code) says so when it is sent (`secret=`): Africa's
Talking keeps nothing of it here, and the fake keeps it with the secret masked, the whole text
only sealed for its handset, and only until SECRET_READABLE_FOR has passed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from deni.adapters.db import tables as t
from deni.adapters.db.engine import reading
from deni.adapters.db.ussd_tables import sms_deliveries, sms_outbox
from deni.domain.secrecy import derive_key
from deni.ids import new_id
from deni.services.ports import Clock, PendingSms, SmsNotSent

AT_LIVE_URL = "https://api.africastalking.com/version1/messaging"
AT_SANDBOX_URL = "https://api.sandbox.africastalking.com/version1/messaging"
AT_SANDBOX_USERNAME = "sandbox"
# Per-recipient status codes: 100 Processed, 101 Sent, 102 Queued are accepted. These others
# cannot succeed on a retry: 403 InvalidPhoneNumber, 404 UnsupportedNumberType,
# 406 UserInBlacklist. The rest (401 RiskHold, 405 InsufficientBalance, 5xx) may later.
AT_ACCEPTED = frozenset({100, 101, 102})
AT_PERMANENT = frozenset({403, 404, 406})
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
BODY_CHARS_MAX = 918  # six concatenated GSM-7 parts; our texts aim at one (160)
ERROR_CHARS_MAX = 200
OUTBOX_PAGE_MAX = 500
SECRET_MASK = "******"  # noqa: S105 (what a secret is shown as, not one)
# How long the fake's handset may read a message's secret: longer than any code Deni sends
# lives (a reset code: 10 minutes). After it, only the masked text is left.
SECRET_READABLE_FOR = timedelta(minutes=15)
FORGET_BATCH_MAX = 10_000
SEAL_KEY_LABEL = "sms-outbox-seal"


def _e164(phone: str) -> str:
    assert phone.isdigit(), "normalised 254... numbers only"
    assert phone.startswith("254"), "normalised 254... numbers only"
    return "+" + phone


class AfricasTalkingSms:
    """Africa's Talking bulk SMS API. One recipient per call, so each result is unambiguous."""

    def __init__(
        self,
        *,
        username: str,
        api_key: str,
        sender_id: str = "",
        client: httpx.Client | None = None,
    ) -> None:
        assert username
        assert api_key
        self._username = username
        self._api_key = api_key
        self._sender_id = sender_id
        self._url = AT_SANDBOX_URL if username == AT_SANDBOX_USERNAME else AT_LIVE_URL
        timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        self._client = client or httpx.Client(timeout=timeout)

    def send(
        self, *, phone: str, body: str, idempotency_key: str, secret: str | None = None
    ) -> None:
        # Africa's Talking has no idempotency key for SMS: the queue's lease and state make a
        # second send rare, and a duplicate SMS is harmless next to a lost one. A secret in
        # the body is kept nowhere here, nor logged: errors name the status, never the text.
        assert 0 < len(body) <= BODY_CHARS_MAX
        assert secret is None or (secret and secret in body)
        form = {"username": self._username, "to": _e164(phone), "message": body}
        if self._sender_id:
            form["from"] = self._sender_id
        headers = {"apiKey": self._api_key, "Accept": "application/json"}
        try:
            response = self._client.post(self._url, data=form, headers=headers)
        except httpx.HTTPError as error:
            raise SmsNotSent(
                f"gateway unreachable: {type(error).__name__}", permanent=False
            ) from error
        if response.status_code in (401, 403):
            raise SmsNotSent(
                f"gateway refused our credentials ({response.status_code})", permanent=False
            )
        if response.status_code >= 400:
            raise SmsNotSent(f"gateway answered {response.status_code}", permanent=False)
        _check_recipient(_recipient(response))

    def close(self) -> None:
        self._client.close()


def _recipient(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
        recipients = data["SMSMessageData"]["Recipients"]
    except (ValueError, KeyError, TypeError) as error:
        raise SmsNotSent("gateway answered something unreadable", permanent=False) from error
    if (
        not isinstance(recipients, list)
        or len(recipients) != 1
        or not isinstance(recipients[0], dict)
    ):
        message = str(data.get("SMSMessageData", {}).get("Message", ""))[:80]
        raise SmsNotSent(f"gateway took no recipient: {message}", permanent=True)
    recipient: dict[str, Any] = recipients[0]
    return recipient


def _check_recipient(recipient: dict[str, Any]) -> None:
    try:
        code = int(recipient.get("statusCode", 0))
    except (TypeError, ValueError):
        code = 0
    if code in AT_ACCEPTED:
        return
    status = str(recipient.get("status", ""))[:40]
    raise SmsNotSent(f"gateway status {code} {status}", permanent=code in AT_PERMANENT)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: str
    phone: str
    body: str  # as the handset shows it: the secret only while it may still read it
    created_at: datetime
    holds_secret: bool = False


class DatabaseSmsOutbox:
    """The fake gateway: keeps each message in `sms_outbox`, once per idempotency key.

    The row is the message as delivered, so one that carries a secret is stored with the
    secret masked; the whole text is kept sealed (Fernet, a key derived from the PIN pepper)
    for the fake handset (`messages`, `deni sms outbox`, tests) to read for
    SECRET_READABLE_FOR, after which `forget_secrets` drops it.
    """

    def __init__(self, engine: Engine, *, clock: Clock, pepper: str) -> None:
        self._engine = engine
        self._clock = clock
        seal_key = derive_key(pepper, SEAL_KEY_LABEL)
        self._fernet = Fernet(base64.urlsafe_b64encode(seal_key))

    def send(
        self, *, phone: str, body: str, idempotency_key: str, secret: str | None = None
    ) -> None:
        assert 0 < len(body) <= BODY_CHARS_MAX
        assert secret is None or (secret and secret in body), "the secret is in the text"
        now = self._clock.now()
        row: dict[str, object] = {
            "id": new_id(),
            "idempotency_key": idempotency_key[:200],
            "phone": phone,
            "body": body,
            "holds_secret": secret is not None,
            "created_at": now,
        }
        if secret is not None:
            row["body"] = body.replace(secret, SECRET_MASK)
            row["sealed_body"] = self._fernet.encrypt(body.encode()).decode()
            row["readable_until"] = now + SECRET_READABLE_FOR
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(sms_outbox).values(**row))
        except IntegrityError:
            return  # sent before under this key

    def messages(self, *, phone: str | None = None, limit: int = 50) -> list[OutboxMessage]:
        """Newest first, as the handset shows them."""
        assert 1 <= limit <= OUTBOX_PAGE_MAX
        query = select(sms_outbox).order_by(sms_outbox.c.created_at.desc(), sms_outbox.c.id)
        if phone is not None:
            query = query.where(sms_outbox.c.phone == phone)
        with reading(self._engine) as connection:
            rows = connection.execute(query.limit(limit)).all()
        now = self._clock.now()
        return [
            OutboxMessage(r.id, r.phone, self._shown(r, now), r.created_at, r.holds_secret)
            for r in rows
        ]

    def forget_secrets(self, *, now: datetime, limit: int = 500) -> int:
        """Drop the sealed text of up to `limit` messages past SECRET_READABLE_FOR."""
        assert 1 <= limit <= FORGET_BATCH_MAX
        o = sms_outbox.c
        due = select(o.id).where(o.readable_until <= now).limit(limit)
        with self._engine.begin() as connection:
            result = connection.execute(
                update(sms_outbox)
                .where(o.id.in_(due))
                .values(sealed_body=None, readable_until=None)
            )
        return int(result.rowcount)

    def _shown(self, row: Any, now: datetime) -> str:
        if row.sealed_body is None or row.readable_until is None or row.readable_until <= now:
            return str(row.body)
        try:
            return self._fernet.decrypt(row.sealed_body.encode()).decode()
        except InvalidToken:
            return str(row.body)  # sealed under another pepper: the masked text


class SqlSmsQueue:
    """Pending notifications, claimed with a lease so two senders never both send one."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim_due(self, *, now: datetime, limit: int, lease_s: int) -> list[PendingSms]:
        assert 1 <= limit <= 1_000
        assert 1 <= lease_s <= 3_600
        n, u, d = t.notifications, t.users, sms_deliveries
        due = or_(
            and_(
                n.c.sms_state == "pending",
                or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now),
            ),
            and_(n.c.sms_state == "sending", d.c.claimed_until <= now),  # a lapsed lease
        )
        query = (
            select(n.c.id, n.c.sms_state, n.c.body, u.c.phone, d.c.attempts, d.c.claimed_until)
            .select_from(
                n.join(u, u.c.id == n.c.user_id).outerjoin(d, d.c.notification_id == n.c.id)
            )
            # An account that gave its number up has a stand-in that is not a number.
            .where(due, u.c.phone.like("254%"))
            .order_by(n.c.created_at, n.c.id)
            .limit(limit)
        )
        claimed: list[PendingSms] = []
        with self._engine.begin() as connection:
            for row in connection.execute(query).all():
                if self._claim(connection, row, now=now, lease_s=lease_s):
                    claimed.append(PendingSms(row.id, row.phone, row.body, row.attempts or 0))
        return claimed

    def _claim(self, connection: Any, row: Any, *, now: datetime, lease_s: int) -> bool:
        n, d = t.notifications, sms_deliveries
        until = now + timedelta(seconds=lease_s)
        # Conditional updates: if another sender got there first, the row count is 0.
        taken = connection.execute(
            update(n)
            .where(n.c.id == row.id, n.c.sms_state == row.sms_state)
            .values(sms_state="sending")
        ).rowcount
        if taken != 1:
            return False
        if row.attempts is None:
            connection.execute(
                insert(d).values(
                    notification_id=row.id,
                    attempts=1,
                    claimed_until=until,
                    next_attempt_at=None,
                    last_error="",
                    updated_at=now,
                )
            )
            return True
        same_lease = (
            d.c.claimed_until == row.claimed_until
            if row.claimed_until
            else d.c.claimed_until.is_(None)
        )
        moved = connection.execute(
            update(d)
            .where(d.c.notification_id == row.id, same_lease)
            .values(attempts=d.c.attempts + 1, claimed_until=until, updated_at=now)
        ).rowcount
        return bool(moved == 1)

    def mark_sent(self, notification_id: str, *, now: datetime) -> None:
        self._finish(notification_id, state="sent", now=now, error="", retry_at=None)

    def mark_failed(
        self, notification_id: str, *, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        state = "pending" if retry_at is not None else "failed"
        self._finish(notification_id, state=state, now=now, error=error, retry_at=retry_at)

    def _finish(
        self,
        notification_id: str,
        *,
        state: str,
        now: datetime,
        error: str,
        retry_at: datetime | None,
    ) -> None:
        n, d = t.notifications, sms_deliveries
        with self._engine.begin() as connection:
            connection.execute(update(n).where(n.c.id == notification_id).values(sms_state=state))
            connection.execute(
                update(d)
                .where(d.c.notification_id == notification_id)
                .values(
                    claimed_until=None,
                    next_attempt_at=retry_at,
                    last_error=error[:ERROR_CHARS_MAX],
                    updated_at=now,
                )
            )
