#!/usr/bin/python3 -IS
"""multus-shim: the CNI binary kubelet/containerd executes for every pod network call.

It forwards the call to the gateway (or to upstream's multus-daemon: the same
protocol) over `<daemonSocketDir>/multus.sock` as upstream's shim does:
`POST /cni` with `{"env": {CNI_* variables}, "config": <stdin, base64>}`; it
prints the result converted to the stdin config's cniVersion, or a CNI error
object with a real code, and exits like a CNI plugin.

This file is installed on the host as one self-contained executable and runs
once per CNI call under `python3 -I -S`, so every import is paid on every pod
start: standard library only, and only modules that are builtin or C
accelerators (`_json`, `_socket`, `binascii`, `posix`). `json`, `socket`,
`os`, `http.client` and `dataclasses` each pull in `re`/`enum`/`selectors` and
cost several milliseconds (docs/shim.md has the measurements). For the same
reason the few CNI error codes are spelled out here rather than imported from
services.common: the host has none of the project's packages. There is no
`from __future__ import annotations` either (another import): the installer
compiles this file with that flag instead, so annotations are never evaluated
and the installed shim runs on the host's python3 from 3.8 on.

It is also imported by the tests (`from shim import multus_shim`); everything
above `main()` that does no I/O is a pure function with table tests.
"""

import _json
import _socket
import binascii
import posix
import sys
import time

SHIM_VERSION = "0.1.0"

# CNI spec error codes (SPEC.md "Error"); 999 is libcni's ErrInternal, used
# only when the far side gives us nothing better to go on.
INCOMPATIBLE_VERSION = 1
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
INTERNAL = 999

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = "1.1.0"
# libcni treats a config without cniVersion as 0.1.0; so does upstream's shim.
IMPLICIT_VERSION = "0.1.0"

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
# Which CNI_* variables each verb requires (as libcni's skel).
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
}

DEFAULT_SOCKET_DIR = "/run/multus/"
SOCKET_NAME = "multus.sock"
SPOOL_DIR_NAME = "del-spool"

# Deadlines (seconds), overridable through the runtime's environment.
READY_TIMEOUT_ENV = "MULTUS_SHIM_READY_TIMEOUT"
DEL_TIMEOUT_ENV = "MULTUS_SHIM_DEL_TIMEOUT"
RESPONSE_TIMEOUT_ENV = "MULTUS_SHIM_RESPONSE_TIMEOUT"
# Upstream's shim polls /readyz for 60 s; kubelet gives the whole sandbox
# creation 2 min (--runtime-request-timeout), so 60 s of waiting still leaves
# room for the ADD itself.
DEFAULT_READY_TIMEOUT = 60.0
# DEL that cannot reach the gateway is spooled and replayed by the gateway
# as soon as it is back, so waiting longer only delays pod termination;
# 15 s rides out a plain container restart of the gateway.
DEFAULT_DEL_TIMEOUT = 15.0
# Bound on one answered request (the gateway bounds its delegates itself);
# below kubelet's 2 min so the runtime sees our error rather than its own.
DEFAULT_RESPONSE_TIMEOUT = 110.0
# A readiness probe is one tiny request; a probe slower than this counts as
# "not ready yet" rather than eating the whole wait.
PROBE_TIMEOUT = 2.0
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 0.5

WHITESPACE = " \t\n\r"


class ShimError(Exception):
    """A failure that reaches the runtime as a CNI error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


class GatewayUnreachable(Exception):
    """No usable answer from the socket. `sent` says whether the request may have been received."""

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


# --- JSON through the C accelerator (no `json`/`re`/`enum` imports) ---------


class _DecoderContext:
    """The attributes _json.make_scanner reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))


def _unencodable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# The scanner only reads the attributes above; typeshed wants a JSONDecoder.
_scan = _json.make_scanner(_DecoderContext())  # type: ignore[arg-type]
_encode = _json.make_encoder(None, _unencodable, _json.encode_basestring_ascii, None, ":", ",", False, False, True)


