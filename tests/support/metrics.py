"""The Prometheus metrics the code exports (every service's metrics module and
the scrape-time collectors), and the metric names a PromQL expression uses:
what the metrics catalogue, the alert rules and the dashboard are checked
against."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

METRIC_MODULES = (
    "services.gateway.gateway_metrics",
    "services.cache.metrics",
    "services.executor.metrics",
    "services.certs.metrics",
)


@dataclass(frozen=True)
class Exported:
    name: str  # as scraped: counters with _total
    type: str  # counter, gauge, histogram
    labels: tuple[str, ...]
    help: str

    @property
    def series(self) -> set[str]:
        """The series names PromQL can use for it."""
        if self.type == "histogram":
            return {f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"}
        return {self.name}


def _collectors() -> list[Collector]:
    from services.cache.stats_metrics import CacheStateCollector
    from services.gateway.gateway_status import SpoolCollector

    return [CacheStateCollector(list), SpoolCollector(Path("/nonexistent"))]


def exported_metrics() -> dict[str, Exported]:
    found: dict[str, Exported] = {}
    for module_name in METRIC_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                name = value._name + ("_total" if value._type == "counter" else "")
                found[name] = Exported(name, str(value._type), tuple(value._labelnames), value._documentation)
    for collector in _collectors():
        for family in collector.describe():  # type: ignore[attr-defined]
            found[family.name] = Exported(
                family.name, family.type, tuple(getattr(family, "_labelnames", ())), family.documentation
            )
    return found


def exported_series() -> set[str]:
    return {series for metric in exported_metrics().values() for series in metric.series}


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
             "inf", "nan"}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels and numbers left out)."""
    text = _GRAFANA_VARIABLES.sub("", expr)
    text = _STRINGS.sub('""', text)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    return {m for m in _IDENTIFIER.findall(text) if m.lower() not in _KEYWORDS}
