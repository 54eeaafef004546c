"""In-memory fakes of Deni's ports, so service tests need no database.

`FakeUnitOfWorkFactory` honours `UnitOfWorkFactory` (services/ports.py) with a fake of every
repository the services use, except M-PESA and sync: those attributes raise until they have
fakes of their own. tests/services checks the fakes against the SQL repositories.
"""

from tests.fakes.clock import ManualClock
from tests.fakes.sms import RecordingSmsSender
from tests.fakes.tables import ConstraintViolated
from tests.fakes.uow import FakeDatabase, FakeUnitOfWork, FakeUnitOfWorkFactory

__all__ = [
    "ConstraintViolated",
    "FakeDatabase",
    "FakeUnitOfWork",
    "FakeUnitOfWorkFactory",
    "ManualClock",
    "RecordingSmsSender",
]
