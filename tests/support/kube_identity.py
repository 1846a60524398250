"""Identities on the real test cluster: client certificates signed by its CA,
kubeconfigs for them, and the RBAC the manifests ship applied as shipped.

Tests run the services under the node identity a real install gives them
(CN `system:multus:<node>`, O `system:multus`, bound by
compose/kubernetes/base/rbac.yaml), never as cluster admin, so a permission
the code needs and the manifests lack fails a test with 403."""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[2]
RBAC_MANIFEST = REPO / "compose" / "kubernetes" / "base" / "rbac.yaml"
KUBE_ROOT = Path(os.environ.get("KUBE_ROOT", Path.home() / ".cache" / "test-kube"))
PKI = KUBE_ROOT / "run" / "pki"
API_SERVER = "https://127.0.0.1:6443"
NODE_GROUP = "system:multus"
# The manifests' namespace: namespaced objects of rbac.yaml are copied into a test's namespace.
MANIFEST_NAMESPACE = "multus-system"

k8s: Any = kubernetes.client


def sign_client_certificate(cn: str, orgs: tuple[str, ...], days: float = 1.0) -> tuple[bytes, bytes]:
    """A client certificate for (cn, orgs) signed by the test cluster's CA: (cert PEM, key PEM)."""
    ca_key = serialization.load_pem_private_key((PKI / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((PKI / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now - datetime.timedelta(minutes=1), now + datetime.timedelta(days=days - 1)))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_client_kubeconfig(path: Path, cn: str, orgs: tuple[str, ...], server: str = API_SERVER) -> Path:
    cert, key = sign_client_certificate(cn, orgs)
    return write_kubeconfig(path, {"client-certificate-data": b64(cert), "client-key-data": b64(key)}, server)


def write_kubeconfig(path: Path, user: dict[str, str], server: str = API_SERVER) -> Path:
    """A kubeconfig (0600) for the test cluster's CA, `server` and `user` credentials."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": server, "certificate-authority-data": b64((PKI / "ca.crt").read_bytes())},
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def node_identity_kubeconfig(path: Path, node: str, server: str = API_SERVER) -> Path:
    """What a node's multus services hold with perNodeCertificate: CN
    system:multus:<node> in group system:multus (the manifests bind the group)."""
    return write_client_kubeconfig(path, f"system:multus:{node}", (NODE_GROUP,), server)


def shipped_rbac_objects() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RBAC_MANIFEST.read_text()) if doc]


def shipped_object(kind: str, name: str) -> dict[str, Any]:
    for doc in shipped_rbac_objects():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise KeyError(f"{kind} {name} is not in {RBAC_MANIFEST}")


def _ignore(status: int, fn: Any) -> None:
    try:
        fn()
    except ApiException as exc:
        if exc.status != status:
            raise


@contextlib.contextmanager
def shipped_cluster_rbac(api: Any) -> Iterator[str]:
    """The manifest's ClusterRoles and ClusterRoleBindings, exactly as shipped but
    under a test prefix (so a real install on the same cluster is not touched),
    created for the duration; yields the prefix."""
    rbac_api = k8s.RbacAuthorizationV1Api(api)
    prefix = f"test-{uuid.uuid4().hex[:6]}-"
    created: list[tuple[str, str]] = []
    try:
        for doc in shipped_rbac_objects():
            if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                continue
            body = copy.deepcopy(doc)
            body["metadata"]["name"] = prefix + doc["metadata"]["name"]
            if doc["kind"] == "ClusterRole":
                rbac_api.create_cluster_role(body)
            else:
                body["roleRef"]["name"] = prefix + doc["roleRef"]["name"]
                rbac_api.create_cluster_role_binding(body)
            created.append((doc["kind"], body["metadata"]["name"]))
        yield prefix
    finally:
        for kind, name in reversed(created):
            if kind == "ClusterRole":
                _ignore(404, lambda n=name: rbac_api.delete_cluster_role(n))
            else:
                _ignore(404, lambda n=name: rbac_api.delete_cluster_role_binding(n))


def shipped_namespaced_rbac(api: Any, namespace: str) -> None:
    """The manifest's Roles and RoleBindings (the delegate-token Role) in `namespace`
    instead of multus-system, subjects that pointed at multus-system moved along;
    deleted with the namespace."""
    rbac_api = k8s.RbacAuthorizationV1Api(api)
    for doc in shipped_rbac_objects():
        if doc["kind"] not in ("Role", "RoleBinding"):
            continue
        body = copy.deepcopy(doc)
        body["metadata"]["namespace"] = namespace
        for subject in body.get("subjects", []):
            if subject.get("namespace") == MANIFEST_NAMESPACE:
                subject["namespace"] = namespace
        if doc["kind"] == "Role":
            rbac_api.create_namespaced_role(namespace, body)
        else:
            rbac_api.create_namespaced_role_binding(namespace, body)


def service_account_token(api: Any, service_account: str, cluster_role: str) -> tuple[str, str]:
    """A namespace of its own holding ServiceAccount `service_account`, bound to
    `cluster_role`; returns (namespace, a one-hour token of it)."""
    core = k8s.CoreV1Api(api)
    namespace = f"sa-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": service_account}})
    k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
        }
    )
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    answer = core.create_namespaced_service_account_token(service_account, namespace, request)
    return namespace, str(answer.status.token)


def delete_service_account_identity(admin_kubeconfig: Path, namespace: str) -> None:
    api = kubernetes.config.new_client_from_config(config_file=str(admin_kubeconfig))  # type: ignore[no-untyped-call]
    try:
        _ignore(404, lambda: k8s.RbacAuthorizationV1Api(api).delete_cluster_role_binding(namespace))
        _ignore(404, lambda: k8s.CoreV1Api(api).delete_namespace(namespace))
    finally:
        api.close()


def write_token_kubeconfig(path: Path, token: str, server: str = API_SERVER) -> Path:
    return write_kubeconfig(path, {"token": token}, server)
