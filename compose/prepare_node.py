"""multus-prepare-node: give the non-root services the node paths they need, and no more.

The node DaemonSet runs gateway, cache and certs as their own non-root uids
with one shared primary group (the gRPC sockets' group, `grpcSocketGroup`);
only the executor stays root. Its init container runs this as root, before the
services start, with the host paths mounted where the services see them:

| path (daemon config) | owner | mode | why |
|---|---|---|---|
| `runDir` | root:group | 0750 | the services reach `grpc/` and their own state |
| `runDir/grpc` | root:group | 1770 | each service its own socket; sticky (stale ones are removed here) |
| `runDir/cache` (recursively) | cache | 0700 | the cache's state and queued network-status writes |
| `socketDir`, `socketDir/del-spool` | gateway | 0700 | `multus.sock` and the DEL spool (the shim is root) |
| `cniDir` (recursively) | gateway | 0700 | attachment records; upstream's scratch cache it migrates |
| `deviceInfoDir/cni` | gateway | 0755 | per-attachment device-info files the delegates read |
| `cniConfigDir` | unchanged | + ACL `u:<gateway>:rwx` | `00-multus.conf` (no ACL support: group write) |
| `cniConfigDir/multus.d` (recursively) | certs | 0755 | the delegates' token kubeconfig |
| `perNodeCertificate.certDir` (recursively; if enabled) | certs:group | 0750 | node credentials (cache reads) |
| `logDir` | root:group | 1770 | each service writes `<logDir>/<service>.log` (existing ones are given to it) |

The plan is pure (`prepare_plan`, table-tested); `apply` carries it out.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import stat
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.config import DEFAULT_CONFIG_PATH, ConfigError, DaemonConfig, load_config
from services.common.grpc_server import socket_gid

ROOT = 0


@dataclass(frozen=True)
class Identities:
    gateway: int = 10001
    cache: int = 10002
    certs: int = 10003
    group: int = 10000


@dataclass(frozen=True)
class Step:
    path: str
    uid: int  # -1: leave the owner
    gid: int  # -1: leave the group
    mode: int  # -1: leave the mode
    recursive: bool = False
    acl_writer: int = -1  # a uid given rwx on the directory through a POSIX ACL
    files_named: str = ""  # with recursive: only entries whose name starts with this
    # Stale sockets of a previous run go: in a sticky directory a service could not
    # remove another owner's (a root-owned one from before the split, say).
    remove_sockets: bool = False


def prepare_plan(config: DaemonConfig, ids: Identities) -> list[Step]:
    run_dir = config.run_dir
    steps = [
        Step(run_dir, ROOT, ids.group, 0o750),
        Step(os.path.join(run_dir, "grpc"), ROOT, ids.group, 0o1770, remove_sockets=True),
        Step(os.path.join(run_dir, "cache"), ids.cache, ids.group, 0o700, recursive=True),
        Step(config.socket_dir.rstrip("/") or "/", ids.gateway, ids.group, 0o700),
        Step(os.path.join(config.socket_dir, "del-spool"), ids.gateway, ids.group, 0o700, recursive=True),
        Step(config.cni_dir, ids.gateway, ids.group, 0o700, recursive=True),
        Step(os.path.join(config.device_info_dir, "cni"), ids.gateway, ids.group, 0o755),
        Step(config.cni_config_dir, -1, -1, -1, acl_writer=ids.gateway),
        Step(os.path.join(config.cni_config_dir, "multus.d"), ids.certs, ids.group, 0o755, recursive=True),
    ]
    if config.per_node_certificate.enabled:  # else certDir is not ours to create or chown
        steps.append(Step(config.per_node_certificate.cert_dir, ids.certs, ids.group, 0o750, recursive=True))
    if config.log_dir:
        steps.append(Step(config.log_dir, ROOT, ids.group, 0o1770))
        for service, uid in (("gateway", ids.gateway), ("cache", ids.cache), ("certs", ids.certs)):
            steps.append(Step(config.log_dir, uid, ids.group, -1, recursive=True, files_named=f"{service}.log"))
    return steps


# --- POSIX ACLs (system.posix_acl_access, as setfacl writes it) -------------------------
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF


def acl_with_writer(mode: int, uid: int) -> bytes:
    """The access ACL of a directory with `mode`, plus rwx for `uid` (setfacl -m u:<uid>:rwx)."""
    entries = [
        (_USER_OBJ, (mode >> 6) & 7, _UNDEFINED_ID),
        (_USER, 7, uid),
        (_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED_ID),
        (_MASK, 7, _UNDEFINED_ID),
        (_OTHER, mode & 7, _UNDEFINED_ID),
    ]
    return struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


def grant_writer(path: str, uid: int, fallback_gid: int) -> str:
    """Let `uid` write into `path`: an ACL entry, else (no ACLs on this filesystem)
    group write for `fallback_gid`. Returns what was done."""
    mode = os.stat(path).st_mode & 0o7777
    if (group_obj := _acl_group_obj(path)) is not None:
        # granted before (a restarted pod): with an ACL the group bits show the
        # mask, not the owning group's entry; build on the real one
        mode = (mode & ~0o070) | (group_obj << 3)
    try:
        os.setxattr(path, "system.posix_acl_access", acl_with_writer(mode, uid))
        return f"acl u:{uid}:rwx"
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
    os.chown(path, -1, fallback_gid)
    os.chmod(path, mode | 0o070)
    return f"group {fallback_gid} rwx (no ACL support)"


def _acl_entries(path: str) -> list[tuple[int, int, int]]:
    """The access ACL's (tag, perm, id) entries; [] without one."""
    try:
        blob = os.getxattr(path, "system.posix_acl_access")
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.EOPNOTSUPP, errno.ENOTSUP):
            return []
        raise
    return [struct.unpack_from("<HHI", blob, offset) for offset in range(4, len(blob), 8)]


