"""A failing property test says how to replay it: the example itself and the blob for
@reproduce_failure (docs/testing.md, "Property tests")."""

from __future__ import annotations

import os

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import HYPOTHESIS_PROFILE


def test_a_failure_shows_its_example_and_its_blob() -> None:
    @hypothesis.settings(database=None, max_examples=100)
    @given(count=st.integers(min_value=0, max_value=50))
    def fails_from_three(count: int) -> None:
        assert count < 3

    with pytest.raises(AssertionError) as caught:
        fails_from_three()
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "count=3," in notes  # shrunk to the smallest, and printed
    assert f"@reproduce_failure('{hypothesis.__version__}', b'" in notes


def test_the_profile_follows_ci_or_hypothesis_profile() -> None:
    wanted = os.environ.get("HYPOTHESIS_PROFILE") or (
        "ci" if os.environ.get("CI") == "true" else "dev"
    )
    assert wanted == HYPOTHESIS_PROFILE
    current = hypothesis.settings()  # what a test without settings of its own runs with
    assert current.print_blob
    assert current.deadline is None
    if wanted == "ci":
        assert current.derandomize
        assert current.database is None
