"""Every host path a service touches at run time, given the shipped daemon
config, is mounted in that service's container (DaemonSet and compose.yaml)
at the same path.

Which paths a service touches is derived from the code, not kept by hand: the
DaemonConfig attributes (fields and derived paths of services/common/config.py)
that each service's modules (and the services.common modules they import)
read off a config object, evaluated on the ConfigMap's daemon config.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.config import SERVICES, DaemonConfig, PerNodeCertificate
from tests.deploy.manifests import GRPC_DAEMONSET, REPO, daemon_config, load, one

COMPOSE_FILE = REPO / "compose" / "compose.yaml"
# Attributes read through a config object: `config.x`, `self._config.x`, `netconf.x`,
# `config.per_node_certificate.x`, `pnc.x`.
_CONFIG_OBJECT_HINTS = ("conf", "cfg", "per_node_certificate", "pnc")
# DaemonConfig attributes that are not fields but paths derived from them.
_DERIVED = ("autoconfig_dir", "daemon_socket_path", "records_dir", "delegate_kubeconfig_path", "bin_dirs")
# Paths the executor hands to delegates, which run chrooted into the host root
# and open them there (runner.DelegateRunner._kubeconfig checks under chrootDir):
# the host root mounted at chrootDir covers them.
_OPENED_IN_CHROOT = {"executor": {"delegate_kubeconfig_path"}}


def _module_file(module: str) -> Path | None:
    base = REPO / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def service_modules(service: str) -> list[Path]:
    """The service's own modules and the services.common modules they import (transitively)."""
    todo = sorted((REPO / "services" / service).glob("*.py"))
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("services."):
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if len(parts) > 1 and parts[0] == "services" and parts[1] in ("common", service):
                    found = _module_file(name)
                    if found is not None:
                        todo.append(found)
    return sorted(seen)


def config_attributes_read(service: str) -> set[str]:
    known = {f.name for f in fields(DaemonConfig)} | {f.name for f in fields(PerNodeCertificate)} | set(_DERIVED)
    known.add("grpc_socket")
    read: set[str] = set()
    for path in service_modules(service):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or node.attr not in known:
                continue
            owner = node.value
            owner_name = (
                owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            )
            if any(hint in owner_name.lower() for hint in _CONFIG_OBJECT_HINTS):
                read.add(node.attr)
    if "grpc_socket" in read:
        read.add("run_dir")
    return read


def _values(cfg: DaemonConfig, attribute: str) -> Iterator[str]:
    owner: Any = cfg.per_node_certificate if attribute in {f.name for f in fields(PerNodeCertificate)} else cfg
    if attribute == "bootstrap_kubeconfig" and not cfg.per_node_certificate.enabled:
        return  # read only to bootstrap a per-node certificate
    value = getattr(owner, attribute)
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, str) and item.startswith("/"):
            # The image is Debian, where /var/run is a link to /run.
            yield "/run" + item[len("/var/run") :] if item.startswith("/var/run/") else item


def runtime_paths(service: str) -> dict[str, str]:
    """path -> the DaemonConfig attribute it comes from, for one service."""
    cfg = daemon_config()
    return {path: attr for attr in sorted(config_attributes_read(service)) for path in _values(cfg, attr)}


def test_the_derivation_sees_what_each_service_is_known_to_use() -> None:
    """Guards the derivation itself: a few uses that must be found."""
    assert {"records_dir", "daemon_socket_path", "pod_resources_socket", "device_info_dir"} <= config_attributes_read(
        "gateway"
    )
    assert {"bin_dirs", "chroot_dir", "executor_netns_prefixes", "delegate_kubeconfig_path", "run_dir"} <= (
        config_attributes_read("executor")
    )
    assert {"delegate_kubeconfig_path", "cert_dir"} <= config_attributes_read("certs")
    assert "/run/netns/" in runtime_paths("executor")


def _covering(mounts: list[tuple[str, str]], path: str) -> tuple[str, str] | None:
    """The (container path, host path) mount holding `path`, the deepest one."""
    best = None
    for target, source in mounts:
        target = target.rstrip("/") or "/"
        inside = path.rstrip("/") == target or path.startswith(target.rstrip("/") + "/")
        if inside and (best is None or len(target) > len(best[0])):
            best = (target, source.rstrip("/") or "/")
    return best


def _check(service: str, mounts: list[tuple[str, str]], host_pid: bool) -> list[str]:
    cfg = daemon_config()
    problems = []
    for path, attr in runtime_paths(service).items():
        if path.startswith("/proc/"):
            if not host_pid:
                problems.append(f"{service}: {attr} {path} needs the host's PID namespace")
            continue
        if path == cfg.chroot_dir.rstrip("/") or path == cfg.chroot_dir:
            mount = _covering(mounts, path)
            if mount is None or mount[0] != path.rstrip("/") or mount[1] != "/":
                problems.append(f"{service}: chrootDir {path} must be the host root, got {mount}")
            continue
        if attr in _OPENED_IN_CHROOT.get(service, set()) and cfg.chroot_dir:
            chroot = _covering(mounts, cfg.chroot_dir)
            if chroot is not None and chroot[1] == "/":
                continue
        mount = _covering(mounts, path)
        if mount is None:
            problems.append(f"{service}: {attr} {path} is not mounted")
        elif mount[0] != mount[1]:
            problems.append(f"{service}: {attr} {path} is mounted from host {mount[1]} at {mount[0]}")
    return problems


def test_daemonset_mounts_every_runtime_path_at_the_same_path() -> None:
    ds = one(load(GRPC_DAEMONSET), "DaemonSet").obj
    spec = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    containers = {c["name"]: c for c in spec["containers"]}
    problems = []
    for service in SERVICES:
        mounts = []
        for mount in containers[f"multus-{service}"]["volumeMounts"]:
            host = volumes[mount["name"]].get("hostPath", {}).get("path")
            if host is not None:
                mounts.append((mount["mountPath"], host))
        problems += _check(service, mounts, bool(spec.get("hostPID")))
    assert problems == []


def test_compose_mounts_every_runtime_path_at_the_same_path() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    problems = []
    for service in SERVICES:
        svc = services[service]
        mounts = [
            (v["target"], v["source"]) for v in svc["volumes"] if v.get("type") == "bind" and os.path.isabs(v["source"])
        ]
        problems += _check(service, mounts, svc.get("pid") == "host")
    assert problems == []


@pytest.mark.parametrize(
    ("mounts", "expected"),
    [
        ([("/hostroot", "/"), ("/run/multus-grpc", "/run/multus-grpc")], set()),
        ([("/hostroot", "/etc"), ("/run/multus-grpc", "/run/multus-grpc")], {"chrootDir", "delegate_kubeconfig_path"}),
        ([("/hostroot", "/"), ("/run/multus-grpc", "/var/tmp/grpc")], {"run_dir"}),
        ([("/hostroot", "/")], {"run_dir"}),
    ],
)
def test_the_check_catches_missing_and_moved_mounts(mounts: list[tuple[str, str]], expected: set[str]) -> None:
    problems = _check("executor", [*mounts, ("/opt/cni/bin", "/opt/cni/bin"), ("/run/netns", "/run/netns")], True)
    assert {word for word in expected for p in problems if word in p} == expected and len(problems) == len(expected), (
        problems
    )
    assert any("PID namespace" in p for p in _check("executor", mounts, False))
