"""The one API transport (services.common.kube_api) against the real
kube-apiserver, with every kind of credential a kubeconfig or a pod gives:
client certificates by data, a rotating token file, an exec plugin (through
the official client's loader, imported only then), TLS server names and
insecure-skip-tls-verify."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from services.certs.kube import KubeError, access_allowed
from services.certs.rbac import Permission
from services.common import kube_api as transport
from services.common.kube_api import ApiError, build_api_client
from tests.cache.kube_support import Cluster, write_kubeconfig

pytestmark = pytest.mark.kube

LIST_SECRETS = Permission("list", "", "secrets")


def edited(path: Path, source: Path, cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None) -> Path:
    """A copy of the admin kubeconfig with keys of its cluster/user replaced (None values dropped)."""
    doc = yaml.safe_load(source.read_text())
    for section, changes in (("clusters", cluster), ("users", user)):
        key = section[:-1]
        for item in doc[section]:
            item[key].update(changes or {})
            item[key] = {k: v for k, v in item[key].items() if v is not None}
    path.write_text(yaml.safe_dump(doc))
    return path


def allowed(kubeconfig: Path) -> bool:
    """A SelfSubjectAccessReview (any authenticated user may ask) for `list secrets`."""
    api = build_api_client(str(kubeconfig))
    try:
        return access_allowed(api, LIST_SECRETS)
    finally:
        api.close()


def service_account_token(cluster: Cluster) -> str:
    cluster.core.create_namespaced_service_account(cluster.namespace, {"metadata": {"name": "reader"}})
    answer = cluster.core.create_namespaced_service_account_token(
        "reader", cluster.namespace, {"spec": {"expirationSeconds": 3600}}, _preload_content=False
    )
    return str(json.loads(answer.data)["status"]["token"])


def test_client_certificate_data_and_tls_server_name(kube_api: Path, tmp_path: Path) -> None:
    assert allowed(kube_api)  # the admin's certificate and key by data (memory files)
    assert allowed(edited(tmp_path / "sni.kubeconfig", kube_api, {"tls-server-name": "kubernetes"}))
    wrong = edited(tmp_path / "wrong.kubeconfig", kube_api, {"tls-server-name": "not-the-api.example"})
    with pytest.raises(KubeError, match="unreachable: SSLError") as err:
        allowed(wrong)
    assert isinstance(err.value.__cause__, urllib3.exceptions.SSLError)


def test_insecure_skip_tls_verify_without_a_ca(kube_api: Path, tmp_path: Path) -> None:
    insecure = {"certificate-authority-data": None, "insecure-skip-tls-verify": True}
    assert allowed(edited(tmp_path / "insecure.kubeconfig", kube_api, insecure))


def test_token_file_is_reread_as_it_rotates(
    kube_api: Path, cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not-a-valid-token")
    kubeconfig = write_kubeconfig(tmp_path / "token.kubeconfig", kube_api, token="placeholder")
    edited(kubeconfig, kubeconfig, user={"token": None, "tokenFile": str(token_file)})
    monkeypatch.setattr(transport, "TOKEN_FILE_REREAD_SECONDS", 3600.0)
    api = build_api_client(str(kubeconfig))
    try:
        for _ in range(2):  # the second time from the token read the first time
            with pytest.raises(ApiError) as err:
                review_status(api)
            assert err.value.status == 401
            token_file.write_text(service_account_token(cluster) if _ == 0 else token_file.read_text())
        monkeypatch.setattr(transport, "TOKEN_FILE_REREAD_SECONDS", 0.0)  # the interval has passed
        assert review_status(api) == 201
    finally:
        api.close()


def review_status(api: transport.KubeClient) -> int:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "list", "resource": "secrets"}},
    }
    response = api.request(
        "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review, timeout=(5.0, 10.0)
    )
    response.drain_conn()
    response.release_conn()
    return int(response.status)


def test_exec_plugin_goes_through_the_official_loader(kube_api: Path, tmp_path: Path) -> None:
    admin = yaml.safe_load(kube_api.read_text())["users"][0]["user"]
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {
            "clientCertificateData": base64.b64decode(admin["client-certificate-data"]).decode(),
            "clientKeyData": base64.b64decode(admin["client-key-data"]).decode(),
        },
    }
    (tmp_path / "credential.json").write_text(json.dumps(credential))
    exec_user = {
        "client-certificate-data": None,
        "client-key-data": None,
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "/bin/cat",
            "args": [str(tmp_path / "credential.json")],
        },
    }
    kubeconfig = edited(tmp_path / "exec.kubeconfig", kube_api, user=exec_user)
    assert allowed(kubeconfig)
    # Only such a kubeconfig costs a process the official client's import.
    probe = (
        "import sys; from services.common.kube_api import build_api_client; "
        "build_api_client(sys.argv[1]).close(); print('kubernetes' in sys.modules)"
    )
    for path, imports in ((kube_api, "False"), (kubeconfig, "True")):
        out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == imports, path