def decode_json(data: bytes | str) -> object:
    """Parse one JSON document; ValueError when it is not valid JSON."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from None
    start = len(text) - len(text.lstrip(WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        raise ValueError(f"no JSON value at offset {start}") from None
    except Exception:
        # The accelerator reports syntax errors through json.decoder, which
        # we never import; any failure here means invalid JSON.
        raise ValueError("invalid JSON") from None
    if text[end:].strip(WHITESPACE):
        raise ValueError(f"extra data after the JSON value at offset {end}")
    return value


def encode_json(value: object) -> bytes:
    return "".join(_encode(value, 0)).encode("ascii")


# --- The invocation: CNI env + stdin config (pure) ---------------------------


class Invocation:
    """One validated CNI call."""

    __slots__ = ("cni_env", "cni_version", "command", "config_bytes", "container_id", "socket_dir")

    def __init__(
        self,
        command: str,
        cni_env: dict[str, str],
        config_bytes: bytes,
        cni_version: str,
        socket_dir: str,
    ) -> None:
        self.command = command
        self.cni_env = cni_env
        self.config_bytes = config_bytes
        self.cni_version = cni_version
        self.socket_dir = socket_dir
        self.container_id = cni_env.get("CNI_CONTAINERID", "")

    @property
    def socket_path(self) -> str:
        return join_path(self.socket_dir, SOCKET_NAME)


def join_path(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name if directory.rstrip("/") else "/" + name


def cni_command(environ: dict[str, str]) -> str:
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise ShimError(INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise ShimError(INVALID_ENV, f"unknown CNI_COMMAND: {command}")
    return command


def is_valid_container_id(container_id: str) -> bool:
    """libcni's rule: [a-zA-Z0-9][a-zA-Z0-9_.-]* (services.common.validation.container_id_problem)."""
    if not container_id or not container_id[0].isascii() or not container_id[0].isalnum():
        return False
    return all(ch.isascii() and (ch.isalnum() or ch in "_.-") for ch in container_id)


def interface_name_problem(ifname: str) -> str:
    """Why the kernel would refuse `ifname` (libcni's ValidateInterfaceName), or ''.
    The kernel counts bytes (IFNAMSIZ less the NUL), not characters. The
    services' copy of this rule is services.common.validation.ifname_problem."""
    if not ifname:
        return "interface name is empty"
    if len(ifname.encode("utf-8", "surrogateescape")) > 15:
        return "interface name is too long"
    if ifname in (".", ".."):
        return "interface name is . or .."
    for ch in ifname:
        if ch in "/:\x00" or ch.isspace():
            return "interface name contains / or : or whitespace characters"
    return ""


def validate_env(command: str, environ: dict[str, str]) -> dict[str, str]:
    """The CNI_* variables to forward, after libcni's checks for `command`."""
    missing = [name for name in REQUIRED_ENV[command] if not environ.get(name)]
    if missing:
        raise ShimError(INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    container_id = environ.get("CNI_CONTAINERID", "")
    if container_id and not is_valid_container_id(container_id):
        raise ShimError(INVALID_ENV, "invalid characters in containerID", container_id)
    ifname = environ.get("CNI_IFNAME", "")
    problem = interface_name_problem(ifname) if ifname else ""
    if problem:
        raise ShimError(INVALID_ENV, problem, ifname)
    # Only CNI_* travels: the daemon reads nothing else, and the runtime's own
    # environment (proxies, credentials) has no business in the spool files.
    return {key: value for key, value in environ.items() if key.startswith("CNI_")}


def parse_config(stdin: bytes) -> tuple[str, str]:
    """The stdin network config's cniVersion and daemon socket dir (the rest is the daemon's business)."""
    try:
        config = decode_json(stdin)
    except ValueError as exc:
        raise ShimError(DECODE_FAILURE, "invalid JSON in the network configuration on stdin", str(exc)) from None
    if not isinstance(config, dict):
        raise ShimError(INVALID_CONFIG, "network configuration on stdin must be a JSON object")
    version = config.get("cniVersion", "")
    if not isinstance(version, str):
        raise ShimError(INVALID_CONFIG, "cniVersion must be a string")
    socket_dir = config.get("daemonSocketDir", "")
    if not isinstance(socket_dir, str):
        raise ShimError(INVALID_CONFIG, "daemonSocketDir must be a string")
    return version or IMPLICIT_VERSION, socket_dir or DEFAULT_SOCKET_DIR


def check_version(version: str) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise ShimError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f'config is "{version}", plugin supports {list(SUPPORTED_VERSIONS)}',
        )


def parse_invocation(command: str, environ: dict[str, str], stdin: bytes) -> Invocation:
    cni_env = validate_env(command, environ)
    version, socket_dir = parse_config(stdin)
    check_version(version)
    socket_path = join_path(socket_dir, SOCKET_NAME)
    if len(socket_path.encode("utf-8", "surrogateescape")) > 107:
        raise ShimError(INVALID_CONFIG, "daemonSocketDir is too long for a unix socket path", socket_path)
    return Invocation(command, cni_env, stdin, version, socket_dir)


def config_version(stdin: bytes) -> str:
    """The cniVersion for error objects, even when the config is unusable for anything else."""
    try:
        return parse_config(stdin)[0]
    except ShimError:
        return LATEST_VERSION


def version_info(stdin: bytes) -> dict[str, object]:
    """The VERSION answer: the asked-for version when we speak it, else our latest."""
    asked: object = None
    try:
        config = decode_json(stdin)
        if isinstance(config, dict):
            asked = config.get("cniVersion")
    except ValueError:
        pass
    version = asked if isinstance(asked, str) and asked in SUPPORTED_VERSIONS else LATEST_VERSION
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def read_timeouts(environ: dict[str, str]) -> tuple[float, float, float]:
    """(ready wait, DEL wait, response timeout) in seconds from the environment."""
    values = []
    for name, default in (
        (READY_TIMEOUT_ENV, DEFAULT_READY_TIMEOUT),
        (DEL_TIMEOUT_ENV, DEFAULT_DEL_TIMEOUT),
        (RESPONSE_TIMEOUT_ENV, DEFAULT_RESPONSE_TIMEOUT),
    ):
        raw = environ.get(name, "").strip()
        if not raw:
            values.append(default)
            continue
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise ShimError(INVALID_ENV, f"{name} must be a number of seconds >= 0", raw)
        values.append(value)
    return values[0], values[1], values[2]


def request_body(invocation: Invocation) -> bytes:
    """upstream's api.Request as Go encodes it: []byte as standard base64, empty omitted."""
    request: dict[str, object] = {"env": invocation.cni_env}
    if invocation.config_bytes:
        request["config"] = binascii.b2a_base64(invocation.config_bytes, newline=False).decode("ascii")
    return encode_json(request)


def error_object(error: ShimError, cni_version: str) -> dict[str, object]:
    obj: dict[str, object] = {"cniVersion": cni_version, "code": error.code, "msg": error.msg}
    if error.details:
        obj["details"] = error.details
    return obj


# --- Result conversion: the daemon's 1.0.0 result to the config's version (pure)


def _ip_version(address: object) -> str:
    return "6" if isinstance(address, str) and ":" in address.partition("/")[0] else "4"


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _to_040(result: dict[str, object], version: str) -> dict[str, object]:
    """0.3.0/0.3.1/0.4.0: interfaces without 1.x fields, ips carry "version"."""
    converted: dict[str, object] = {"cniVersion": version}
    interfaces = []
    for interface in _as_list(result.get("interfaces")):
        if isinstance(interface, dict):
            interfaces.append({k: v for k, v in interface.items() if k in ("name", "mac", "sandbox")})
    if interfaces:
        converted["interfaces"] = interfaces
    ips = []
    for ip in _as_list(result.get("ips")):
        if isinstance(ip, dict):
            entry = {k: v for k, v in ip.items() if k in ("interface", "address", "gateway")}
            entry["version"] = _ip_version(ip.get("address"))
            ips.append(entry)
    if ips:
        converted["ips"] = ips
    if _as_list(result.get("routes")):
        converted["routes"] = result["routes"]
    converted["dns"] = result.get("dns") if isinstance(result.get("dns"), dict) else {}
    return converted


