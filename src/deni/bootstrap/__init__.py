"""The composition root: the one place that picks and wires adapters from the settings, and
builds, starts and stops what runs in the background (background.py).

Entrypoints reach adapters only through this package: `Deni` and its services (a readiness
check, the schema upgrade, the background work), and the few functions re-exported below. The
database engine stays inside; tests and benchmarks that read rows themselves ask
`database_engine`.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypedDict

import structlog
from sqlalchemy import Engine

from deni.adapters.clock import OffsetClock, SystemClock
from deni.adapters.daraja.client import DarajaClient, DarajaConfig
from deni.adapters.daraja.gateway import DarajaGateway
from deni.adapters.db.backup import (
    BackupFile,
    BackupRefused,
    Restored,
    backup_sqlite,
    restore_sqlite,
)
from deni.adapters.db.engine import make_engine
from deni.adapters.db.heartbeats import SqlWorkerHeartbeats
from deni.adapters.db.migrate import upgrade
from deni.adapters.db.monitoring import SqlMonitoringReads
from deni.adapters.db.mpesa.tokens import SqlTokenStore
from deni.adapters.db.push import SqlPushStore
from deni.adapters.db.session_gate import SqlSessionGate
from deni.adapters.db.uow import NestedUnitOfWorkFactory, SqlUnitOfWork, SqlUnitOfWorkFactory
from deni.adapters.db.ussd_reads import SqlUssdReads
from deni.adapters.mpesa_off import MpesaOffRequests
from deni.adapters.observability import (
    METRICS_LISTEN_HOST,
    Metrics,
    MetricsListener,
    WorkerMetrics,
    configure_logging,
    render_metrics,
)
from deni.adapters.security import AesGcmSeedSealer, JwtAccessTokens, PepperedArgon2PinHasher
from deni.adapters.sessions import MemorySessionStore, RedisSessionStore, SqlSessionStore
from deni.adapters.sms import AfricasTalkingSms, DatabaseSmsOutbox, OutboxMessage, SqlSmsQueue
from deni.adapters.webauthn import PyWebAuthn
from deni.adapters.webpush import (
    DEVELOPMENT_SUBJECT,
    PyWebPushSender,
    development_key,
    private_key_from_setting,
)
from deni.bootstrap.background import HOP_THREADS, Background, HopThreads, housekeeper
from deni.bootstrap.readiness import Check, Readiness, readiness
from deni.bootstrap.worker import MpesaWorker
from deni.config import Settings, jwt_key_ring
from deni.domain.secrecy import derive_key
from deni.services import limits
from deni.services.limits import LimitCounters
from deni.services.monitoring_ports import MonitoringReads
from deni.services.mpesa.ports import MpesaDeps, MpesaGateway, MpesaPolicy
from deni.services.mpesa.requests import MpesaOutbox
from deni.services.ops.ports import SeedSealer
from deni.services.passkey_ports import RelyingParty, WebAuthn
from deni.services.ports import (
    AccessTokens,
    Clock,
    MpesaRequests,
    PinHasher,
    SessionGate,
    SessionStore,
    SmsQueue,
    SmsSender,
    UnitOfWorkFactory,
)
from deni.services.push_ports import PushDeps, PushSender
from deni.services.ussd_ports import UssdReads

__all__ = [
    "HOP_THREADS",
    "Background",
    "BackupFile",
    "BackupRefused",
    "Check",
    "Deni",
    "HopThreads",
    "Metrics",
    "Readiness",
    "Restored",
    "SmsOutboxReader",
    "backup_database",
    "bootstrap",
    "configure_logging",
    "daraja_config",
    "database_engine",
    "mpesa_policy",
    "read_sms_outbox",
    "render_metrics",
    "restore_database",
    "savepoints",
]
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class UseCaseDeps:
    """`Deni`'s dependencies of the use cases over another unit-of-work factory."""

    uow: UnitOfWorkFactory
    clock: Clock
    hasher: PinHasher
    tokens: AccessTokens
    sms: SmsSender
    limit_counters: LimitCounters
    pepper: str
    refresh_ttl_s: int
    webauthn: WebAuthn
    relying_party: RelyingParty


