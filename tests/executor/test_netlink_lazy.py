"""pyroute2 is loaded by the executor's first netlink call, never at start-up
(the ADD/DEL path does not use it), and its errors leave the netlink module
as an OSError the servicer reports."""

from __future__ import annotations

import errno
import subprocess
import sys
from typing import Any

import pytest

from services.executor.netlink import NetlinkFailure, list_interfaces, run_in_netns
from tests.support.netns import netns


def test_the_executor_starts_without_pyroute2() -> None:
    probe = "import sys, services.executor.__main__, services.executor.server; print('pyroute2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_a_kernel_refusal_is_an_oserror_with_its_errno() -> None:
    def delete_missing_link(ipr: Any) -> None:
        ipr.link("del", index=2**30)

    with netns("nl") as ns:
        view = await list_interfaces(ns.path)
        assert [i.name for i in view.interfaces] == ["lo"]
        with pytest.raises(NetlinkFailure) as err:
            await run_in_netns(ns.path, delete_missing_link)
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENODEV
