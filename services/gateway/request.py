"""The upstream Multus request envelope and the CNI/Kubernetes arguments inside it.

The shim posts `{"env": {...}, "config": <base64 of stdin>, "interfaceAttributes":
{...}}` (Go `api.Request`). Bodies are decoded as Go's encoding/json does: keys
match fields case-insensitively (so `Env`/`Config` work) and are decoded in
document order into the same field, so for duplicates the last string wins,
objects merge into the map or struct and `null` resets it; `[]byte` is
standard padded base64; lone surrogates become U+FFFD. Everything here is
pure; bad input becomes a CniError with its code.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common import cni
from services.common.validation import container_id_problem, ifname_problem, pod_name_problem

POD_VERBS = ("ADD", "DEL", "CHECK")
PLUGIN_VERBS = ("STATUS", "GC")


@dataclass(frozen=True)
class InterfaceAttributes:
    """upstream's DelegateInterfaceAttributes (POST /delegate)."""

    ips: tuple[str, ...] = ()
    mac: str = ""
    cni_args: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CniRequest:
    env: Mapping[str, str]
    config: bytes = b""
    interface_attributes: InterfaceAttributes | None = None

    @property
    def command(self) -> str:
        return self.env.get("CNI_COMMAND", "")


@dataclass(frozen=True)
class PodRef:
    """The pod a request is for, from CNI_ARGS (K8S_POD_*)."""

    namespace: str
    name: str
    uid: str = ""
    sandbox_id: str = ""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class CniCall:
    """A validated request: the verb, the CNI runtime arguments and the pod."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = "eth0"
    args: str = ""
    cni_path: str = ""
    config: bytes = b""
    pod: PodRef | None = None
    extra_args: tuple[tuple[str, str], ...] = field(default=())


class _JsonObject(dict[str, Any]):
    """A decoded JSON object that also keeps every key/value pair in document order, duplicates included."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _go_values(obj: Mapping[str, Any], name: str) -> list[Any]:
    """Every value Go would decode into the field `name`, in document order.

    Go matches each key of the object to a field (exact name, else
    case-insensitively) and decodes them one after the other into it: the last
    one wins for strings and slices, and objects merge into a map or struct
    that an earlier key already filled."""
    lowered = name.lower()
    return [value for key, value in _go_values_pairs(obj) if key.lower() == lowered]


# Lone UTF-16 surrogates (`"\\ud800"` in the JSON text): Go's decoder turns
# each into U+FFFD; Python keeps them, and they then fail every UTF-8 encode
# (gRPC, protobuf, plugin env) far from here.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _go_string(text: str) -> str:
    return _LONE_SURROGATE.sub("\ufffd", text)


