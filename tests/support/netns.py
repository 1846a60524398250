"""Real network namespaces and veth pairs owned by a test: created with iproute2,
always removed, even when the test fails."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def unique_name(prefix: str) -> str:
    """Interface-safe unique name (IFNAMSIZ is 16 including NUL)."""
    return f"{prefix}{uuid.uuid4().hex[: 15 - len(prefix)]}"


@dataclass(frozen=True)
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/var/run/netns/{self.name}"

    def links(self) -> dict[str, dict[str, Any]]:
        out = ip("-j", "addr", "show", netns=self.name).stdout
        return {link["ifname"]: link for link in json.loads(out or "[]")}

    def addresses(self, ifname: str) -> list[str]:
        link = self.links().get(ifname)
        if not link:
            return []
        return [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("scope") == "global"]

    def routes(self, family: str = "-4") -> list[dict[str, Any]]:
        return list(json.loads(ip(family, "-j", "route", "show", netns=self.name).stdout or "[]"))


def require_root() -> None:
    """Namespaces and links need root: without it the test is skipped, saying why."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces and links")


@contextmanager
def netns(prefix: str = "mt") -> Iterator[Netns]:
    require_root()
    ns = Netns(unique_name(prefix))
    ip("netns", "add", ns.name)
    try:
        ip("link", "set", "lo", "up", netns=ns.name)
        yield ns
    finally:
        ip("netns", "delete", ns.name, check=False)


@contextmanager
def veth_pair(prefix: str = "mv") -> Iterator[tuple[str, str]]:
    """A host veth pair whose first end serves as a macvlan parent / bridge port."""
    require_root()
    a, b = unique_name(prefix), unique_name(prefix)
    ip("link", "add", a, "type", "veth", "peer", "name", b)
    try:
        ip("link", "set", a, "up")
        ip("link", "set", b, "up")
        yield a, b
    finally:
        ip("link", "delete", a, check=False)


def host_link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")
