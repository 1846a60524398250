"""Read-only facts about the running gateway for operators (Gateway/GetGatewayStatus,
multusctl status), and the spooled-DEL gauge Prometheus reads at scrape time:
DELs the shim spooled while the gateway was unreachable and that are still
waiting (replayed in the background with backoff; docs/reliability.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.gateway.config_manager import ConfigState
from services.gateway.records import RecordStore
from services.gateway.spool import spool_condition, spooled_files

SPOOL_PENDING = "multus_gateway_del_spool_pending"
_SPOOL_HELP = "DEL requests the shim spooled while the gateway was unreachable, still waiting for replay"
SPOOL_DEAD = "multus_gateway_del_spool_dead"
_DEAD_HELP = "Spooled DELs given up (too old, or beyond spoolMaxEntries) and moved to del-spool/dead/"
SPOOL_OLDEST = "multus_gateway_del_spool_oldest_age_seconds"
_OLDEST_HELP = "Age of the oldest spooled DEL still waiting for replay (0: none)"


@dataclass(frozen=True)
class GatewayFacts:
    ready: bool
    draining: bool
    in_flight: int
    spooled_dels: int
    spool_dir: str
    multus_config: ConfigState
    attachments: int
    containers: int
    executors: int
    executors_ready: int
    http_socket: str


@dataclass(frozen=True)
class GatewayProbes:
    """Where the live values come from (the objects server.py wires)."""

    ready: Callable[[], bool]
    draining: Callable[[], bool]
    in_flight: Callable[[], int]
    multus_config: Callable[[], ConfigState]
    executors: Callable[[], tuple[int, int]]  # (configured, connected)


class GatewayStatusSource:
    def __init__(self, probes: GatewayProbes, records: RecordStore, spool: Path, http_socket: str) -> None:
        self._probes = probes
        self._records = records
        self._spool = spool
        self._http_socket = http_socket

    async def facts(self) -> GatewayFacts:
        spooled, (attachments, containers) = await asyncio.gather(
            asyncio.to_thread(lambda: len(spooled_files(self._spool))),
            asyncio.to_thread(self._count_attachments),
        )
        executors, connected = self._probes.executors()
        return GatewayFacts(
            ready=self._probes.ready(),
            draining=self._probes.draining(),
            in_flight=self._probes.in_flight(),
            spooled_dels=spooled,
            spool_dir=str(self._spool),
            multus_config=self._probes.multus_config(),
            attachments=attachments,
            containers=containers,
            executors=executors,
            executors_ready=connected,
            http_socket=self._http_socket,
        )

    def _count_attachments(self) -> tuple[int, int]:
        records = self._records.all()
        return len(records), len({r.container_id for r in records})


class SpoolCollector(Collector):
    def __init__(self, spool: Path) -> None:
        self._spool = spool

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(SPOOL_PENDING, _SPOOL_HELP)
        yield GaugeMetricFamily(SPOOL_DEAD, _DEAD_HELP)
        yield GaugeMetricFamily(SPOOL_OLDEST, _OLDEST_HELP)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        condition = spool_condition(self._spool)
        yield GaugeMetricFamily(SPOOL_PENDING, _SPOOL_HELP, value=condition.pending)
        yield GaugeMetricFamily(SPOOL_DEAD, _DEAD_HELP, value=condition.dead)
        yield GaugeMetricFamily(SPOOL_OLDEST, _OLDEST_HELP, value=condition.oldest_age)
