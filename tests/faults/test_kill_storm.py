"""kill -9 of each service in turn, at random moments, during an ADD/DEL storm
(200 pods by default, 8 concurrent callers) through the real shim with real
plugins, the supervisor restarting what was killed. Callers behave as a
runtime does: an ADD that fails is followed by its DEL and retried; a DEL
that fails is retried. Afterwards: every call returned within its bound, no
record, IPAM allocation, bridge port, plugin process or spooled DEL is left,
and each service's recovery time is reported."""

from __future__ import annotations

import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.node import CALL_BOUND, FaultNode, fault_node, pod_namespace
from tests.support import fault_report

pytestmark = [pytest.mark.faults, pytest.mark.root]

PODS = int(os.environ.get("MULTUS_STORM_PODS", "200"))
CALLERS = 8
ATTEMPTS = 6


@pytest.fixture
def node(tmp_path: Path) -> Iterator[FaultNode]:
    with fault_node(tmp_path) as node:
        yield node


def run_pod(node: FaultNode, name: str, container_ids: set[str], failures: list[str]) -> None:
    """One pod's life as a runtime drives it: ADD (DEL + retry on failure), then DEL until it succeeds."""
    with pod_namespace() as ns:
        cid = ""
        for _ in range(ATTEMPTS):
            cid = uuid.uuid4().hex
            container_ids.add(cid)
            if node.call("ADD", cid, ns.path, name).ok:
                break
            for _ in range(ATTEMPTS):  # the runtime tears down a failed sandbox before the next try
                if node.call("DEL", cid, ns.path, name).ok:
                    break
                time.sleep(0.3)
            time.sleep(0.3)
        else:
            failures.append(f"{name}: no ADD succeeded in {ATTEMPTS} attempts")
        for _ in range(ATTEMPTS):
            if node.call("DEL", cid, ns.path, name).ok:
                return
            time.sleep(0.3)
        failures.append(f"{name}: DEL never succeeded")


def test_kill_9_each_service_during_an_add_del_storm(node: FaultNode) -> None:
    for i in range(PODS):
        node.write_pod(f"storm-{i}")
    time.sleep(1.0)  # the cache's file watcher picks the pods up
    pending: queue.Queue[str] = queue.Queue()
    for i in range(PODS):
        pending.put(f"storm-{i}")
    container_ids: set[str] = set()
    failures: list[str] = []

    def caller() -> None:
        while True:
            try:
                name = pending.get_nowait()
            except queue.Empty:
                return
            run_pod(node, name, container_ids, failures)

    recovery: dict[str, float] = {}
    rng = random.Random(int(os.environ.get("MULTUS_STORM_SEED", "12")))

    def killer() -> None:
        for service in ("gateway", "executor", "cache", "certs"):
            time.sleep(rng.uniform(0.5, 2.5))
            if not any(t.is_alive() for t in threads):
                break
            recovery[service] = node.kill(service)

    started = time.monotonic()
    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    kill_thread = threading.Thread(target=killer)
    for thread in [*threads, kill_thread]:
        thread.start()
    for thread in [*threads, kill_thread]:
        thread.join(timeout=900)
    storm_seconds = time.monotonic() - started
    node.wait_spool_drained()

    slowest = max(o.seconds for o in node.outcomes)
    failed = [o for o in node.outcomes if not o.ok]
    fault_report.record(
        "kill -9 storm",
        pods=PODS,
        callers=CALLERS,
        calls=len(node.outcomes),
        failed_calls=len(failed),
        failed_codes=sorted({o.code for o in failed}),
        slowest_call_seconds=round(slowest, 2),
        call_bound_seconds=CALL_BOUND,
        storm_seconds=round(storm_seconds, 1),
        **{f"recovery_{s}_seconds": round(v, 2) for s, v in recovery.items()},
    )
    assert set(recovery) == {"gateway", "executor", "cache", "certs"}, "the storm ended before every kill"
    assert not failures, failures[:10]
    assert slowest <= CALL_BOUND, f"a call took {slowest:.1f}s (bound {CALL_BOUND}s)"
    assert all(o.code in (0, 11) for o in failed), sorted({(o.command, o.code) for o in failed})
    assert node.leaks(container_ids) == []
