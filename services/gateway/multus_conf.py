"""Pure generation of `00-multus.conf`: which CNI config in the autoconfig
directory is the primary (cluster) network, and the multus-shim config that
points at it.

The output matches what upstream's thick daemon writes byte for byte (its
MultusConf struct marshalled by Go's encoding/json: fixed key order, compact,
HTML-escaped, empty values omitted), so ours and upstream's are interchangeable
on a node. No file I/O here: config_manager.py reads the directory and writes
the result.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MULTUS_CONF_NAME = "00-multus.conf"
MULTUS_NETWORK_NAME = "multus-cni-network"
SHIM_TYPE = "multus-shim"
# Plugin types that are Multus itself: never a primary network (that would loop).
OUR_TYPES = frozenset({"multus", "multus-shim"})
CONFIG_EXTENSIONS = (".conf", ".conflist")
# Upstream skips every file starting with this, not only its own output.
OUR_PREFIX = "00-multus"
SHIM_DEFAULT_SOCKET_DIR = "/run/multus/"  # where upstream's (and our) shim looks without daemonSocketDir
HOST_MOUNT_PREFIX = "/host"  # upstream's manifests mount host paths under /host

# Daemon-config keys copied into 00-multus.conf, in upstream MultusConf field
# order, with their JSON kind. Upstream also declares cniConfigDir,
# multusConfigFile, multusMasterCNI, multusAutoconfigDir, forceCNIVersion and
# readinessindicatorfile but blanks them before writing, so they never appear.
_STRING, _BOOL, _CAPS, _LOG_OPTIONS = "string", "bool", "capabilities", "logOptions"
_FIELDS: tuple[tuple[str, str], ...] = (
    ("binDir", _STRING),
    ("capabilities", _CAPS),
    ("cniVersion", _STRING),
    ("logFile", _STRING),
    ("logLevel", _STRING),
    ("logToStderr", _BOOL),
    ("logOptions", _LOG_OPTIONS),
    ("name", _STRING),
    ("clusterNetwork", _STRING),
    ("namespaceIsolation", _BOOL),
    ("globalNamespaces", _STRING),
    ("type", _STRING),
    ("cniDir", _STRING),
    ("auxiliaryCNIChainName", _STRING),
    ("daemonSocketDir", _STRING),
    ("overrideNetworkName", _BOOL),
)
_LOG_OPTION_KEYS = (("maxAge", int), ("maxSize", int), ("maxBackups", int), ("compress", bool))
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")
_CHECK_VERSION = (0, 4, 0)  # CHECK arrived in 0.4.0; an older delegate under a newer multus breaks


class InvalidNetworkConfig(ValueError):
    """A CNI config file that cannot be the primary network; the message says why."""


@dataclass(frozen=True)
class ConfigFile:
    """One file of the autoconfig directory as read from disk (content None: unreadable)."""

    name: str
    content: bytes | None
    read_error: str = ""


@dataclass(frozen=True)
class PrimaryNetwork:
    """The chosen cluster network: its file path (as written into clusterNetwork) and parsed config."""

    path: str
    config: Mapping[str, Any]

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)


@dataclass(frozen=True)
class SkippedFile:
    name: str
    reason: str


@dataclass(frozen=True)
class Selection:
    primary: PrimaryNetwork | None
    skipped: tuple[SkippedFile, ...]


def is_config_file_name(name: str) -> bool:
    """A name the runtime and upstream consider: .conf/.conflist, not hidden (our temp files)."""
    return not name.startswith(".") and os.path.splitext(name)[1] in CONFIG_EXTENSIONS


def semver(version: str) -> tuple[int, int, int] | None:
    match = _SEMVER.match(version)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _plugin_types(config: Mapping[str, Any]) -> list[str]:
    plugins = config.get("plugins")
    if isinstance(plugins, list) and plugins:
        return [str(p.get("type", "")) for p in plugins if isinstance(p, dict)]
    return [str(config.get("type", ""))]


def parse_network_config(name: str, content: bytes) -> dict[str, Any]:
    """Parse and check one .conf/.conflist as libcni would load it; raise InvalidNetworkConfig."""
    try:
        config = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidNetworkConfig(f"not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidNetworkConfig("not a JSON object")
    version = config.get("cniVersion", "")
    if not isinstance(version, str):
        raise InvalidNetworkConfig("cniVersion is not a string")
    if name.endswith(".conflist"):
        if not isinstance(config.get("name"), str) or not config["name"]:
            raise InvalidNetworkConfig("conflist has no name")
        plugins = config.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise InvalidNetworkConfig("conflist has no plugins")
        for index, plugin in enumerate(plugins):
            if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
                raise InvalidNetworkConfig(f"plugin {index} has no type")
    elif not isinstance(config.get("type"), str) or not config["type"]:
        raise InvalidNetworkConfig("conf has no type")
    ours = OUR_TYPES.intersection(_plugin_types(config))
    if ours:
        raise InvalidNetworkConfig(f"it is a Multus config (type {sorted(ours)[0]})")
    return config


def check_version_compatibility(multus_version: str, delegate_version: str) -> None:
    """Upstream's rule: under a multus cniVersion >= 0.4.0 the delegate must be >= 0.4.0 too."""
    top = semver(multus_version)
    if top is None:
        raise InvalidNetworkConfig(f"multus cniVersion {multus_version!r} is not a semantic version")
    if top < _CHECK_VERSION:
        return
    own = semver(delegate_version)
    if own is None:
        raise InvalidNetworkConfig(f"cniVersion {delegate_version!r} is not a semantic version")
    if own < _CHECK_VERSION:
        raise InvalidNetworkConfig(
            f"delegate cni version is {delegate_version} while top level cni version is {multus_version}"
        )