def _to_020(result: dict[str, object], version: str) -> dict[str, object]:
    """0.1.0/0.2.0: the first address of each family, routes split by family."""
    families: dict[str, dict[str, object]] = {}
    for ip in _as_list(result.get("ips")):
        if not isinstance(ip, dict):
            continue
        family = _ip_version(ip.get("address"))
        if family not in families:
            config: dict[str, object] = {"ip": ip.get("address")}
            if ip.get("gateway"):
                config["gateway"] = ip["gateway"]
            families[family] = config
    if not families:
        raise ShimError(INCOMPATIBLE_VERSION, f"cannot convert the result to CNI {version}: no IP addresses")
    for route in _as_list(result.get("routes")):
        if isinstance(route, dict):
            family = _ip_version(route.get("dst"))
            if family in families:
                routes = families[family].setdefault("routes", [])
                if isinstance(routes, list):
                    routes.append({k: v for k, v in route.items() if k in ("dst", "gw")})
    converted: dict[str, object] = {"cniVersion": version}
    if "4" in families:
        converted["ip4"] = families["4"]
    if "6" in families:
        converted["ip6"] = families["6"]
    converted["dns"] = result.get("dns") if isinstance(result.get("dns"), dict) else {}
    return converted


def convert_result(result: object, version: str) -> dict[str, object]:
    """Convert the daemon's CNI 1.0.0-shaped result to `version` (libcni's rules)."""
    if not isinstance(result, dict):
        raise ShimError(INTERNAL, "the multus daemon answered ADD without a result object")
    if version in ("1.0.0", "1.1.0"):
        converted = dict(result)
        converted["cniVersion"] = version
        return converted
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        return _to_040(result, version)
    if version in ("0.1.0", "0.2.0"):
        return _to_020(result, version)
    check_version(version)
    raise AssertionError(version)  # pragma: no cover - check_version raised


# --- What the daemon's answer means (pure) ----------------------------------

# Substrings of upstream's plain-text failures that say which code fits; the
# rest keep libcni's 999, which is what upstream's own shim reports for them.
PLAIN_TEXT_CODES = (
    ("readinessindicatorfile", TRY_AGAIN_LATER),
    ("context deadline exceeded", TRY_AGAIN_LATER),
    ("timed out", TRY_AGAIN_LATER),
    ("connection refused", TRY_AGAIN_LATER),
    ("could not extract the cni command args", INVALID_ENV),
    ("could not extract the kubernetes runtime args", INVALID_ENV),
    ("required cni variable missing", INVALID_ENV),
    ("incompatible cni versions", INCOMPATIBLE_VERSION),
    ("unexpected end of json input", DECODE_FAILURE),
    ("invalid character", DECODE_FAILURE),
)


def classify_plain_error(status: int, text: str) -> int:
    lowered = text.lower()
    for needle, code in PLAIN_TEXT_CODES:
        if needle in lowered:
            return code
    return TRY_AGAIN_LATER if status >= 500 else INTERNAL


def _go_field(obj: dict[str, object], name: str) -> object:
    """Go's encoding/json key matching: exact first, else case-insensitive."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return value
    return None


def error_from_answer(status: int, body: bytes) -> ShimError:
    """A non-200 answer: our gateway's CNI error object, or upstream's plain text."""
    try:
        obj = decode_json(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        code, msg = _go_field(obj, "code"), _go_field(obj, "msg")
        if isinstance(code, int) and not isinstance(code, bool) and code > 0 and isinstance(msg, str) and msg:
            details = _go_field(obj, "details")
            return ShimError(code, msg, details if isinstance(details, str) else "")
    text = body.decode("utf-8", "replace").strip()[:4096] or f"HTTP {status} with an empty body"
    return ShimError(classify_plain_error(status, text), text, f"multus daemon answered HTTP {status} on /cni")


def result_from_answer(command: str, status: int, body: bytes, version: str) -> dict[str, object] | None:
    """The converted ADD result (None for the other verbs), or ShimError."""
    if status != 200:
        raise error_from_answer(status, body)
    if command != "ADD":
        return None
    try:
        response = decode_json(body)
    except ValueError as exc:
        raise ShimError(INTERNAL, "the multus daemon answered ADD with invalid JSON", str(exc)) from None
    result = _go_field(response, "Result") if isinstance(response, dict) else None
    return convert_result(result, version)


# --- HTTP/1.1 over the unix socket ------------------------------------------


def parse_http_response(raw: bytes) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.x response read to EOF; ValueError if malformed."""
    while True:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("incomplete HTTP response header")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"bad HTTP status line {lines[0][:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200:  # interim answer; the real one follows
            raw = rest
            continue
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, _dechunk(rest)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or len(rest) < int(length):
                raise ValueError("HTTP body shorter than its Content-Length")
            return status, rest[: int(length)]
        return status, rest


