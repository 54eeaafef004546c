"""The composition root: the one place that picks and wires adapters from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from sqlalchemy import Engine

from deni.adapters.clock import SystemClock
from deni.adapters.db.engine import make_engine
from deni.adapters.db.uow import SqlUnitOfWorkFactory
from deni.adapters.mpesa_requests_fake import RecordingMpesaRequests
from deni.adapters.observability import Metrics
from deni.adapters.security import JwtAccessTokens, PepperedArgon2PinHasher
from deni.adapters.sessions import MemorySessionStore, RedisSessionStore, SqlSessionStore
from deni.adapters.sms import AfricasTalkingSms, DatabaseSmsOutbox, SqlSmsQueue
from deni.config import Settings
from deni.services.ports import (
    AccessTokens,
    Clock,
    MpesaRequests,
    PinHasher,
    SessionStore,
    SmsQueue,
    SmsSender,
)


@dataclass
class Deni:
    """Everything a request, a worker or a CLI command needs, wired once."""

    settings: Settings
    engine: Engine
    uow: SqlUnitOfWorkFactory
    clock: Clock
    hasher: PinHasher
    tokens: AccessTokens
    metrics: Metrics
    sessions: SessionStore
    sms: SmsSender
    sms_queue: SmsQueue
    mpesa_requests: MpesaRequests

    def close(self) -> None:
        self.engine.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    hasher: PinHasher | None = None,
) -> Deni:
    settings = settings or Settings()
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    return Deni(
        settings=settings,
        engine=engine,
        uow=SqlUnitOfWorkFactory(engine),
        clock=clock or SystemClock(),
        hasher=hasher
        or PepperedArgon2PinHasher(
            pepper=settings.pin_pepper,
            memory_cost_kib=settings.pin_hash_memory_kib,
            time_cost=settings.pin_hash_time_cost,
        ),
        tokens=JwtAccessTokens(secret=settings.jwt_secret, ttl_s=settings.access_token_ttl_s),
        metrics=Metrics(),
        **_channel_adapters(settings, engine, clock or SystemClock()),
    )


class _Channels(TypedDict):
    sessions: SessionStore
    sms: SmsSender
    sms_queue: SmsQueue
    mpesa_requests: MpesaRequests


def _channel_adapters(settings: Settings, engine: Engine, clock: Clock) -> _Channels:
    """USSD session store, SMS gateway and the M-PESA request recorder, from the settings."""
    sessions: SessionStore
    if settings.session_store == "redis":
        sessions = RedisSessionStore.from_url(settings.redis_url)
    elif settings.session_store == "sql":
        sessions = SqlSessionStore(engine)
    else:
        sessions = MemorySessionStore()
    sms: SmsSender
    if settings.sms_backend == "africastalking":
        sms = AfricasTalkingSms(
            username=settings.at_username,
            api_key=settings.at_api_key,
            sender_id=settings.at_sender_id,
        )
    else:
        sms = DatabaseSmsOutbox(engine, clock=clock)
    return _Channels(
        sessions=sessions,
        sms=sms,
        sms_queue=SqlSmsQueue(engine),
        mpesa_requests=RecordingMpesaRequests(),
    )
