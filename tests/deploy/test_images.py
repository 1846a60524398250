"""Containerfile and compose.yaml, checked statically (no base image can be
pulled here): syntax, and every path, entry point and module they name exists."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from services.common.config import SERVICES, config_from_dict
from services.common.probe import build_parser
from shim import install as shim_install
from tests.deploy.manifests import REPO, console_scripts, daemon_config_json

COMPOSE_DIR = REPO / "compose"
CONTAINERFILE = COMPOSE_DIR / "Containerfile"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation at the end"
    return out


def test_containerfile_syntax_and_sources() -> None:
    steps = instructions(CONTAINERFILE.read_text())
    assert steps[0][0] == "FROM" and "debian" in steps[0][1]
    for keyword, args in steps:
        assert keyword in INSTRUCTIONS, f"unknown instruction {keyword}"
        assert args, f"{keyword} without arguments"
        if keyword == "COPY":
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository (build context = repo root)"
        if keyword in ("CMD", "ENTRYPOINT") and args.startswith("["):
            command = json.loads(args)
            assert command[0] in console_scripts(), command
    copied = {source.rstrip("/") for k, a in steps if k == "COPY" for source in shlex.split(a)[:-1]}
    # every package pyproject installs is in the image
    assert {"services", "shim", "compose", "pyproject.toml"} <= copied


def test_containerfile_installs_what_the_entry_points_need() -> None:
    text = CONTAINERFILE.read_text()
    assert "pip --python /opt/multus/venv/bin/python install" in text
    # one stage only: ../shared/node/image.sh (buildah) reports multi-stage builds as failed
    assert sum(1 for k, _ in instructions(text) if k == "FROM") == 1
    assert "coreutils" in text  # chroot (executor) and sleep (cleanup DaemonSet)
    assert "/opt/multus/venv/bin" in text  # the console scripts are on PATH


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def test_compose_runs_the_four_services_sharing_host_paths() -> None:
    services = _compose()["services"]
    assert set(services) == {*SERVICES, "install-shim", "prepare-node"}
    scripts = console_scripts()
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == [f"multus-{name}", "--config", "/etc/multus/daemon-config.json"]
        assert svc["command"][0] in scripts
        assert svc["network_mode"] == "host" and svc["pid"] == "host"
        targets = {v["target"] for v in svc["volumes"]}
        assert {"/etc/multus/daemon-config.json", "/run/multus-grpc"} <= targets, name
        probe = build_parser().parse_args(svc["healthcheck"]["test"][2:])
        assert svc["healthcheck"]["test"][:2] == ["CMD", "multus-probe"] and probe.service == name
        assert bool(svc.get("privileged")) is (name == "executor")
        # The privilege split: every service but the executor as its own non-root uid (the DaemonSet's).
        if name != "executor":
            uid, gid = (int(x) for x in svc["user"].split(":"))
            assert uid >= 1000 and gid == 10000 and svc["cap_drop"] == ["ALL"], name
    assert services["prepare-node"]["command"][0] in scripts
    install = services["install-shim"]
    assert install["command"][0] == "multus-install-shim"
    shim_install.parse_args(install["command"][1:])
    build = install["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == CONTAINERFILE


def test_compose_daemon_config_is_the_configmaps() -> None:
    services = _compose()["services"]
    sources = {v["source"] for s in services.values() for v in s.get("volumes", []) if str(v["source"]).startswith(".")}
    for source in sources:
        assert (COMPOSE_DIR / source).exists(), source
    compose_config = json.loads((COMPOSE_DIR / "compose-daemon-config.json").read_text())
    assert compose_config == json.loads(daemon_config_json())
    config_from_dict(compose_config)


def test_python_modules_run_by_manifests_exist() -> None:
    for module in ("services.certs", "services.gateway.config_manager"):
        assert importlib.util.find_spec(module) is not None
    assert Path(shim_install.SHIM_SOURCE).exists()
