"""The monitoring in deploy/ stays true to itself and to the runbook.

Every alert says how bad it is, what is wrong and where to read about it, and that link lands on
a heading of docs/operations.md; every alert has a promtool unit test that fires it and one that
finds it quiet; the rules and the dashboard name only metrics Deni serves, and the dashboard
shows each of them. `make alert-tests` runs promtool on the rules, their tests and the configs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/deni.yml"
RULE_TESTS = ROOT / "deploy/prometheus/tests/deni_test.yml"
DASHBOARD = ROOT / "deploy/grafana/deni.json"
RUNBOOK = ROOT / "docs/operations.md"
RUNBOOK_URL = "https://code.deni.example/deni/blob/main/docs/operations.md#"

# What Deni's processes serve (and Prometheus' own `up`); a histogram by its base name.
DENI_METRICS = {
    "deni_channel_latency_seconds",
    "deni_outbox_messages",
    "deni_outbox_oldest_pending_age_seconds",
    "deni_dead_letters",
    "deni_suspense_payments",
    "deni_suspense_oldest_age_seconds",
    "deni_payouts_awaiting_decision",
    "deni_callback_inbox_pending",
    "deni_callback_inbox_lag_seconds",
    "deni_mpesa_float_cents",
    "deni_ledger_mpesa_cents",
    "deni_reconciliation_drift_cents",
    "deni_wallet_liabilities_cents",
    "deni_portfolio_at_risk_ratio",
    "deni_payouts_today_cents",
    "deni_sms_queue_pending",
    "deni_worker_heartbeat_age_seconds",
}
OTHER_METRICS = {"loans_by_state", "http_requests_total", "http_request_duration_seconds", "up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _slug(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub, GitLab, Gitea) gives a heading."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def _metrics_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers not followed by `(` (functions) and
    outside braces and quotes (label names and values), less PromQL's keywords."""
    unquoted = re.sub(r'"[^"]*"', '""', expr)
    outside_braces = re.sub(r"\{[^}]*\}", "{}", unquoted)
    outside_clauses = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", outside_braces)
    keywords = {"and", "or", "unless", "offset", "bool", "inf", "nan"}
    names = set()
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", outside_clauses):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in keywords:
            continue
        names.add(name)
    return names


def _base(metric: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix) and metric.removesuffix(suffix) in DENI_METRICS | OTHER_METRICS:
            return metric.removesuffix(suffix)
    return metric


def test_every_alert_says_how_bad_what_and_where_to_read() -> None:
    alerts = _alerts()
    assert len(alerts) >= 20
    names = [alert["alert"] for alert in alerts]
    assert len(names) == len(set(names)), "alert names are unique"
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), alert["alert"]
        assert annotations["description"].strip(), alert["alert"]
        assert annotations["runbook_url"] == RUNBOOK_URL + alert["alert"].lower()


def test_every_runbook_link_lands_on_a_heading_of_the_runbook() -> None:
    headings = {
        _slug(line.lstrip("#"))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    missing = [a["alert"] for a in _alerts() if a["alert"].lower() not in headings]
    assert missing == []


def test_every_alert_has_a_test_that_fires_it_and_one_that_finds_it_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for alert in _alerts():
        mine = [case for case in cases if case["alertname"] == alert["alert"]]
        assert any(case.get("exp_alerts") for case in mine), f"{alert['alert']} never fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{alert['alert']} never quiet"


def test_the_rules_and_the_dashboard_name_only_metrics_deni_serves() -> None:
    exprs = [alert["expr"] for alert in _alerts()] + _dashboard_exprs()
    named = {_base(metric) for expr in exprs for metric in _metrics_in(expr)}
    assert named - DENI_METRICS - OTHER_METRICS == set()


def test_the_dashboard_shows_every_deni_metric() -> None:
    named = {_base(metric) for expr in _dashboard_exprs() for metric in _metrics_in(expr)}
    assert DENI_METRICS | {"loans_by_state", "http_requests_total"} <= named


def test_the_dashboard_is_one_grafana_document_with_distinct_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "deni-overview"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]


def test_the_metric_finder_skips_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (channel, le) (rate(x_bucket{channel="api"}[10m])))'
        ' > 0.02 and on () max(y) or absent(up{job="deni-api"})'
    )
    assert _metrics_in(expr) == {"x_bucket", "y", "up"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_the_dashboard_queries_are_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (it has no query-only check offline)."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, expr in enumerate(_dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    promtool = shutil.which("promtool")
    assert promtool is not None
    result = subprocess.run(  # noqa: S603 (our own file, promtool from PATH)
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
