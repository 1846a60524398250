"""The Prometheus side: alert rules pass `promtool check rules` and their unit
tests (`promtool test rules`), the alerts, the Grafana dashboard and the
metrics catalogue (docs/metrics.md) use exactly the metrics the code exports,
and the dashboard's queries are valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.metrics import exported_metrics, exported_series, promql_metric_names
from tests.support.services import REPO

PROMETHEUS = REPO / "compose" / "prometheus"
DASHBOARD = REPO / "compose" / "grafana" / "multus-dashboard.json"
CATALOGUE = REPO / "docs" / "metrics.md"
# What the alerts and the dashboard must cover (issue: operator experience).
REQUIRED_ALERTS = {
    "MultusCredentialExpiringSoon",
    "MultusCredentialExpired",
    "MultusRBACPermissionMissing",
    "MultusCacheNotSynced",
    "MultusDelegateErrorRate",
    "MultusAddLatencyHigh",
    "MultusExecutorSaturated",
    "MultusSpooledDelsWaiting",
}
REQUIRED_PANELS = (
    "ADD / DEL latency",
    "Delegate errors by plugin",
    "Cache synced",
    "Cached objects",
    "Time until credential expiry",
    "Executor queue",
)
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: ./scripts/setup.sh installs Debian's prometheus package"
    return subprocess.run([binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", "alerts.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


def test_promtool_unit_tests_the_alerts() -> None:
    done = promtool("test", "rules", "alerts_test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_required_alert_exists_and_is_unit_tested() -> None:
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts >= REQUIRED_ALERTS
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yaml").read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert firing == alerts, "every alert needs a unit test in which it fires"
    for rule in _rules():
        assert "multusctl" in rule["annotations"]["description"], f"{rule['alert']} must name its multusctl command"


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_alerts_use_only_exported_metrics(rule: dict[str, Any]) -> None:
    names = promql_metric_names(rule["expr"])
    assert names, rule["expr"]
    assert names <= exported_series(), names - exported_series()


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict) and "label_values(" in query["query"]:
            metric = re.match(r"label_values\((\w+)", query["query"])
            assert metric
            found.append((f"variable {variable['name']}", metric.group(1)))
    return found


def _substituted(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def test_the_dashboard_uses_only_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _dashboard_exprs(dashboard)
    titles = {title for title, _ in exprs}
    for wanted in REQUIRED_PANELS:
        assert any(title.startswith(wanted) for title in titles), wanted
    used: set[str] = set()
    for title, expr in exprs:
        names = promql_metric_names(expr)
        assert names, (title, expr)
        assert names <= exported_series(), (title, names - exported_series())
        used |= names
    # Every query is valid PromQL: promtool parses them as recording rules.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": _substituted(expr)} for i, (_, expr) in enumerate(exprs)
    ]}]}  # fmt: skip
    (tmp_path / "dashboard-queries.yaml").write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", str(tmp_path / "dashboard-queries.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p["id"] for p in dashboard["panels"]} == set(range(1, len(dashboard["panels"]) + 1))


def _catalogue_rows() -> dict[str, dict[str, str]]:
    rows = {}
    for line in CATALOGUE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].startswith("`multus_"):
            rows[cells[0].strip("`")] = {"type": cells[1], "labels": cells[2], "meaning": cells[3]}
    return rows


def test_the_metrics_catalogue_lists_exactly_what_the_code_exports() -> None:
    rows = _catalogue_rows()
    exported = exported_metrics()
    assert set(rows) == set(exported), {"undocumented": set(exported) - set(rows), "gone": set(rows) - set(exported)}
    for name, metric in exported.items():
        labels = sorted(re.findall(r"`(\w+)`", rows[name]["labels"]))
        assert (rows[name]["type"], labels) == (metric.type, sorted(metric.labels)), name
        assert rows[name]["meaning"], name