def _decode_bytes(value: Any, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise cni.CniError(cni.DECODE_FAILURE, f"cannot decode request: {what} must be a base64 string")
    try:
        # Go's StdEncoding ignores CR/LF and requires padding.
        return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise cni.CniError(cni.DECODE_FAILURE, f"cannot decode request: {what} is not base64", str(exc)) from exc


def _decode_env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise cni.CniError(cni.DECODE_FAILURE, "cannot decode request: env must be an object of strings")
    env: dict[str, str] = {}
    for key, val in value.items():
        if val is None:
            env[_go_string(key)] = ""
        elif isinstance(val, str):
            env[_go_string(key)] = _go_string(val)
        else:
            raise cni.CniError(cni.DECODE_FAILURE, f"cannot decode request: env[{key!r}] must be a string")
    return env


def _decode_attributes(value: Any) -> InterfaceAttributes | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise cni.CniError(cni.DECODE_FAILURE, "cannot decode request: interfaceAttributes must be an object")
    ips: list[str] | None = None
    for item in _go_values(value, "ips"):
        if item is not None and (not isinstance(item, list) or not all(isinstance(i, str) for i in item)):
            raise cni.CniError(cni.DECODE_FAILURE, "cannot decode request: interfaceAttributes.ips must be strings")
        ips = item
    mac = ""
    for item in _go_values(value, "mac"):
        if item is not None and not isinstance(item, str):
            raise cni.CniError(cni.DECODE_FAILURE, "cannot decode request: interfaceAttributes.mac must be a string")
        mac = mac if item is None else item  # null leaves a Go string as it was
    cni_args: dict[str, Any] | None = None
    for item in _go_values(value, "cni-args"):
        if item is not None and not isinstance(item, dict):
            raise cni.CniError(
                cni.DECODE_FAILURE, "cannot decode request: interfaceAttributes.cni-args must be an object"
            )
        cni_args = None if item is None else {**(cni_args or {}), **item}
    return InterfaceAttributes(tuple(_go_string(ip) for ip in ips or ()), _go_string(mac), cni_args)


def decode_request_body(body: bytes) -> CniRequest:
    """Decode an HTTP body as upstream's daemon does (`json.Unmarshal` into api.Request)."""
    try:
        obj = json.loads(body, object_pairs_hook=_JsonObject)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        raise cni.CniError(cni.DECODE_FAILURE, "cannot decode request: invalid JSON", str(exc)) from exc
    if obj is None:
        return CniRequest(env={})
    if not isinstance(obj, dict):
        raise cni.CniError(cni.DECODE_FAILURE, "cannot decode request: expected a JSON object")
    env: dict[str, str] | None = None
    for value in _go_values(obj, "env"):
        env = None if value is None else {**(env or {}), **_decode_env(value)}
    config = b""
    for value in _go_values(obj, "config"):
        config = _decode_bytes(value, "config")
    # Every object after the last null decodes into the same struct, key after key.
    attr_objects: list[Any] = []
    for value in _go_values(obj, "interfaceAttributes"):
        attr_objects = [] if value is None else [*attr_objects, value]
    if any(not isinstance(value, dict) for value in attr_objects):
        raise cni.CniError(cni.DECODE_FAILURE, "cannot decode request: interfaceAttributes must be an object")
    attrs = None
    if attr_objects:
        pairs = [pair for value in attr_objects for pair in _go_values_pairs(value)]
        attrs = _decode_attributes(_JsonObject(pairs))
    return CniRequest(env or {}, config, attrs)


def _go_values_pairs(obj: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return obj.pairs if isinstance(obj, _JsonObject) else list(obj.items())


def encode_request_body(request: CniRequest) -> bytes:
    """The body upstream's shim would send for `request` (used by fixtures and the spool)."""
    obj: dict[str, Any] = {"env": dict(request.env)}
    if request.config:
        obj["config"] = base64.b64encode(request.config).decode()
    if request.interface_attributes is not None:
        attrs = request.interface_attributes
        attr_obj: dict[str, Any] = {"cni-args": dict(attrs.cni_args) if attrs.cni_args is not None else None}
        if attrs.ips:
            attr_obj["ips"] = list(attrs.ips)
        if attrs.mac:
            attr_obj["mac"] = attrs.mac
        obj["interfaceAttributes"] = attr_obj
    return json.dumps(obj).encode()


def parse_cni_args(args: str) -> list[tuple[str, str]]:
    """CNI_ARGS `K=V;K=V` in order. Tolerant: an item without '=' is skipped, values may hold '='."""
    pairs: list[tuple[str, str]] = []
    for item in args.split(";"):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs.append((key.strip(), value.strip()))
    return pairs


_K8S_KEYS = {"IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"}


def split_cni_args(args: str) -> tuple[PodRef | None, tuple[tuple[str, str], ...]]:
    """CNI_ARGS as the pod they name and the runtime's other arguments (as validate_call splits them)."""
    pairs = parse_cni_args(args)
    return pod_ref_from_args(pairs), tuple((k, v) for k, v in pairs if k not in _K8S_KEYS)


def pod_ref_from_args(pairs: list[tuple[str, str]]) -> PodRef | None:
    found = dict(pairs)
    namespace, name = found.get("K8S_POD_NAMESPACE", ""), found.get("K8S_POD_NAME", "")
    if not namespace and not name:
        return None
    return PodRef(namespace, name, found.get("K8S_POD_UID", ""), found.get("K8S_POD_INFRA_CONTAINER_ID", ""))


def validate_call(request: CniRequest, *, require_pod: bool = True) -> CniCall:
    """Check the CNI environment for the verb and extract the pod identity.

    ADD/DEL/CHECK need CNI_CONTAINERID, CNI_NETNS (DEL may have an empty one)
    and a pod namespace + name in CNI_ARGS; STATUS and GC are plugin-level."""
    env = request.env
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise cni.CniError(cni.INVALID_ENV, "missing CNI_COMMAND")
    # Exactly the spec's spelling, as libcni and the shim require: `add` is not ADD.
    if command not in POD_VERBS + PLUGIN_VERBS:
        raise cni.CniError(
            cni.INVALID_ENV,
            f"unknown CNI_COMMAND {command[:32]!r}",
            "expected one of " + ", ".join(POD_VERBS + PLUGIN_VERBS),
        )
    pod, extra = split_cni_args(env.get("CNI_ARGS", ""))
    call = CniCall(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME") or "eth0",
        args=env.get("CNI_ARGS", ""),
        cni_path=env.get("CNI_PATH", ""),
        config=request.config,
        pod=pod,
        extra_args=extra,
    )
    if command in PLUGIN_VERBS:
        return call
    if not call.container_id:
        raise cni.CniError(cni.INVALID_ENV, "missing CNI_CONTAINERID")
    # libcni's rules for the runtime's arguments. The gateway checks them itself:
    # upstream's shim and the gRPC API do not, and both values become paths
    # (`<recordsDir>/<containerID>/<ifname>.json`) and gRPC metadata.
    for what, problem, value in (
        ("CNI_CONTAINERID", container_id_problem(call.container_id), call.container_id),
        ("CNI_IFNAME", ifname_problem(call.ifname), call.ifname),
    ):
        if problem:
            raise cni.CniError(cni.INVALID_ENV, f"{what}: {problem}", repr(value[:64]))
    if command != "DEL" and not call.netns:
        raise cni.CniError(cni.INVALID_ENV, "missing CNI_NETNS")
    if require_pod and (call.pod is None or not call.pod.namespace or not call.pod.name):
        raise cni.CniError(
            cni.INVALID_ENV,
            "required CNI variable missing",
            "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME",
        )
    # Both become API paths in the cache (a '/' would address another resource).
    # DEL is let through: it works from the records and must clean up whatever exists.
    if command != "DEL" and call.pod is not None and (problem := pod_name_problem(call.pod.namespace, call.pod.name)):
        raise cni.CniError(cni.INVALID_ENV, "invalid pod in CNI_ARGS", problem)
    return call
