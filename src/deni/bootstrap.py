"""The composition root: the one place that picks and wires adapters from the settings."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from sqlalchemy import Engine

from deni.adapters.clock import SystemClock
from deni.adapters.daraja.client import DarajaClient, DarajaConfig
from deni.adapters.daraja.gateway import DarajaGateway
from deni.adapters.db.engine import make_engine
from deni.adapters.db.mpesa_repositories import SqlTokenStore
from deni.adapters.db.session_gate import SqlSessionGate
from deni.adapters.db.uow import SqlUnitOfWorkFactory
from deni.adapters.db.ussd_reads import SqlUssdReads
from deni.adapters.mpesa_off import MpesaOffRequests
from deni.adapters.observability import Metrics
from deni.adapters.security import JwtAccessTokens, PepperedArgon2PinHasher
from deni.adapters.sessions import MemorySessionStore, RedisSessionStore, SqlSessionStore
from deni.adapters.sms import AfricasTalkingSms, DatabaseSmsOutbox, SqlSmsQueue
from deni.config import Settings
from deni.domain.secrecy import derive_key
from deni.services import limits
from deni.services.limits import LimitCounters
from deni.services.mpesa import MpesaDeps, MpesaOutbox
from deni.services.mpesa_ports import MpesaPolicy
from deni.services.ports import (
    AccessTokens,
    Clock,
    MpesaGateway,
    MpesaRequests,
    PinHasher,
    SessionGate,
    SessionStore,
    SmsQueue,
    SmsSender,
)
from deni.services.ussd_ports import UssdReads


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
    # The abuse limits' counters, in the session store, their subjects keyed by the pepper.
    limit_counters: LimitCounters
    sms: SmsSender
    sms_queue: SmsQueue
    mpesa_requests: MpesaRequests
    ussd_reads: UssdReads
    session_gate: SessionGate
    # M-PESA through Daraja: None unless DENI_MPESA=on.
    mpesa: MpesaDeps | None = None

    def close(self) -> None:
        if self.mpesa is not None:
            self.mpesa.gateway.close()
        self.engine.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    hasher: PinHasher | None = None,
    mpesa_gateway: MpesaGateway | None = None,
) -> Deni:
    settings = settings or Settings()
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    clock = clock or SystemClock()
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
        **_channel_adapters(settings, engine, clock),
        ussd_reads=SqlUssdReads(engine),
        session_gate=SqlSessionGate(engine),
        mpesa=_mpesa(settings, engine, clock, mpesa_gateway),
    )


class _Channels(TypedDict):
    sessions: SessionStore
    limit_counters: LimitCounters
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
        sms = DatabaseSmsOutbox(engine, clock=clock, pepper=settings.pin_pepper)
    return _Channels(
        sessions=sessions,
        limit_counters=LimitCounters(
            sessions, derive_key(settings.pin_pepper, limits.SUBJECT_KEY_LABEL)
        ),
        sms=sms,
        sms_queue=SqlSmsQueue(engine),
        mpesa_requests=MpesaOutbox() if settings.mpesa else MpesaOffRequests(),
    )


def mpesa_policy(settings: Settings) -> MpesaPolicy:
    return MpesaPolicy(
        stk_query_after_s=settings.mpesa_stk_query_after_s,
        status_after_s=settings.mpesa_status_after_s,
        paybill_confirm_after_s=settings.mpesa_paybill_confirm_after_s,
        pull_interval_s=settings.mpesa_pull_interval_s,
    )


def _mpesa(
    settings: Settings, engine: Engine, clock: Clock, gateway: MpesaGateway | None
) -> MpesaDeps | None:
    """The Daraja client (its token shared through the database) and the M-PESA use cases."""
    if not settings.mpesa:
        return None
    if gateway is None:
        config = daraja_config(settings)
        owner = hashlib.sha256(config.consumer_key.encode()).hexdigest()[:16]
        store = SqlTokenStore(engine, name=f"{config.environment}:{owner}", clock=clock.now)
        gateway = DarajaGateway(DarajaClient(config, clock=clock.now, token_store=store))
    return MpesaDeps(
        uow=SqlUnitOfWorkFactory(engine),
        clock=clock,
        gateway=gateway,
        policy=mpesa_policy(settings),
    )


def daraja_config(settings: Settings) -> DarajaConfig:
    pem = settings.daraja_certificate_pem
    if pem is not None and not pem.lstrip().startswith("-----BEGIN"):
        pem = Path(pem).read_text()
    return DarajaConfig(
        environment=settings.daraja_environment,
        consumer_key=settings.daraja_consumer_key,
        consumer_secret=settings.daraja_consumer_secret,
        stk_shortcode=settings.daraja_stk_shortcode,
        stk_passkey=settings.daraja_stk_passkey,
        b2c_shortcode=settings.daraja_b2c_shortcode,
        paybill_shortcode=settings.daraja_paybill_shortcode,
        pull_nominated_number=settings.daraja_pull_nominated_number,
        initiator_name=settings.daraja_initiator_name,
        callback_base_url=settings.callback_base,
        callback_path_token=settings.callback_token,
        initiator_password=settings.daraja_initiator_password if pem else None,
        certificate_pem=pem,
        security_credential=settings.daraja_security_credential,
        base_url=settings.daraja_base_url,
        timeout_s=settings.daraja_timeout_s,
    )
