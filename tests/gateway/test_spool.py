"""The DEL spool (issue 12 item 4): failures are retried with backoff in the
background, the spool is bounded in count and age (given-up DELs move to
dead/), its condition is a metric and a health status, and it holds the
gateway's readiness only for spoolReadinessHoldSeconds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import cni
from services.gateway.request import CniRequest
from services.gateway.spool import DEAD_DIRNAME, SpoolBounds, SpoolReplayer, spool_condition, spooled_files
from tests.gateway.conftest import http_call, new_container_id
from tests.gateway.test_lifecycle import _body, _setup, _sock
from tests.support.netns import netns
from tests.support.plugins import recorded_calls
from tests.support.services import running_services, wait_serving


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Handler:
    def __init__(self, fail: bool = True) -> None:
        self.fail = fail
        self.seen: list[str] = []

    async def __call__(self, request: CniRequest) -> None:
        self.seen.append(request.env["CNI_CONTAINERID"])
        if self.fail:
            raise cni.CniError(cni.IO_FAILURE, "link not found")


def spool_file(directory: Path, at: float, cid: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{int(at * 1e9)}-{cid}.json"
    path.write_bytes(_body("DEL", cid))
    return path


async def test_a_failing_del_is_retried_with_backoff(tmp_path: Path) -> None:
    clock, handler = Clock(), Handler()
    spool_file(tmp_path, clock.now, "c1")
    replayer = SpoolReplayer(tmp_path, handler, SpoolBounds(retry_max=8.0), clock=clock)
    delays = []
    for _ in range(6):
        await replayer.replay_due()
        await replayer.replay_due()  # not due yet: not replayed again
        due = replayer.next_due()
        assert due is not None
        delays.append(due - clock.now)
        clock.now = due
    assert handler.seen == ["c1"] * 6
    assert all(0.5 <= d <= 8.0 for d in delays) and max(delays) > 4.0  # doubling, capped
    handler.fail = False
    await replayer.replay_due()
    assert spooled_files(tmp_path) == [] and replayer.next_due() is None


async def test_the_spool_is_bounded_in_age_and_count(tmp_path: Path) -> None:
    clock, handler = Clock(), Handler(fail=False)
    spool_file(tmp_path, clock.now - 100, "too-old")
    for i in range(5):
        spool_file(tmp_path, clock.now - 10 + i, f"c{i}")
    replayer = SpoolReplayer(tmp_path, handler, SpoolBounds(max_entries=3, max_age=50.0), clock=clock)
    report = await replayer.replay_due()
    assert sorted(handler.seen) == ["c2", "c3", "c4"]  # the newest three
    assert len(report.dead) == 3
    dead = sorted(p.name.split("-", 1)[1] for p in spooled_files(tmp_path / DEAD_DIRNAME))
    assert dead == ["c0.json", "c1.json", "too-old.json"][:3]
    condition = spool_condition(tmp_path, clock.now)
    assert (condition.pending, condition.dead, condition.healthy) == (0, 3, False)
    for i in range(5):  # dead/ is bounded too
        spool_file(tmp_path, clock.now - 200 - i, f"old{i}")
    await replayer.replay_due()
    assert len(spooled_files(tmp_path / DEAD_DIRNAME)) == 3


def test_the_condition_turns_bad_when_a_del_waits_too_long(tmp_path: Path) -> None:
    spool_file(tmp_path, time.time() - 5, "fresh")
    assert spool_condition(tmp_path).healthy
    spool_file(tmp_path, time.time() - 3600, "stale")
    condition = spool_condition(tmp_path)
    assert not condition.healthy and "waited" in condition.reason


def _health(socket: str, service: str) -> int:
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_a_hanging_spooled_del_holds_readiness_only_for_the_bound(tmp_path: Path) -> None:
    """Replay used to run to its end before readiness: one stuck DEL kept every pod
    on the node from starting for as long as its delegate hung."""
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "rec", "type": "recorder", "sleep": {"DEL": 30}}
    inst, rec = _setup(tmp_path, conf, spoolReadinessHoldSeconds=1, executorTimeoutSeconds=40)
    cid = new_container_id()
    with running_services(inst, "cache", "executor", "gateway"), netns("sph") as ns:
        assert http_call(_sock(inst), "POST", "/cni", _body("ADD", cid, ns.path))[0] == 200
    spool_file(Path(inst.config["socketDir"]) / "del-spool", time.time(), cid)
    with running_services(inst, "cache", "executor", "gateway", wait=False):
        started = time.monotonic()
        wait_serving(inst.grpc_socket("gateway"), timeout=15)
        assert time.monotonic() - started < 10
        assert http_call(_sock(inst), "GET", "/readyz")[0] == 200
        assert ("DEL", cid) in [(c["command"], c["env"]["CNI_CONTAINERID"]) for c in recorded_calls(rec)]


def test_a_failing_spooled_del_is_retried_then_given_up_and_reported(tmp_path: Path) -> None:
    """It used to be replayed once per gateway start and kept forever."""
    conf = {"cniVersion": "1.0.0", "name": "rec", "type": "recorder", "failOn": {"DEL": {"code": 5, "msg": "no"}}}
    inst, rec = _setup(tmp_path, conf, spoolMaxAgeSeconds=4)
    cid = new_container_id()
    with running_services(inst, "cache", "executor", "gateway"), netns("spr") as ns:
        assert http_call(_sock(inst), "POST", "/cni", _body("ADD", cid, ns.path))[0] == 200
    spool = Path(inst.config["socketDir"]) / "del-spool"
    spool_file(spool, time.time(), cid)
    with running_services(inst, "cache", "executor", "gateway"):
        socket = inst.grpc_socket("gateway")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _health(socket, "del-spool") == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.3)
        dels = [c for c in recorded_calls(rec) if c["command"] == "DEL"]
        # replayed at start, then again with backoff until spoolMaxAgeSeconds (how
        # many retries fit in 4 s depends on the machine's load: at least one)
        assert len(dels) >= 2, dels
        assert spooled_files(spool) == [] and len(spooled_files(spool / DEAD_DIRNAME)) == 1
        assert _health(socket, "del-spool") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert _health(socket, "") == health_pb2.HealthCheckResponse.SERVING  # never gates readiness