@dataclass
class Deni:
    """Everything a request, a worker or a CLI command needs, wired once."""

    settings: Settings
    _engine: Engine = field(repr=False)
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
    # Operators' TOTP seeds, sealed under a key derived from the pepper.
    sealer: SeedSealer
    # This process's M-PESA worker heartbeat (readiness reads every process's newest).
    heartbeats: SqlWorkerHeartbeats
    # The business figures /metrics exports (services/monitoring.py).
    monitoring_reads: MonitoringReads
    # Web Push to the web app: subscriptions, deliveries and the VAPID-signed sender.
    push: PushDeps
    # Passkeys: the WebAuthn library behind its port, and Deni as the relying party.
    webauthn: WebAuthn
    relying_party: RelyingParty
    # M-PESA through Daraja: None unless DENI_MPESA=on.
    mpesa: MpesaDeps | None = None

    @property
    def pepper(self) -> str:
        return self.settings.pin_pepper

    @property
    def refresh_ttl_s(self) -> int:
        return self.settings.refresh_token_ttl_s

    def within(self, uow: UnitOfWorkFactory) -> UseCaseDeps:
        """The same dependencies over another unit-of-work factory: an API command runs its
        use cases in the savepoints of its one transaction (`savepoints`)."""
        return UseCaseDeps(
            uow=uow,
            clock=self.clock,
            hasher=self.hasher,
            tokens=self.tokens,
            sms=self.sms,
            limit_counters=self.limit_counters,
            pepper=self.pepper,
            refresh_ttl_s=self.refresh_ttl_s,
            webauthn=self.webauthn,
            relying_party=self.relying_party,
        )

    def readiness(self) -> Readiness:
        """Whether this process may take traffic: the database reached and at this code's
        schema, Redis reached (when used), a fresh worker heartbeat (with M-PESA on)."""
        ping: Callable[[], None] | None = None
        if isinstance(self.sessions, RedisSessionStore):
            ping = self.sessions.ping
        return readiness(self._engine, self.settings, now=self.clock.now(), ping_redis=ping)

    def upgrade_schema(self) -> str:
        """Create or migrate the schema to the newest version; returns the database's URL,
        its password hidden, to say which one."""
        upgrade(self._engine)
        return self._engine.url.render_as_string(hide_password=True)

    def background(self) -> Background:
        """What a serving process runs beside its requests, built but not started: its
        lifespan calls `start` and `stop` (background.py)."""
        return Background(self)

    @contextmanager
    def housekeeping(self) -> Iterator[None]:
        """Housekeeping in a thread while the block runs, at the settings' intervals (none
        when both are zero): `deni worker` runs it beside the M-PESA worker."""
        keeper = housekeeper(self)
        if keeper is not None:
            keeper.start()
        try:
            yield
        finally:
            if keeper is not None:
                keeper.stop()

    def run_mpesa_worker(
        self, *, interval_s: float, reconcile_interval_s: float, metrics_port: int = 0
    ) -> None:
        """The M-PESA worker in the calling thread, until interrupted (`deni worker`); with a
        `metrics_port`, its metrics on 127.0.0.1 at that port meanwhile (for Prometheus)."""
        assert self.mpesa is not None, "M-PESA is off"
        metrics = WorkerMetrics()
        listener = MetricsListener(metrics.registry, port=metrics_port) if metrics_port else None
        if listener is not None:
            log.info("worker_metrics_listening", host=METRICS_LISTEN_HOST, port=listener.port)
        try:
            MpesaWorker(
                self.mpesa,
                interval_s=interval_s,
                reconcile_interval_s=reconcile_interval_s,
                heartbeat=self.heartbeats,
                on_pass=lambda ok: metrics.passed(ok=ok),
            ).run_forever()
        finally:
            if listener is not None:
                listener.stop()

    def close(self) -> None:
        if isinstance(self.push.sender, PyWebPushSender):
            self.push.sender.close()
        if self.mpesa is not None:
            self.mpesa.gateway.close()
        self._engine.dispose()


def database_engine(deni: Deni) -> Engine:
    """The engine behind `deni`, for tests and benchmarks that read rows or count statements
    themselves. Entrypoints ask `deni` for a service instead (readiness, upgrade_schema)."""
    return deni._engine


def savepoints(uow: SqlUnitOfWork) -> UnitOfWorkFactory:
    """Units of work nested in `uow`'s transaction: savepoints, and reads that see its writes
    (an idempotent command runs in the transaction that holds its key)."""
    return NestedUnitOfWorkFactory(uow)


class SmsOutboxReader(Protocol):
    def messages(self, *, phone: str | None = None, limit: int = 50) -> list[OutboxMessage]:
        """Newest first; only those to `phone` when given."""
        ...