def _acl_group_obj(path: str) -> int | None:
    """The owning group's own permissions when an extended ACL hides them behind the mask."""
    entries = _acl_entries(path)
    if not any(tag == _USER for tag, _, _ in entries):
        return None
    return next(perm for tag, perm, _ in entries if tag == _GROUP_OBJ)


def revoke_writers(path: str) -> str:
    """Undo grant_writer (uninstall): drop the access ACL as `setfacl -b` does, the
    group bits going back to the owning group's own entry (the mask showed there)."""
    group_obj = _acl_group_obj(path)
    if group_obj is None:
        return ""
    mode = os.stat(path).st_mode & 0o7777
    os.removexattr(path, "system.posix_acl_access")
    os.chmod(path, (mode & ~0o070) | (group_obj << 3))
    return f"{path}: ACL removed"


def apply(steps: Sequence[Step], ids: Identities, out: list[str]) -> None:
    for step in steps:
        if step.acl_writer >= 0:
            os.makedirs(step.path, mode=0o755, exist_ok=True)
            out.append(f"{step.path}: {grant_writer(step.path, step.acl_writer, ids.group)}")
            continue
        if step.files_named:
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(step.path):
                    if name.startswith(step.files_named):
                        os.chown(os.path.join(step.path, name), step.uid, step.gid, follow_symlinks=False)
            continue
        os.makedirs(step.path, mode=0o700, exist_ok=True)
        _own(step.path, step)
        if step.remove_sockets:
            for entry in os.scandir(step.path):
                if stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                    os.unlink(entry.path)
        if step.recursive:
            for top, dirs, files in os.walk(step.path):
                for name in dirs + files:
                    os.chown(os.path.join(top, name), step.uid, step.gid, follow_symlinks=False)
        out.append(f"{step.path}: {step.uid}:{step.gid} {oct(step.mode) if step.mode >= 0 else ''}".rstrip())


def _own(path: str, step: Step) -> None:
    os.chown(path, step.uid, step.gid, follow_symlinks=False)
    if step.mode >= 0:
        os.chmod(path, step.mode)


def main(argv: Sequence[str] | None = None) -> int:
    defaults = Identities()
    parser = argparse.ArgumentParser(prog="multus-prepare-node", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH)
    parser.add_argument("--gateway-uid", type=int, default=None, help="default: the config's gatewayUid, else 10001")
    parser.add_argument("--cache-uid", type=int, default=defaults.cache)
    parser.add_argument("--certs-uid", type=int, default=defaults.certs)
    parser.add_argument("--group", type=int, default=None, help="default: the config's grpcSocketGroup, else 10000")
    opts = parser.parse_args(argv)
    try:
        config = load_config(opts.config, required=True)
    except ConfigError as exc:
        print(f"multus-prepare-node: {exc}", file=sys.stderr)
        return 2
    group = opts.group
    if group is None:
        group = socket_gid(config.grpc_socket_group) if config.grpc_socket_group else defaults.group
    gateway = opts.gateway_uid if opts.gateway_uid is not None else (config.gateway_uid or defaults.gateway)
    ids = Identities(gateway, opts.cache_uid, opts.certs_uid, group)
    done: list[str] = []
    try:
        apply(prepare_plan(config, ids), ids, done)
    except OSError as exc:
        print(f"multus-prepare-node: {exc}", file=sys.stderr)
        return 1
    for line in done:
        print(f"multus-prepare-node: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
