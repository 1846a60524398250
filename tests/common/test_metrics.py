"""Scrape-time collectors can be wired twice in one process (the second replaces the first)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common import metrics
from services.common.metrics import register_collector


class _Constant(Collector):
    def __init__(self, value: float) -> None:
        self.value = value

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("multus_test_constant", "a test gauge")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("multus_test_constant", "a test gauge", value=self.value)


def test_register_collector_replaces_the_previous_one() -> None:
    register_collector("test-constant", _Constant(1.0))
    try:
        register_collector("test-constant", _Constant(2.0))  # a duplicate would raise ValueError
        assert REGISTRY.get_sample_value("multus_test_constant") == 2.0
    finally:
        REGISTRY.unregister(metrics._collectors.pop("test-constant"))
