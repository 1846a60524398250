"""The RouteEditor the CNI logic uses for `default-route`, backed by the
executor's SetDefaultRoutes (the gateway itself never touches netlink)."""

from __future__ import annotations

from services.common.logs import get_logger
from services.gateway.executor_client import ExecutorClient

log = get_logger(__name__)


class ExecutorRouteEditor:
    def __init__(self, client: ExecutorClient, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    async def replace_default_routes(
        self, netns: str, ifname: str, drop_v4: bool, drop_v6: bool, gateways: tuple[str, ...]
    ) -> None:
        """Raises CniError: code 7 when the executor refuses (bad gateway, missing
        interface, gateway not reachable), 11 when no executor answers in time."""
        response = await self._client.set_default_routes(
            netns, ifname, drop_ipv4=drop_v4, drop_ipv6=drop_v6, gateways=gateways, timeout=self._timeout
        )
        log.debug(
            "default routes moved",
            ifname=ifname,
            removed=[f"{r.destination} via {r.gateway or '-'}" for r in response.removed],
            added=[f"{r.destination} via {r.gateway}" for r in response.added],
        )
