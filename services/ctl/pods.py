"""Pod references on the command line (`namespace/name`) and the CNI_ARGS
multusctl sends on a pod's behalf. Pure."""

from __future__ import annotations

from services.ctl.errors import USAGE, CtlError


def parse_pod(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise CtlError(USAGE, f"expected a pod as namespace/name, got {text!r}")
    return namespace, name


def pod_cni_args(namespace: str, name: str, container_id: str, uid: str = "") -> str:
    """CNI_ARGS as the runtime passes them for a pod."""
    return (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};"
        f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
    )