def _dechunk(data: bytes) -> bytes:
    body: list[bytes] = []
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            raise ValueError("truncated chunked body")
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            return b"".join(body)
        if len(data) < size + 2:
            raise ValueError("truncated chunk")
        body.append(data[:size])
        data = data[size + 2 :]


def _content_length_reached(buffer: bytes) -> bool:
    """True when a complete non-interim response with a Content-Length is in `buffer`."""
    head, sep, rest = buffer.partition(b"\r\n\r\n")
    if not sep or head[9:10] == b"1":
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(rest) >= int(value.strip())
    return False


def http_exchange(socket_path: str, method: str, target: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    """One request on a fresh connection (Connection: close), bounded by `timeout` in all."""
    deadline = time.monotonic() + timeout
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(max(timeout, 0.001))
        try:
            sock.connect(socket_path)
        except OSError as exc:
            raise GatewayUnreachable(f"cannot connect to {socket_path}: {exc}", sent=False) from None
        head = f"{method} {target} HTTP/1.1\r\nHost: multus\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        received = b""
        try:
            sock.sendall(head.encode("ascii") + b"\r\n" + (body or b""))
            while not _content_length_reached(received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("timed out")
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except OSError as exc:
            raise GatewayUnreachable(f"{method} {target} on {socket_path}: {exc or 'timed out'}", sent=True) from None
    finally:
        sock.close()
    try:
        return parse_http_response(received)
    except ValueError as exc:
        raise GatewayUnreachable(f"{method} {target} on {socket_path}: {exc}", sent=True) from None


# --- Readiness, retries and the DEL spool -----------------------------------


def probe_ready(socket_path: str, endpoint: str, timeout: float) -> tuple[bool, str]:
    """Ask the daemon whether it takes requests. Returns (ready, endpoint for the next probe).

    Released upstream daemons (up to v4.3.0) have no /readyz: their 404 switches us to /healthz."""
    try:
        status, _ = http_exchange(socket_path, "GET", endpoint, None, timeout)
        if status == 405:  # a server that only takes upstream's POST-with-null probe
            status, _ = http_exchange(socket_path, "POST", endpoint, b"null", timeout)
        if status == 404 and endpoint == "/readyz":
            return probe_ready(socket_path, "/healthz", timeout)
    except GatewayUnreachable:
        return False, endpoint
    return 200 <= status < 300, endpoint


def sanitize_container_id(container_id: str) -> str:
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_.-") else "_" for ch in container_id)
    return cleaned[:200]


def spool_file_name(time_ns: int, container_id: str) -> str:
    return f"{time_ns}-{sanitize_container_id(container_id)}.json"


def _mkdir_exist_ok(path: str) -> None:
    try:
        posix.mkdir(path, 0o700)
    except FileExistsError:
        return


def spool_del(socket_dir: str, container_id: str, body: bytes) -> str:
    """Write the DEL request body atomically into <socketDir>/del-spool/ for replay."""
    spool_dir = join_path(socket_dir, SPOOL_DIR_NAME)
    for directory in (socket_dir.rstrip("/") or "/", spool_dir):
        _mkdir_exist_ok(directory)
    posix.chmod(spool_dir, 0o700)
    name = spool_file_name(time.time_ns(), container_id)
    temp = join_path(spool_dir, f".{name}.tmp")
    final = join_path(spool_dir, name)
    fd = posix.open(temp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC, 0o600)
    try:
        try:
            posix.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(body)
            while view:
                view = view[posix.write(fd, view) :]
            posix.fsync(fd)
        finally:
            posix.close(fd)
        posix.rename(temp, final)
    except BaseException:
        try:  # noqa: SIM105 - contextlib would be one more import on every call
            posix.unlink(temp)
        except OSError:
            pass
        raise
    dir_fd = posix.open(spool_dir, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        posix.fsync(dir_fd)  # the rename survives a node crash
    finally:
        posix.close(dir_fd)
    return final


def call_gateway(invocation: Invocation, timeouts: tuple[float, float, float]) -> dict[str, object] | None:
    """Wait for the daemon, send the call, interpret the answer; spool an undeliverable DEL."""
    ready_timeout, del_timeout, response_timeout = timeouts
    command = invocation.command
    is_del = command == "DEL"
    body = request_body(invocation)
    socket_path = invocation.socket_path
    deadline = time.monotonic() + (del_timeout if is_del else ready_timeout)
    # DEL only needs the server to answer (upstream uses /healthz for it too):
    # a gateway that is draining or not yet ready still tears attachments down.
    endpoint = "/healthz" if is_del else "/readyz"
    backoff = FIRST_BACKOFF
    why = "not tried"
    # The first attempt sends the call without a probe (our gateway answers 503
    # to it while not ready; upstream's daemon listens only once it is): one
    # exchange instead of two on every pod start. Probing starts after a refusal.
    probe = False
    while True:
        if probe:
            ready, endpoint = probe_ready(
                socket_path, endpoint, min(PROBE_TIMEOUT, max(deadline - time.monotonic(), 0.05))
            )
        else:
            ready, probe = True, True
        if not ready:
            why = f"multus daemon at {socket_path} is not ready"
        else:
            try:
                status, answer = http_exchange(socket_path, "POST", "/cni", body, response_timeout)
            except GatewayUnreachable as exc:
                why = exc.reason
                # A request that may have reached the daemon is not re-sent
                # except DEL, which is idempotent; the runtime retries the rest.
                if exc.sent and not is_del:
                    raise ShimError(TRY_AGAIN_LATER, "lost the multus daemon during the request", why) from None
            else:
                if status != 503:
                    return result_from_answer(command, status, answer, invocation.cni_version)
                why = f"multus daemon at {socket_path} answered 503 (unavailable)"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(backoff, remaining))
        backoff = min(backoff * 2, MAX_BACKOFF)
    if not is_del:
        raise ShimError(TRY_AGAIN_LATER, "multus daemon unavailable, try again later", why)
    try:
        path = spool_del(invocation.socket_dir, invocation.container_id, body)
    except OSError as exc:
        # Never report a DEL done that nobody will do: the runtime retries it.
        raise ShimError(IO_FAILURE, "multus daemon unavailable and the DEL could not be spooled", str(exc)) from None
    sys.stderr.write(f"multus-shim: {why}; DEL spooled to {path} for replay\n")
    return None


# --- Entry point --------------------------------------------------------------


def run(environ: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    """One CNI call: (exit status, bytes for stdout). Never raises."""
    version = LATEST_VERSION
    try:
        # Error objects carry the config's cniVersion, even for env problems.
        version = config_version(stdin)
        command = cni_command(environ)
        if command == "VERSION":
            return 0, encode_json(version_info(stdin))
        invocation = parse_invocation(command, environ, stdin)
        version = invocation.cni_version
        result = call_gateway(invocation, read_timeouts(environ))
        return 0, b"" if result is None else encode_json(result)
    except ShimError as error:
        return 1, encode_json(error_object(error, version))
    except BaseException as exc:  # a traceback must never reach the runtime
        internal = ShimError(INTERNAL, "multus-shim internal error", f"{type(exc).__name__}: {exc}")
        return 1, encode_json(error_object(internal, version))


def host_environ() -> dict[str, str]:
    """posix.environ (bytes) decoded as os.environ would, without importing os."""
    return {
        key.decode("utf-8", "surrogateescape"): value.decode("utf-8", "surrogateescape")
        for key, value in posix.environ.items()
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("-v", "-version", "--version"):
        sys.stdout.write(f"multus-shim: {SHIM_VERSION} (python, stdlib only)\n")
        return 0
    try:
        stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
    except OSError:
        stdin = b""
    status, output = run(host_environ(), stdin)
    if output and sys.stdout is not None:  # None when the runtime started us with stdout closed
        sys.stdout.buffer.write(output + b"\n")
        sys.stdout.flush()
    return status


def exit_now(status: int) -> None:
    """Leave without the interpreter's finalization (module teardown, collections):
    about 2 ms of an 11 ms call. Everything written is flushed; nothing else is
    pending (no atexit handlers, no threads, no open files of ours)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    posix._exit(status)


if __name__ == "__main__":
    exit_now(main())
