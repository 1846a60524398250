"""What running one delegate means, as pure values: the argv (optionally through
`chroot`), the CNI environment, and how the plugin's exit status and output
turn into a result or a CNI error object."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.common import cni
from services.common.logs import redact

# The only PATH a delegate sees: plugins exec helpers (iptables, ip) by name.
MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How much of a failing plugin's stderr goes into the error's details.
STDERR_DETAILS_LIMIT = 4096


@dataclass(frozen=True)
class Invocation:
    """One delegate call, validated."""

    plugin: str  # the type name ("bridge")
    plugin_path: str  # where it was found in the bin dirs (executor's filesystem)
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    config: bytes = b""
    extra_env: Mapping[str, str] = field(default_factory=dict)


def cni_environment(inv: Invocation, bin_dirs: Sequence[str], delegate_kubeconfig: str | None) -> dict[str, str]:
    """The delegate's whole environment: the CNI variables from the request, a
    minimal PATH, KUBECONFIG for delegates that call the API; nothing inherited."""
    env = {
        "CNI_COMMAND": inv.command,
        "CNI_CONTAINERID": inv.container_id,
        "CNI_NETNS": inv.netns,
        "CNI_IFNAME": inv.ifname,
        "CNI_ARGS": inv.args,
        "CNI_PATH": ":".join(bin_dirs),
        "PATH": MINIMAL_PATH,
    }
    if delegate_kubeconfig:
        env["KUBECONFIG"] = delegate_kubeconfig
    env.update(inv.extra_env)
    return env


def plugin_argv(
    plugin_path: str, chroot_dir: str = "", chroot_program: str = "", setpriv_program: str = ""
) -> list[str]:
    """As upstream's ChrootExec, the path found on our filesystem is executed
    unchanged inside `chroot_dir` (the host root mounted into the pod).

    With `setpriv` (util-linux) the plugin gets a parent-death signal: if the
    executor dies mid-call, the plugin is killed instead of finishing an ADD
    that the gateway has already rolled back (preexec_fn could do this
    in-process, but is unsafe with gRPC's threads)."""
    argv = [chroot_program, chroot_dir, plugin_path] if chroot_dir else [plugin_path]
    if setpriv_program:
        argv = [setpriv_program, "--pdeathsig", "KILL", "--", *argv]
    return argv


def plugin_error(exit_code: int, stdout: bytes, stderr: bytes) -> cni.CniError | None:
    """None on success; else the plugin's CNI error object, or one made from
    its exit status and (redacted) stderr when it printed none, as libcni does."""
    if exit_code == 0:
        return None
    try:
        obj = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        obj = None
    if isinstance(obj, dict) and ("code" in obj or "msg" in obj):
        err = cni.CniError.from_obj(obj)
        return cni.CniError(err.code, redact(err.msg), redact(err.details))
    tail = redact(stderr.decode(errors="replace").strip())[-STDERR_DETAILS_LIMIT:]
    if tail:
        return cni.CniError(cni.IO_FAILURE, f"netplugin failed: {tail}", f"exit status {exit_code}")
    return cni.CniError(cni.IO_FAILURE, "netplugin failed with no error message", f"exit status {exit_code}")