def select_primary(
    files: Iterable[ConfigFile],
    autoconfig_dir: str,
    *,
    multus_cni_version: str = "",
    force_cni_version: bool = False,
    master_file_name: str = "",
) -> Selection:
    """The highest-priority (lexically first) valid config that is not ours, and why the others lost.

    `master_file_name` (upstream's multusMasterCNI) pins the primary to that
    one file. Files lexically after the winner are not examined.
    """
    skipped: list[SkippedFile] = []
    for file in sorted(files, key=lambda f: f.name):
        if not is_config_file_name(file.name):
            continue
        if master_file_name and file.name != master_file_name:
            continue
        if file.name == MULTUS_CONF_NAME:
            continue  # our own output: not worth a warning on every pass
        if file.name.startswith(OUR_PREFIX):
            skipped.append(SkippedFile(file.name, f"upstream Multus ignores every {OUR_PREFIX}* file"))
            continue
        if file.content is None:
            skipped.append(SkippedFile(file.name, f"unreadable: {file.read_error or 'unknown error'}"))
            continue
        try:
            config = parse_network_config(file.name, file.content)
            # forceCNIVersion makes the gateway rewrite delegates' cniVersion, so any version goes.
            if multus_cni_version and not force_cni_version:
                check_version_compatibility(multus_cni_version, str(config.get("cniVersion", "")))
        except InvalidNetworkConfig as exc:
            skipped.append(SkippedFile(file.name, str(exc)))
            continue
        path = os.path.normpath(os.path.join(autoconfig_dir, file.name))
        return Selection(PrimaryNetwork(path, config), tuple(skipped))
    return Selection(None, tuple(skipped))


def _enabled_capabilities(plugin: Any) -> list[str]:
    caps = plugin.get("capabilities") if isinstance(plugin, dict) else None
    if not isinstance(caps, dict):
        return []
    return [name for name, enabled in caps.items() if enabled is True]


def capabilities_of(config: Mapping[str, Any]) -> dict[str, bool]:
    """The union of enabled capabilities of the primary's plugins (or of the single plugin)."""
    plugins = config.get("plugins")
    sources = plugins if isinstance(plugins, list) and plugins else [config]
    return {name: True for plugin in sources for name in _enabled_capabilities(plugin)}


