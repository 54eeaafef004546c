"""Every metric /metrics serves is described in docs/metrics.md, by its exposed name."""

from __future__ import annotations

from pathlib import Path

from deni.adapters.observability import Metrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_every_metric_is_documented() -> None:
    text = DOCS.read_text()
    names = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    assert "deni_channel_latency_seconds" in names
    assert [name for name in sorted(names) if f"`{name}`" not in text] == []
