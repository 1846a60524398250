"""multusctl: kubectl-like tables by default, `-o json|yaml` for scripts, exit
codes that mean something (see `multusctl --help`), and one line on stderr
naming the socket when a service is down.

    multusctl status
    multusctl attachments [--pod ns/name] [--container ID]
    multusctl plan ns/name [--annotation '...'] [--default-network '...']
    multusctl check ns/name [--container ID]
    multusctl exec PLUGIN COMMAND [--netns PATH] [--ifname IF] [--config FILE|-]
    multusctl logs (--pod ns/name | --container ID) [--service S] [--since 10m]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from services.common.config import DEFAULT_CONFIG_PATH, SERVICES, ConfigError, DaemonConfig, load_config
from services.ctl import attachments, check, exec_plugin, logs, plan, status
from services.ctl.errors import EXIT_CODES, USAGE, CtlError
from services.ctl.output import FORMATS, dump
from services.ctl.pods import parse_pod
from services.ctl.result import Result
from services.ctl.rpc import Node

CONFIG_ENV = "MULTUSCTL_CONFIG"


def _epilog() -> str:
    return "exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multusctl",
        description="Inspect and debug the multus services of this node over their gRPC sockets.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH),
        help=f"daemon-config.json the services read (default ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--run-dir", help="override runDir (the gRPC sockets are in <runDir>/grpc)")
    parser.add_argument("-o", "--output", choices=FORMATS, default="table", help="output format (default table)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("status", help="health, versions, cache, credentials, RBAC gaps, executor queue")

    att = commands.add_parser("attachments", help="what is attached where (the gateway's records)")
    att.add_argument("--pod", help="only this pod (namespace/name)")
    att.add_argument("--container", default="", help="only this container ID")

    pln = commands.add_parser("plan", help="dry run of ADD for a pod: delegates, interfaces, configs and why")
    pln.add_argument("pod", help="namespace/name")
    pln.add_argument("--annotation", help="use this k8s.v1.cni.cncf.io/networks value instead of the pod's")
    pln.add_argument("--default-network", help="use this v1.multus-cni.io/default-network value instead of the pod's")
    pln.add_argument("--ifname", default="eth0", help="the runtime's CNI_IFNAME (default eth0)")
    pln.add_argument("--multus-config", help="the runtime's CNI config file (default: the one the gateway maintains)")

    chk = commands.add_parser("check", help="CNI CHECK of each of a pod's attachments")
    chk.add_argument("pod", help="namespace/name")
    chk.add_argument("--container", default="", help="only this container ID")

    exe = commands.add_parser("exec", help="one delegate call through the executor (needs executorAllowOperatorExec)")
    exe.add_argument("plugin", help="plugin type, e.g. bridge")
    exe.add_argument("cni_command", metavar="COMMAND", help="ADD, DEL, CHECK, STATUS, GC or VERSION")
    exe.add_argument("--netns", default="", help="network namespace path")
    exe.add_argument("--ifname", default="", help="CNI_IFNAME")
    exe.add_argument("--container-id", default="", help="CNI_CONTAINERID")
    exe.add_argument("--args", default="", help="CNI_ARGS")
    exe.add_argument("--config", dest="plugin_config", default="", help="the plugin's stdin: a file, or - for stdin")
    exe.add_argument("--socket", default="", help="an executor socket other than the daemon config's first")

    lgs = commands.add_parser("logs", help="the services' log lines for one pod or container, merged by time")
    lgs.add_argument("--pod", default="", help="namespace/name")
    lgs.add_argument("--container", default="", help="container ID (a prefix is enough)")
    lgs.add_argument("--service", action="append", choices=[*SERVICES, "supervisor"], help="only these services")
    lgs.add_argument("--since", default="", help="only lines newer than this (30s, 10m, 2h, 1d)")
    lgs.add_argument("--log-dir", default="", help="read <dir>/<service>.log instead of the daemon config's files")
    return parser


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CtlError(USAGE, f"cannot read {path}: {exc.strerror or exc}") from exc


def _config(args: argparse.Namespace) -> DaemonConfig:
    overrides = {"runDir": args.run_dir} if args.run_dir else None
    try:
        return load_config(args.config, overrides)
    except ConfigError as exc:
        raise CtlError(USAGE, str(exc)) from exc


def execute(args: argparse.Namespace) -> Result:
    config = _config(args)
    node = Node(config, args.timeout)
    if args.command == "status":
        return status.run(node)
    if args.command == "attachments":
        namespace, name = parse_pod(args.pod) if args.pod else ("", "")
        return attachments.run(node, attachments.Filter(namespace, name, args.container))
    if args.command == "plan":
        namespace, name = parse_pod(args.pod)
        return plan.run(
            node,
            namespace,
            name,
            annotation=args.annotation,
            default_network=args.default_network,
            ifname=args.ifname,
            config=_read_input(args.multus_config) if args.multus_config else b"",
        )
    if args.command == "check":
        namespace, name = parse_pod(args.pod)
        return check.run(node, namespace, name, args.container)
    if args.command == "exec":
        return exec_plugin.run(
            node,
            plugin=args.plugin,
            command=args.cni_command,
            netns=args.netns,
            ifname=args.ifname,
            container_id=args.container_id,
            args=args.args,
            config=_read_input(args.plugin_config) if args.plugin_config else b"",
            socket=args.socket,
        )
    if args.command == "logs":
        if not args.pod and not args.container:
            raise CtlError(USAGE, "logs needs --pod namespace/name or --container ID")
        if args.pod:
            parse_pod(args.pod)
        now = datetime.now(UTC)
        query = logs.LogQuery(
            pod=args.pod,
            container_id=args.container,
            services=tuple(args.service or ()),
            since=logs.parse_since(args.since, now) if args.since else None,
        )
        return logs.run(config, query, args.log_dir)
    raise CtlError(USAGE, f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = execute(args)
    except CtlError as err:
        print(f"multusctl: {err.message}", file=sys.stderr)
        return err.code
    print(result.text if args.output == "table" else dump(result.document, args.output))
    return result.code


if __name__ == "__main__":
    sys.exit(main())