@contextmanager
def read_sms_outbox(settings: Settings) -> Iterator[SmsOutboxReader]:
    """What the fake SMS gateway "sent", read from the database in `settings`: `deni sms
    outbox` shows it, and `deni demo` reads each code there as its person would on a phone."""
    engine = make_engine(settings.database_url)
    try:
        yield DatabaseSmsOutbox(engine, clock=SystemClock(), pepper=settings.pin_pepper)
    finally:
        engine.dispose()


PGBACKREST_POINTER = (
    "backs up SQLite only. This Deni runs on PostgreSQL, which pgBackRest backs up and "
    "restores (full backups and WAL archiving, to a point in time): see docs/backups.md and "
    "deploy/pgbackrest/pgbackrest.conf."
)


def _sqlite_file(settings: Settings, command: str) -> Path:
    path = settings.sqlite_path()
    if not settings.is_sqlite:
        raise BackupRefused(f"`deni {command}` {PGBACKREST_POINTER}")
    if path is None:
        raise BackupRefused("An in-memory database cannot be backed up or restored.")
    return path


def backup_database(settings: Settings, target: Path, *, overwrite: bool = False) -> BackupFile:
    """`deni backup`: a consistent copy of the SQLite database, taken while it serves.
    PostgreSQL is refused with a pointer to pgBackRest."""
    return backup_sqlite(_sqlite_file(settings, "backup"), target, overwrite=overwrite)


def restore_database(settings: Settings, backup: Path, *, force: bool = False) -> Restored:
    """`deni restore`: a checked backup in the place of the SQLite database, refused while the
    database is in use unless `force`. PostgreSQL is refused with a pointer to pgBackRest."""
    return restore_sqlite(backup, _sqlite_file(settings, "restore"), force=force)


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    hasher: PinHasher | None = None,
    mpesa_gateway: MpesaGateway | None = None,
    push_sender: PushSender | None = None,
) -> Deni:
    settings = settings or Settings()
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    if clock is None and settings.clock_offset_file:
        assert settings.environment != "production"
        clock = OffsetClock(settings.clock_offset_file)
    clock = clock or SystemClock()
    return Deni(
        settings=settings,
        _engine=engine,
        uow=SqlUnitOfWorkFactory(engine),
        clock=clock or SystemClock(),
        hasher=hasher
        or PepperedArgon2PinHasher(
            pepper=settings.pin_pepper,
            memory_cost_kib=settings.pin_hash_memory_kib,
            time_cost=settings.pin_hash_time_cost,
        ),
        tokens=_access_tokens(settings),
        metrics=Metrics(),
        **_channel_adapters(settings, engine, clock),
        ussd_reads=SqlUssdReads(engine),
        session_gate=SqlSessionGate(engine),
        sealer=AesGcmSeedSealer(pepper=settings.pin_pepper),
        heartbeats=SqlWorkerHeartbeats(engine, worker_id=_worker_id()),
        monitoring_reads=SqlMonitoringReads(engine),
        push=_push(settings, engine, clock, push_sender),
        webauthn=PyWebAuthn(),
        relying_party=RelyingParty(id=settings.webauthn_rp_id, origin=settings.webauthn_origin),
        mpesa=_mpesa(settings, engine, clock, mpesa_gateway),
    )


def _push(settings: Settings, engine: Engine, clock: Clock, sender: PushSender | None) -> PushDeps:
    """Web Push: the VAPID key from the settings (production cannot start without one), or in
    development and test a stable one derived from the pepper."""
    if sender is None:
        if settings.vapid_private_key:
            key = private_key_from_setting(settings.vapid_private_key)
        else:
            assert settings.environment != "production", "config_checks refuses this"
            key = development_key(settings.pin_pepper)
        sender = PyWebPushSender(
            private_key=key, subject=settings.vapid_subject or DEVELOPMENT_SUBJECT
        )
    return PushDeps(
        store=SqlPushStore(engine),
        sender=sender,
        clock=clock,
        allow_loopback_http=settings.environment == "test",
    )


def _worker_id() -> str:
    """This process, as its heartbeat row names it."""
    return f"{socket.gethostname()[:150]}:{os.getpid()}"


def _access_tokens(settings: Settings) -> JwtAccessTokens:
    current_kid, keys = jwt_key_ring(settings)
    return JwtAccessTokens(keys=keys, current_kid=current_kid, ttl_s=settings.access_token_ttl_s)


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
        check_backoff_s=settings.mpesa_check_backoff_s,
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
