"""CNI CHECK: every recorded attachment must have completed ADD, and every
delegate's CHECK must pass against its stored result (delegates whose config
predates CHECK, or disables it, are skipped as libcni does)."""

from __future__ import annotations

from services.common import cni
from services.gateway.core import Core
from services.gateway.delete import upstream_records
from services.gateway.request import CniCall


async def cmd_check(core: Core, call: CniCall) -> None:
    netconf = core.netconf(call, require_network=False)
    core.check_readiness(netconf)
    records = await core.load_records(call.container_id)
    if not records:
        records = await upstream_records(call, netconf.cni_dir, netconf.cni_version)
    if not records:
        raise cni.CniError(cni.UNKNOWN_CONTAINER, f"no attachments recorded for container {call.container_id}")
    for record in records:
        if record.state != "added":
            raise cni.CniError(cni.UNKNOWN_CONTAINER, f"attachment {record.ifname} never completed ADD")
        try:
            await core.invoker.check(record.config, core.target(call, record), record.capability_args, record.result)
        except cni.CniError as err:
            raise cni.CniError(
                err.code, f"CHECK failed for network {record.network_name!r} ({record.ifname}): {err.msg}", err.details
            ) from err
