"""The shape rules for what callers hand the services: container IDs,
interface names, netns paths, plugin names and Kubernetes object names.

Each rule lives here once; the gateway and the executor turn a problem into
their own error (a CNI error object, a gRPC status). Every check returns the
problem as text, "" when there is none, so the caller decides the code. The
stdlib-only shim (`shim/multus_shim.py`) keeps its own copy of the CNI_*
rules; tests/common/test_validation_table.py runs the same cases through both.
Pure: no filesystem look-ups (finding a plugin or proving a path is a netns
is the executor's business)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

# IFNAMSIZ less the NUL: the kernel counts bytes, not characters.
IFNAME_MAX_BYTES = 15
# libcni's ValidateContainerID.
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# A CNI plugin "type" is a file name: no separators, no NUL, no leading dot
# (which also excludes "." and ".."), bounded length.
_PLUGIN_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]{0,254}")
# Kubernetes: namespaces are DNS-1123 labels, pods DNS-1123 subdomains.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253


def container_id_problem(container_id: str) -> str:
    """libcni's rule: [A-Za-z0-9][A-Za-z0-9_.-]*. It also keeps an ID from
    escaping a directory it names (the gateway's records)."""
    if not container_id:
        return "missing containerID"
    if not _CONTAINER_ID.fullmatch(container_id):
        return "invalid characters in containerID"
    return ""


def ifname_problem(ifname: str) -> str:
    """libcni's ValidateInterfaceName, with the length in bytes as the kernel counts it."""
    if not ifname:
        return "interface name is empty"
    if len(ifname.encode("utf-8", "surrogatepass")) > IFNAME_MAX_BYTES:
        return "interface name is too long"
    if ifname in (".", ".."):
        return "interface name is . or .."
    if any(ch in "/:\x00" or ch.isspace() for ch in ifname):
        return "interface name contains / or : or whitespace characters"
    return ""


def plugin_name_problem(name: str) -> str:
    """A delegate's `type`: a plain file name to look up in the bin dirs, never a path."""
    if not name:
        return "plugin name is empty"
    if "\0" in name or "/" in name or not _PLUGIN_NAME.fullmatch(name):
        return f"invalid plugin name {name!r}: a plain type name is required, never a path"
    return ""


def netns_path_problem(path: str, prefixes: Iterable[str]) -> str:
    """Shape of a netns path: absolute, normalised (no `..`, `//`, `.`), under an allowed prefix."""
    prefixes = tuple(prefixes)
    if path.startswith("/") and "\0" not in path and os.path.normpath(path) == path:
        for prefix in prefixes:
            base = prefix if prefix.endswith("/") else prefix + "/"
            if path.startswith(base) and len(path) > len(base):
                return ""
    return f"netns path {path!r} is not under an allowed prefix {list(prefixes)}"


def dns1123_label_problem(value: str) -> str:
    """A namespace or a network's name in a selection: lower case alphanumerics and '-'."""
    if len(value) > DNS1123_LABEL_MAX or not _DNS1123_LABEL.fullmatch(value):
        return f"{value!r} is not a DNS-1123 label (lower case alphanumerics and '-')"
    return ""


def dns1123_subdomain_problem(value: str) -> str:
    """An object's name (a NetworkAttachmentDefinition's, a pod's): DNS-1123 subdomain.
    It becomes an API path segment, so a '/' would address another resource."""
    if len(value) > DNS1123_SUBDOMAIN_MAX or not _DNS1123_SUBDOMAIN.fullmatch(value):
        return f"{value!r} is not a DNS-1123 subdomain (lower case alphanumerics, '-' and '.')"
    return ""


def pod_name_problem(namespace: str, name: str) -> str:
    """A pod's namespace (DNS-1123 label) and name (DNS-1123 subdomain). Both become
    API paths, so nothing else may pass (a '/' would address another resource)."""
    if not namespace or not name:
        return "pod namespace and name are required"
    if problem := dns1123_label_problem(namespace):
        return f"pod namespace {problem}"
    if dns1123_subdomain_problem(name):
        return f"pod name {name!r} is not a DNS-1123 subdomain"
    return ""
