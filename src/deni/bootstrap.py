"""The composition root: the one place that picks and wires adapters from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from deni.adapters.clock import SystemClock
from deni.adapters.db.engine import make_engine
from deni.adapters.db.uow import SqlUnitOfWorkFactory
from deni.adapters.observability import Metrics
from deni.adapters.security import JwtAccessTokens, PepperedArgon2PinHasher
from deni.config import Settings
from deni.services.ports import AccessTokens, Clock, PinHasher


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
    )
