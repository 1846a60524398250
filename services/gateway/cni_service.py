"""The gateway's CNI logic as one object for the transports (HTTP socket,
gRPC API, DEL spool replay): each verb is a short function in its own module
(add.py, delete.py, check.py, gc_status.py, hotplug.py) over the shared
ports and steps of core.py; this wires them and lists attachments."""

from __future__ import annotations

import asyncio
from typing import Any

from services.common.config import DaemonConfig
from services.gateway.add import cmd_add
from services.gateway.check import cmd_check
from services.gateway.core import Core, Timeouts
from services.gateway.delete import cmd_del
from services.gateway.device_info import DeviceInfoFiles
from services.gateway.gc_status import cmd_gc, cmd_status
from services.gateway.hotplug import cmd_delegate
from services.gateway.invoke import NetworkInvoker
from services.gateway.ports import Cluster, RouteEditor
from services.gateway.records import AttachmentRecord, RecordStore
from services.gateway.request import CniCall, InterfaceAttributes
from services.gateway.resolver import NetworkResolver


class CniService:
    def __init__(
        self,
        config: DaemonConfig,
        *,
        cluster: Cluster,
        invoker: NetworkInvoker,
        records: RecordStore,
        resolver: NetworkResolver,
        routes: RouteEditor | None = None,
        timeouts: Timeouts | None = None,
        device_files: DeviceInfoFiles | None = None,
    ) -> None:
        self.core = Core(
            config,
            cluster,
            invoker,
            records,
            resolver,
            routes,
            timeouts or Timeouts.from_config(config),
            device_files or DeviceInfoFiles(config.device_info_dir),
        )

    async def add(self, call: CniCall) -> dict[str, Any]:
        return await cmd_add(self.core, call)

    async def delete(self, call: CniCall) -> None:
        await cmd_del(self.core, call)

    async def check(self, call: CniCall) -> None:
        await cmd_check(self.core, call)

    async def status(self, call: CniCall) -> None:
        await cmd_status(self.core, call)

    async def gc(self, call: CniCall) -> None:
        await cmd_gc(self.core, call)

    async def delegate(self, call: CniCall, attributes: InterfaceAttributes | None) -> dict[str, Any] | None:
        """POST /delegate: hot-plug one interface."""
        return await cmd_delegate(self.core, call, attributes)

    async def attachments(self, container_id: str = "", namespace: str = "", name: str = "") -> list[AttachmentRecord]:
        store = self.core.records
        if container_id:
            records = await asyncio.to_thread(store.load, container_id)
        else:
            records = await asyncio.to_thread(store.all)
        return [
            r for r in records if (not namespace or r.pod_namespace == namespace) and (not name or r.pod_name == name)
        ]

    async def drain_background(self) -> None:
        await self.core.drain_background()
