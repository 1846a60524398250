"""`multus-probe`: an exec probe for clusters without native gRPC probes
(before Kubernetes 1.24). Asks a service's grpc.health.v1 whether it is
SERVING, on its TCP health port from the daemon config when one is set (the
port the native probes use), else on its Unix socket. Exit 0 = SERVING.

    multus-probe --config /etc/multus/daemon-config.json --service gateway
    multus-probe --config ... --service cache --liveness
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import DEFAULT_CONFIG_PATH, SERVICES, ConfigError, DaemonConfig, load_config
from services.common.grpc_server import LIVENESS, OVERALL

EXIT_SERVING = 0
EXIT_NOT_SERVING = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class ProbeTarget:
    address: str  # a gRPC target: "127.0.0.1:<port>" or "unix://<socket>"
    health_service: str  # "" = overall readiness, "liveness" = process is up


def probe_target(config: DaemonConfig, service: str, *, liveness: bool = False, unix: bool = False) -> ProbeTarget:
    """Where the probe for `service` asks (pure: follows the daemon config the service itself reads)."""
    name = LIVENESS if liveness else OVERALL
    port = config.ports(service).health_port
    if port and not unix:
        # hostNetwork pods share the node's loopback; the health port listens on every address.
        return ProbeTarget(f"127.0.0.1:{port}", name)
    return ProbeTarget(f"unix://{config.grpc_socket(service)}", name)


def check(target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    """(serving, what was seen) for one health check."""
    try:
        with grpc.insecure_channel(target.address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=target.health_service), timeout=timeout
            )
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        return False, f"{target.address}: {code.name if code else 'error'}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, f"{target.address}: {status}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multus-probe", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="daemon-config.json path")
    parser.add_argument("--service", required=True, choices=SERVICES)
    parser.add_argument("--liveness", action="store_true", help="check that the process is up, not that it is ready")
    parser.add_argument("--unix", action="store_true", help="use the service's Unix socket even if a TCP port is set")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # The probe reads the same file the service was started with: it must be there.
        config = load_config(args.config, required=True)
    except ConfigError as exc:
        print(f"multus-probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    serving, seen = check(probe_target(config, args.service, liveness=args.liveness, unix=args.unix), args.timeout)
    print(f"{args.service} {'liveness' if args.liveness else 'readiness'} {seen}")
    return EXIT_SERVING if serving else EXIT_NOT_SERVING


if __name__ == "__main__":
    sys.exit(main())