def _go_lookup(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Map daemon-config keys onto MultusConf fields as Go's decoder does:
    exact name first, else case-insensitive; later duplicates win."""
    exact = {name for name, _ in _FIELDS}
    folded = {name.lower(): name for name, _ in _FIELDS}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        field_name = key if key in exact else folded.get(key.lower())
        if field_name is not None:
            out[field_name] = value
    return out


def _log_options(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    for key, kind in _LOG_OPTION_KEYS:
        item = value.get(key)
        if item is None:
            continue
        if kind is bool and isinstance(item, bool):
            out[key] = item
        elif kind is int and isinstance(item, int | float) and not isinstance(item, bool):
            out[key] = int(item)
    return out


def _field_value(kind: str, value: Any) -> Any:
    """The value Go would marshal for this field, or None when omitempty drops it."""
    if kind == _STRING:
        if isinstance(value, list):  # globalNamespaces given as a list: upstream wants "a,b"
            value = ",".join(str(v) for v in value)
        return value if isinstance(value, str) and value else None
    if kind == _BOOL:
        return True if value is True else None
    if kind == _LOG_OPTIONS:
        return _log_options(value)
    return None


def shim_socket_dir(daemon_config: Mapping[str, Any], socket_dir: str) -> str | None:
    """The daemonSocketDir the host's shim needs to reach the gateway listening in `socket_dir`.

    An explicit daemonSocketDir is the operator's word (upstream copies only
    that key). Otherwise the gateway's socketDir as the host sees it: upstream's
    manifests mount host paths under /host (socketDir /host/run/multus/ is the
    host's /run/multus/), and the shim's default needs no key, which keeps the
    output byte-identical to upstream's for its own configs. Local runs with a
    socketDir elsewhere get it written, so the shim finds the gateway.
    """
    explicit = _go_lookup(daemon_config).get("daemonSocketDir")
    if isinstance(explicit, str) and explicit:
        return explicit
    host_view = socket_dir[len(HOST_MOUNT_PREFIX) :] if socket_dir.startswith(HOST_MOUNT_PREFIX + "/") else socket_dir
    if not host_view or os.path.normpath(host_view) == os.path.normpath(SHIM_DEFAULT_SOCKET_DIR):
        return None
    return host_view


def multus_conf(daemon_config: Mapping[str, Any], primary: PrimaryNetwork, socket_dir: str = "") -> dict[str, Any]:
    """The 00-multus.conf object for this daemon config (the raw JSON object) and primary network;
    `socket_dir` is where the gateway listens (DaemonConfig.socket_dir)."""
    given = _go_lookup(daemon_config)
    caps = given.get("capabilities")
    capabilities = {k: True for k, v in caps.items() if v is True} if isinstance(caps, dict) else {}
    capabilities.update(capabilities_of(primary.config))
    name = MULTUS_NETWORK_NAME
    if given.get("overrideNetworkName") is True and isinstance(primary.config.get("name"), str):
        name = primary.config["name"] or name
    cni_version = given.get("cniVersion")
    if not isinstance(cni_version, str) or not cni_version:
        # Upstream refuses to start without cniVersion; following the primary is the useful default.
        cni_version = str(primary.config.get("cniVersion", ""))
    forced: dict[str, Any] = {
        "capabilities": dict(sorted(capabilities.items())) or None,
        "cniVersion": cni_version,  # not omitempty upstream
        "name": name,
        "clusterNetwork": primary.path,
        "type": SHIM_TYPE,
        "daemonSocketDir": shim_socket_dir(daemon_config, socket_dir),
    }
    out: dict[str, Any] = {}
    for key, kind in _FIELDS:
        value = forced[key] if key in forced else _field_value(kind, given.get(key))
        if value is not None:
            out[key] = value
    return out


def go_json(obj: Any) -> bytes:
    """JSON as Go's json.Marshal writes it: compact, with <, >, &, U+2028/9 escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(char, escape)
    return text.replace("\u2029", "\\u2029").encode()


def render_multus_conf(daemon_config: Mapping[str, Any], primary: PrimaryNetwork, socket_dir: str = "") -> bytes:
    return go_json(multus_conf(daemon_config, primary, socket_dir))


def is_generated_multus_conf(content: bytes) -> bool:
    """Whether a file's content is a multus-shim config as this generator (or upstream's) writes it."""
    try:
        config = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and config.get("type") == SHIM_TYPE and "clusterNetwork" in config
