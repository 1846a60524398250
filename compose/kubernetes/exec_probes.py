"""Derive exec-probes/daemonset.yaml (any Kubernetes >= 1.20) from
grpc-probes/daemonset.yaml (native gRPC probes, Kubernetes >= 1.24): every `grpc` probe
becomes an exec probe running `multus-probe` for the same service and health
name, which reads the port from the same daemon config.

    python -m compose.kubernetes.exec_probes          # rewrite the file
    python -m compose.kubernetes.exec_probes --check  # exit 1 when it is stale
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
GRPC_MANIFEST = HERE / "grpc-probes" / "daemonset.yaml"
EXEC_MANIFEST = HERE / "exec-probes" / "daemonset.yaml"
CONTAINER_PREFIX = "multus-"
LIVENESS = "liveness"  # services.common.grpc_server.LIVENESS (kept import-free: no grpc needed here)
HEADER = """\
# GENERATED from ../grpc-probes/daemonset.yaml by `python -m compose.kubernetes.exec_probes`: do not edit.
# The same node DaemonSet for clusters without native gRPC probes (before
# Kubernetes 1.24): each probe runs `multus-probe`, which asks the service's
# grpc.health.v1 on its health port from the same daemon config.
"""


def _config_path(command: Sequence[str]) -> str:
    args = list(command)
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    raise ValueError(f"container command {args} has no --config")


def exec_probe(grpc_probe: dict[str, Any], service: str, config_path: str) -> dict[str, Any]:
    """The exec probe equivalent to one native gRPC probe (same timing fields)."""
    probe = {k: v for k, v in grpc_probe.items() if k != "grpc"}
    command = ["multus-probe", "--config", config_path, "--service", service]
    if grpc_probe["grpc"].get("service") == LIVENESS:
        command.append("--liveness")
    return {"exec": {"command": command}, **probe}


def with_exec_probes(daemonset: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(daemonset)
    for container in out["spec"]["template"]["spec"]["containers"]:
        service = container["name"].removeprefix(CONTAINER_PREFIX)
        config_path = _config_path(container["command"])
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(kind)
            if probe and "grpc" in probe:
                container[kind] = exec_probe(probe, service, config_path)
    return out


def render() -> str:
    daemonset = yaml.safe_load(GRPC_MANIFEST.read_text())
    return HEADER + yaml.safe_dump(with_exec_probes(daemonset), sort_keys=False, width=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compose.kubernetes.exec_probes", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the generated file is stale")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        current = EXEC_MANIFEST.read_text() if EXEC_MANIFEST.exists() else ""
        if current != rendered:
            print(f"{EXEC_MANIFEST} is stale: run python -m compose.kubernetes.exec_probes", file=sys.stderr)
            return 1
        return 0
    EXEC_MANIFEST.write_text(rendered)
    print(f"wrote {EXEC_MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
