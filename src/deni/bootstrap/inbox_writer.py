"""Group commit for Daraja's callbacks (services/group_commit.py): the hook hands each raw body
to one writer thread, which stores all the bodies waiting at that moment in one transaction
and then lets each hook answer.

A hook still answers 200 only after its body is committed; if the transaction fails, every
callback in it gets the error (the hook answers 503, Daraja sends it again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from deni.services.group_commit import GroupCommitter
from deni.services.mpesa.callbacks import Received, Stored, store_callbacks
from deni.services.mpesa.ports import MpesaDeps

QUEUED_MAX = 2_000  # callbacks waiting for the writer; past this the hook answers 503
BATCH_MAX = 200  # callbacks per transaction


class InboxWriter:
    def __init__(self, deps: MpesaDeps) -> None:
        self._deps = deps
        self._committer: GroupCommitter[Received, Stored] = GroupCommitter(
            self._store, name="inbox-writer", queued_max=QUEUED_MAX, batch_max=BATCH_MAX
        )

    def start(self) -> None:
        self._committer.start()

    def stop(self) -> None:
        self._committer.stop()

    async def store(self, received: Received) -> Stored:
        """Returns once `received` is committed (or raises what the transaction raised)."""
        return await asyncio.wrap_future(self._committer.submit(received))

    def _store(self, received: Sequence[Received]) -> list[Stored]:
        return store_callbacks(self._deps, list(received))
