"""Hypothesis settings for `make mutation` (loaded with `-p tests.mutation_profile`, see the
[tool.mutmut] table in pyproject.toml), never for the ordinary test run.

mutmut runs the selected tests several times in one process, then once per mutant in a fork of
it, so a test class's @given method meets a fresh instance on each run: not the flakiness the
differing-executors health check looks for. Derandomized and without the example database, each
mutant meets the same examples whatever ran before it, so the score is the same on every run.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

PROFILE = "mutation"


def pytest_configure(config: pytest.Config) -> None:
    settings.register_profile(
        PROFILE,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.differing_executors],
    )
    settings.load_profile(PROFILE)
