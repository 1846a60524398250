"""Command-line handling every service shares: --config plus flags that override
daemon-config keys, and the asyncio entry point."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from services.common.config import DEFAULT_CONFIG_PATH, ConfigError, DaemonConfig, load_config
from services.common.logs import get_logger, setup_logging
from services.common.service_info import record_process

# flag -> daemon-config key it overrides
_OVERRIDES = {
    "run_dir": "runDir",
    "socket_dir": "socketDir",
    "log_level": "logLevel",
    "cluster_dir": "clusterDir",
    "bin_dir": "binDir",
    "cni_dir": "cniDir",
}


def base_parser(service: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"multus-{service}", description=f"multus {service} service")
    parser.add_argument(
        "--config",
        help=f"daemon-config.json path (default {DEFAULT_CONFIG_PATH}; a path given here must exist)",
    )
    parser.add_argument("--run-dir", help="override runDir (gRPC sockets live in <runDir>/grpc)")
    parser.add_argument("--socket-dir", help="override socketDir")
    parser.add_argument("--log-level", help="override logLevel")
    parser.add_argument("--cluster-dir", help="override clusterDir (file-backed cluster)")
    parser.add_argument("--bin-dir", help="override binDir")
    parser.add_argument("--cni-dir", help="override cniDir")
    return parser


def config_from_args(args: argparse.Namespace) -> DaemonConfig:
    overrides: dict[str, Any] = {
        key: getattr(args, flag) for flag, key in _OVERRIDES.items() if getattr(args, flag, None) is not None
    }
    # A file the operator names must exist: starting on defaults instead would run a
    # node with paths and credentials nobody chose. The default path may be absent.
    named = args.config is not None
    return load_config(args.config if named else DEFAULT_CONFIG_PATH, overrides, required=named)


def run_service(
    service: str,
    serve: Callable[[DaemonConfig, argparse.Namespace], Coroutine[Any, Any, None]],
    argv: Sequence[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> int:
    """Parse flags, load the config, set up logging and run `serve` until it returns."""
    parser = parser or base_parser(service)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"multus-{service}: {exc}", file=sys.stderr)
        return 2
    log_file = config.service_log_file(service)
    setup_logging(service, config.log_level, log_file, config.log_options, to_stderr=config.log_to_stderr)
    record_process(service, config_path=args.config, log_file=log_file)
    try:
        asyncio.run(serve(config, args))
    except KeyboardInterrupt:
        pass
    except Exception:
        get_logger(__name__).exception("service failed")
        return 1
    return 0
