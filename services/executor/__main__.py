"""`python -m services.executor --config <daemon-config.json>` runs the executor.

Several executors can serve one node (the gateway spreads calls over
`executorSockets`): give each its own --socket and, if used, ports."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common.cli import base_parser, run_service


def main(argv: Sequence[str] | None = None) -> int:
    from services.executor.server import serve

    parser = base_parser("executor")
    parser.add_argument("--socket", help="serve on this Unix socket instead of <runDir>/grpc/executor.sock")
    parser.add_argument("--health-port", type=int, help="override servicePorts.executor.healthPort (0 = off)")
    parser.add_argument("--metrics-port", type=int, help="override servicePorts.executor.metricsPort (0 = off)")
    return run_service("executor", serve, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
