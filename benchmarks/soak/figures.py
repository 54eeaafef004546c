"""The soak's figures: per channel p50/p99 and throughput, 5xx inside and outside the
injected faults' windows, how long each fault took to recover; as JSON and a chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.chart import bar_chart
from benchmarks.soak.faults import Fault
from benchmarks.soak.population import Recorder, Sample
from benchmarks.stats import percentile

# After a process fault, failures this long past its recovery still count as the fault's.
WINDOW_GRACE_S = 10.0
FAILURES_SHOWN_MAX = 200
COLOURS = {"api": "#3465a4", "ussd": "#4e9a06", "sync": "#75507b", "paybill": "#c17d11"}


def _windows(faults: list[Fault]) -> list[tuple[float, float, Fault]]:
    out = []
    for fault in faults:
        if fault.is_process and fault.injected_at_s is not None:
            end = fault.injected_at_s + (fault.healthy_after_s or 0.0) + WINDOW_GRACE_S
            out.append((fault.injected_at_s, end, fault))
    return out


def _inside(sample: Sample, windows: list[tuple[float, float, Fault]]) -> bool:
    """A request in flight at any moment of a window: one sent just before a kill is cut by it."""
    end = sample.at_s + sample.ms / 1000
    return any(a <= end and sample.at_s <= b for a, b, _ in windows)


def _failed(sample: Sample) -> bool:
    return sample.status == 0 or sample.status >= 500


def channels(recorder: Recorder, faults: list[Fault]) -> dict[str, Any]:
    windows = _windows(faults)
    elapsed = max((s.at_s + s.ms / 1000 for s in recorder.samples), default=1.0)
    out: dict[str, Any] = {}
    for channel in sorted({s.channel for s in recorder.samples}):
        samples = [s for s in recorder.samples if s.channel == channel]
        answered = [s.ms for s in samples if s.status != 0]
        failed = [s for s in samples if _failed(s)]
        inside = [s for s in failed if _inside(s, windows)]
        out[channel] = {
            "requests": len(samples),
            "per_second": round(len(samples) / elapsed, 2),
            "p50_ms": round(percentile(answered, 50), 1) if answered else None,
            "p99_ms": round(percentile(answered, 99), 1) if answered else None,
            "http_5xx": sum(1 for s in samples if s.status >= 500),
            "broken_connections": sum(1 for s in samples if s.status == 0),
            "failures_in_fault_windows": len(inside),
            "failures_outside_fault_windows": len(failed) - len(inside),
            "http_4xx": sum(1 for s in samples if 400 <= s.status < 500),
        }
    out["_recovery"] = recovery(recorder, faults)
    out["_failures"] = [
        {
            "channel": s.channel,
            "at_s": round(s.at_s, 2),
            "status": s.status,
            "ms": round(s.ms, 1),
            "in_fault_window": _inside(s, windows),
        }
        for s in recorder.samples
        if _failed(s)
    ][:FAILURES_SHOWN_MAX]
    return out


def recovery(recorder: Recorder, faults: list[Fault]) -> list[dict[str, Any]]:
    """For each process fault: how long the process took to be healthy again, and from the
    fault to the last request that failed inside its window (0: nobody noticed)."""
    rows = []
    for start, end, fault in _windows(faults):
        failures = [s for s in recorder.samples if _failed(s) and _inside(s, [(start, end, fault)])]
        last = max((s.at_s + s.ms / 1000 for s in failures), default=start)
        rows.append(
            {
                "fault": fault.name,
                "target": fault.target,
                "at_s": round(start, 1),
                "healthy_after_s": None
                if fault.healthy_after_s is None
                else round(fault.healthy_after_s, 2),
                "failed_requests": len(failures),
                "errors_for_s": round(last - start, 2),
            }
        )
    return rows


def report(summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Writes soak.json and soak.svg into run_dir; returns the summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "soak.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    bars: list[tuple[str, float, str]] = []
    for channel, figures in summary["channels"].items():
        if channel.startswith("_") or figures["p99_ms"] is None:
            continue
        colour = COLOURS.get(channel, "#555753")
        bars.append((f"{channel} p50 ({figures['per_second']}/s)", figures["p50_ms"], colour))
        bars.append((f"{channel} p99", figures["p99_ms"], colour))
    if bars:
        title = f"Soak: {summary['seconds']:.0f} s under faults, seed {summary['seed']}"
        (run_dir / "soak.svg").write_text(bar_chart(title, bars, unit="ms"))
    return summary
