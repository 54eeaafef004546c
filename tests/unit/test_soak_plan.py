"""The soak's replay promise: one seed gives the same people and the same fault schedule, and
every run has every process fault and days passing (benchmarks/soak)."""

from __future__ import annotations

from benchmarks.soak import faults
from benchmarks.soak.population import PopulationPlan, people


def _schedule(seed: int, seconds: float = 600.0) -> list[tuple[float, str, str, str]]:
    return [
        (round(f.at_s, 6), f.name, f.target, repr(f.spec))
        for f in faults.schedule(seed, seconds, workers=2)
    ]


def test_one_seed_gives_the_same_people_and_faults() -> None:
    plan = PopulationPlan()
    assert people(7, plan) == people(7, plan)
    assert _schedule(7) == _schedule(7)
    assert people(7, plan) != people(8, plan)
    assert _schedule(7) != _schedule(8)


def test_the_people_are_distinct_and_never_the_sandboxs_test_numbers() -> None:
    crowd = people(11, PopulationPlan())
    phones = [m.phone for m in crowd]
    assert len(set(phones)) == len(phones)
    assert not [p for p in phones if p.startswith("25470000")]
    assert {m.role for m in crowd} == {"api", "ussd", "newcomer", "sync"}


def test_every_run_has_every_process_fault_and_days_passing_in_its_middle() -> None:
    for seconds in (30.0, 600.0):
        schedule = faults.schedule(3, seconds, workers=2)
        names = {f.name for f in schedule}
        assert set(faults.PROCESS_FAULTS) <= names
        assert len([f for f in schedule if f.name == faults.CLOCK_STEP]) >= 3
        assert all(seconds * 0.05 < f.at_s < seconds * 0.9 for f in schedule)
        left_out = faults.schedule(3, seconds, workers=2, leave_out=frozenset({"b2c refused 500"}))
        assert "b2c refused 500" not in {f.name for f in left_out}
