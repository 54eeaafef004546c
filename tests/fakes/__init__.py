"""In-memory fakes of Deni's ports, so service tests need no database.

`FakeUnitOfWorkFactory` honours `UnitOfWorkFactory` (services/ports.py) with a fake of every
repository the services use, M-PESA and the outbox included, except sync and nested
(savepoint) units of work: those attributes raise NotFaked. `FakeMpesaGateway` stands in for
Daraja. tests/services checks the fakes against the SQL repositories.
"""

from tests.fakes.clock import ManualClock
from tests.fakes.gateway import FakeMpesaGateway
from tests.fakes.sms import RecordingSmsSender
from tests.fakes.tables import ConstraintViolated
from tests.fakes.uow import FakeDatabase, FakeUnitOfWork, FakeUnitOfWorkFactory

__all__ = [
    "ConstraintViolated",
    "FakeDatabase",
    "FakeMpesaGateway",
    "FakeUnitOfWork",
    "FakeUnitOfWorkFactory",
    "ManualClock",
    "RecordingSmsSender",
]
