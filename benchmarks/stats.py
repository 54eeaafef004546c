"""Percentiles without numpy: nearest-rank, the definition most latency reports use."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    assert values, "no samples"
    assert 0 < p <= 100
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]
