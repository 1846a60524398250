"""The local supervisor: start order, health, and a clean stop of every child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compose.supervisor import stderr_file
from services.common.config import config_from_dict
from tests.support.procs import processes
from tests.support.services import REPO, Instance, wait_serving

SERVICES = ("certs", "cache", "executor", "gateway")


def _children(pid: int) -> list[int]:
    return [p.pid for p in processes() if p.ppid == pid]


def test_starts_all_four_and_stops_them_cleanly(instance: Instance) -> None:
    log = (instance.root / "supervisor.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "compose.supervisor", "--config", str(instance.config_path)],
        cwd=REPO,
        stderr=log,
        env={**os.environ, "MULTUS_NODE_NAME": "node-a"},
        start_new_session=True,
    )
    try:
        for service in SERVICES:
            wait_serving(instance.grpc_socket(service), timeout=60, service="liveness")
        children = _children(proc.pid)
        assert len(children) == len(SERVICES)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
        assert not [s for s in SERVICES if os.path.exists(instance.grpc_socket(s))]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_unknown_service_name_is_refused(instance: Instance) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "compose.supervisor", "--config", str(instance.config_path), "--services", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown services: nope" in result.stderr


def test_bad_config_is_reported_not_a_traceback(instance: Instance) -> None:
    instance.config_path.write_text("{broken")
    result = subprocess.run(
        [sys.executable, "-m", "compose.supervisor", "--config", str(instance.config_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "cannot read daemon config" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_service_writes_its_own_log_file_under_log_dir(instance: Instance) -> None:
    logs = instance.root / "logs"
    instance.config["logDir"] = str(logs)
    instance.write_config()
    proc = subprocess.Popen(
        [sys.executable, "-m", "compose.supervisor", "--config", str(instance.config_path), "--log-dir", str(logs)],
        cwd=REPO,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MULTUS_NODE_NAME": "node-a"},
        start_new_session=True,
    )
    try:
        for service in SERVICES:
            wait_serving(instance.grpc_socket(service), timeout=60, service="liveness")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for service in (*SERVICES, "supervisor"):
        # structured lines (stdlib loggers of libraries may add plain ones at debug level)
        text = (logs / f"{service}.log").read_text().splitlines()
        lines = [json.loads(line) for line in text if line.startswith("{")]
        assert lines and {line["service"] for line in lines} == {service}
        # one writer per file: no line twice (stderr goes to <service>.stderr.log instead)
        assert len({json.dumps(line, sort_keys=True) for line in lines}) == len(lines)
    for service in SERVICES:
        assert (logs / f"{service}.stderr.log").exists()


@pytest.mark.parametrize(
    ("config_log_dir", "flag", "expected"),
    [
        ("", None, None),
        ("", "/var/log/multus", "/var/log/multus/cache.log"),
        ("/var/log/multus", "/var/log/multus", "/var/log/multus/cache.stderr.log"),
        ("/var/log/multus", "/tmp/sup", "/tmp/sup/cache.log"),
    ],
)
def test_stderr_file(config_log_dir: str, flag: str | None, expected: str | None) -> None:
    config = config_from_dict({"logDir": config_log_dir})
    got = stderr_file(config, Path(flag) if flag else None, "cache")
    assert (str(got) if got else None) == expected


@pytest.mark.root
def test_split_privileges_runs_gateway_cache_certs_as_non_root_and_attaches(tmp_path: Path) -> None:
    """The DaemonSet's privilege split under the local supervisor: the three services
    run as their own uids, the executor as root, and an ADD/DEL still works end to
    end (the gateway's uid is the one the executor trusts)."""
    from tests.gateway.conftest import http_call, new_container_id
    from tests.gateway.test_lifecycle import _body, _setup
    from tests.support.as_user import SITE_PACKAGES, SYSTEM_PYTHON, shared_tmpdir
    from tests.support.netns import netns
    from tests.support.plugins import recorded_calls

    group, gateway_uid = 64400, 64401
    with shared_tmpdir("split-") as root:
        inst, rec = _setup(
            root, {"cniVersion": "1.0.0", "name": "rec", "type": "recorder"},
            grpcSocketGroup=str(group), gatewayUid=gateway_uid,
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "compose.supervisor", "--config", str(inst.config_path),
             "--split-privileges", "--interpreter", SYSTEM_PYTHON],
            cwd=REPO,
            stderr=(root / "supervisor.log").open("wb"),
            env={**os.environ, "MULTUS_NODE_NAME": "node-a", "PYTHONPATH": f"{REPO}:{SITE_PACKAGES}"},
            start_new_session=True,
        )
        try:
            for service in SERVICES:
                wait_serving(inst.grpc_socket(service), timeout=60)
            uids = {}
            for pid in _children(proc.pid):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                service = cmdline[2].decode().rsplit(".", 1)[-1]
                status = Path(f"/proc/{pid}/status").read_text()
                uids[service] = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            assert uids["executor"] == 0 and uids["gateway"] == gateway_uid
            assert uids["cache"] != 0 and uids["certs"] != 0
            socket = str(Path(inst.config["socketDir"]) / "multus.sock")
            cid = new_container_id()
            with netns("split") as ns:
                code, body = http_call(socket, "POST", "/cni", _body("ADD", cid, ns.path))
                assert code == 200, body
                assert http_call(socket, "POST", "/cni", _body("DEL", cid, ns.path))[0] == 200
            assert [c["command"] for c in recorded_calls(rec)] == ["ADD", "DEL"]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
