"""Ordering, ownership and deadlines of the gateway's CNI logic, in-process
(tests/gateway/fakes.py): the exact CNI verb, DEL after a rolled-back ADD,
per-container serialization, DEL superseding an in-flight ADD, the whole-call
deadline and cancellation when the caller goes away (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.common import cni
from services.gateway.request import CniRequest
from tests.gateway.fakes import Node, make_node, plugin_conf


@pytest.fixture
def node(tmp_path: Path) -> Node:
    node = make_node(tmp_path)
    node.cluster.add_nad("net-a", plugin_conf("net-a"))
    node.cluster.add_nad("net-b", plugin_conf("net-b"))
    return node


async def failing(coro: Any) -> cni.CniError:
    with pytest.raises(cni.CniError) as raised:
        await coro
    return raised.value


@pytest.mark.parametrize("verb", ["add", "Add", "del", "check", "status", "gc", " ADD", "ADD ", "ADD\x00", "VERSION"])
async def test_cni_command_must_be_exactly_a_verb(node: Node, verb: str) -> None:
    """`add` used to run as ADD on /cni and /delegate; libcni and the shim require the exact verb."""
    node.cluster.add_pod("web", "net-a")
    base = node.request("ADD")
    request = CniRequest({**base.env, "CNI_COMMAND": verb}, base.config)
    assert (await failing(node.dispatcher.cni(request))).code == cni.INVALID_ENV
    assert (await failing(node.dispatcher.delegate(request))).code == cni.INVALID_ENV
    assert node.runner.calls == []
    assert node.records.container_ids() == []
