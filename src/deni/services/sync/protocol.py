"""What push and pull share of the sync protocol: the schema versions a client may speak, the
client id, a client's first contact, and how long a mutation's result is kept for its retries.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from deni.domain.errors import (
    DomainError,
    Forbidden,
    ValidationFailed,
)
from deni.services.sync.ports import (
    SyncClient,
    SyncDeps,
)

SERVER_SCHEMA_VERSION = 1
CLIENT_SCHEMA_VERSION_MIN = 1
# How long a processed mutation's result is kept for a device that never heard it. A device
# pushes again until it hears, so only one offline (or lost) for this long meets the pruning:
# it is told `forgotten` (processed; its outcome no longer kept) and its next pull has the truth.
MUTATION_RESULT_RETENTION = timedelta(days=90)


class ClientUpgradeRequired(DomainError):
    code = "client_upgrade_required"


def require_schema(schema_version: int) -> None:
    if schema_version < CLIENT_SCHEMA_VERSION_MIN:
        raise ClientUpgradeRequired(
            f"This app is too old for the server (schema {schema_version}; the server needs "
            f"at least {CLIENT_SCHEMA_VERSION_MIN}). Update the app."
        )


def require_client_id(client_id: str) -> str:
    try:
        return str(uuid.UUID(client_id))
    except ValueError:
        raise ValidationFailed("client_id must be a UUID.", code="invalid_client_id") from None


def ensure_client(
    deps: SyncDeps, *, user_id: str, client_id: str, schema_version: int
) -> SyncClient:
    """The client row, created for this user on first use; another user's: refused."""
    with deps.uow.read_only() as uow:
        client = uow.sync.get_client(client_id)
    if client is None:
        with deps.uow() as uow:
            uow.sync.add_client(SyncClient(client_id, user_id, 0, schema_version), deps.clock.now())
            client = uow.sync.get_client(client_id)
            uow.commit()
    assert client is not None
    if client.user_id != user_id:
        raise Forbidden("This client id belongs to someone else.", code="client_not_yours")
    return client
