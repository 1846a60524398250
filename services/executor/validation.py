"""Checks on everything a caller sends the executor: plugin names, CNI commands,
netns paths, environment entries, default-route gateways. The shape rules
shared with the gateway live in services.common.validation; this adds the
executor's own rules and the two filesystem looks they need (finding a
plugin, proving a path is a netns)."""

from __future__ import annotations

import errno
import fcntl
import functools
import ipaddress
import os
import stat
from collections.abc import Iterable, Mapping

from services.common.cni import CNI_COMMANDS
from services.common.validation import container_id_problem, ifname_problem, netns_path_problem, plugin_name_problem
from services.executor.rejection import Reason, Rejected
from shim.rootfs import resolve_in_root

# Commands that act on a container's network namespace and need it to exist.
NETNS_REQUIRED = frozenset({"ADD", "CHECK"})
# Extra environment a caller may hand a delegate; everything else is built here.
ALLOWED_EXTRA_ENV = frozenset({"KUBECONFIG"})
# ioctl(NS_GET_NSTYPE) on a namespace file answers its CLONE_* type (Linux >= 4.11).
_NS_GET_NSTYPE = 0xB703
_CLONE_NEWNET = 0x40000000


def validate_plugin_name(name: str) -> str:
    if problem := plugin_name_problem(name):
        raise Rejected(Reason.INVALID, problem)
    return name


def validate_command(command: str) -> str:
    if command not in CNI_COMMANDS:
        raise Rejected(Reason.INVALID, f"unknown CNI command {command!r}")
    return command


def validate_env_value(key: str, value: str) -> None:
    if "\0" in value:
        raise Rejected(Reason.INVALID, f"{key} contains a NUL byte")


def validate_extra_env(extra: Mapping[str, str]) -> dict[str, str]:
    for key, value in extra.items():
        if key not in ALLOWED_EXTRA_ENV:
            raise Rejected(Reason.INVALID, f"environment variable {key!r} may not be set by the caller")
        validate_env_value(key, value)
    return dict(extra)


def validate_netns(path: str, command: str, prefixes: Iterable[str]) -> str:
    """The netns path a delegate (running `command`) may be handed.

    ADD/CHECK (and netlink inspection: command "") need an existing network namespace other than the executor's own
    (the host's). DEL may name one that is already gone (the runtime deletes
    namespaces before DEL; plugins treat that as success), or none at all; the
    path's shape is still checked so nothing outside the prefixes is passed on.
    """
    prefixes = tuple(prefixes)
    must_exist = command in NETNS_REQUIRED or not command
    if not path:
        if must_exist:
            raise Rejected(Reason.INVALID, f"{command or 'this call'} needs a netns path")
        return path
    if problem := netns_path_problem(path, prefixes):
        raise Rejected(Reason.INVALID, problem)
    try:
        identity = network_namespace_identity(path)
    except FileNotFoundError:
        if must_exist:
            raise Rejected(Reason.INVALID, f"netns {path} does not exist") from None
        return path
    except OSError as exc:
        raise Rejected(Reason.INVALID, f"netns {path} is not a network namespace: {exc.strerror}") from None
    if identity == own_network_namespace():
        raise Rejected(Reason.INVALID, f"netns {path} is the host network namespace")
    return path


@functools.cache
def own_network_namespace() -> tuple[int, int]:
    """The executor's (the host's) network namespace, looked at once: the main
    thread never leaves it (netlink work enters pods' namespaces on threads of
    its own, netlink.py), and /proc/self names the main thread's."""
    return network_namespace_identity("/proc/self/ns/net")


def network_namespace_identity(path: str) -> tuple[int, int]:
    """(st_dev, st_ino) of a network namespace file; OSError when it is not one."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a namespace file")
        try:
            kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
        except OSError:
            raise OSError(errno.EINVAL, "not a namespace file") from None
        if kind != _CLONE_NEWNET:
            raise OSError(errno.EINVAL, "a namespace, but not a network namespace")
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


def find_plugin(name: str, bin_dirs: Iterable[str], chroot_dir: str = "") -> str:
    """The first `<binDir>/<name>` that is an executable regular file where it will
    run: inside `chroot_dir` when set (links followed as the chrooted process
    follows them, so distro links such as `bridge -> /usr/lib/cni/bridge` work),
    else on the executor's own filesystem. Returns the path to execute (the same
    path inside the chroot)."""
    validate_plugin_name(name)
    searched = []
    for directory in bin_dirs:
        candidate = os.path.join(directory, name)
        searched.append(directory)
        if _is_executable_file(chroot_dir, candidate):
            return candidate
    where = f" (inside chrootDir {chroot_dir})" if chroot_dir else ""
    raise Rejected(Reason.NOT_FOUND, f"failed to find plugin {name!r} in path {searched}{where}")


def _is_executable_file(root: str, path: str) -> bool:
    try:
        real = resolve_in_root(root, path)
        st = os.stat(real)  # missing, ENOTDIR or ELOOP: not found, as the chrooted exec would fail
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and os.access(real, os.X_OK)


def validate_ifname(name: str) -> str:
    """A Linux interface name (services.common.validation)."""
    if problem := ifname_problem(name):
        raise Rejected(Reason.INVALID, f"invalid interface name {name!r}: {problem}")
    return name


def validate_add_runtime(container_id: str, ifname: str) -> None:
    """What libcni checks before every ADD (upstream runs its delegates through
    libcni): a valid container ID and interface name. Plugins write both into
    their own state (host-local's leases hold `<id>\\r\\n<ifname>`), so a
    newline in either would corrupt it. DEL and CHECK are left alone, as in
    libcni: they must clean up whatever an older runtime added."""
    if container_id_problem(container_id):
        raise Rejected(
            Reason.INVALID, f"invalid container ID {container_id!r}: libcni requires [A-Za-z0-9][A-Za-z0-9_.-]*"
        )
    validate_ifname(ifname)


GatewayAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def validate_gateways(gateways: Iterable[str]) -> tuple[GatewayAddress, ...]:
    """Default-route gateways: unicast IP addresses, at most one per family (the
    kernel would take a second as ECMP, which Multus's `default-route` refuses)."""
    parsed: list[GatewayAddress] = []
    for text in gateways:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise Rejected(Reason.INVALID, f"gateway {text!r} is not an IP address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            raise Rejected(Reason.INVALID, f"gateway {text!r}: a zone is implied by the interface, do not give one")
        if address.is_unspecified or address.is_multicast or address.is_loopback or address == _LIMITED_BROADCAST:
            raise Rejected(Reason.INVALID, f"gateway {text!r} is not a unicast address")
        if any(other.version == address.version for other in parsed):
            raise Rejected(
                Reason.INVALID, f"more than one IPv{address.version} gateway: ECMP default routes are not supported"
            )
        parsed.append(address)
    return tuple(parsed)
