"""Kubeconfig and in-cluster credentials read into a transport's settings
(services.common.kubeconfig): table-tested, with real files."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.kubeconfig import (
    ApiEndpoint,
    ClientSettings,
    KubeconfigError,
    client_settings,
    in_cluster_settings,
)

CA, CERT, KEY = b"-----CA-----\n", b"-----CERT-----\n", b"-----KEY-----\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any] | None) -> str:
    for name, data in (("ca.pem", CA), ("cert.pem", CERT), ("key.pem", KEY), ("token", b"file-token\n")):
        (tmp_path / name).write_bytes(data)
    context: dict[str, Any] = {"cluster": "c"}
    users = []
    if user is not None:
        context["user"] = "u"
        users = [{"name": "u", "user": user}]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://api.example:6443", **cluster}}],
        "users": users,
        "contexts": [{"name": "ctx", "context": context}],
        "current-context": "ctx",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


SERVER = "https://api.example:6443"


@pytest.mark.parametrize(
    ("case", "cluster", "user", "expected"),
    [
        (
            "client certificate by relative file",
            {"certificate-authority": "ca.pem"},
            {"client-certificate": "cert.pem", "client-key": "key.pem"},
            ClientSettings(ApiEndpoint(SERVER, CA), client_cert_pem=CERT, client_key_pem=KEY),
        ),
        (
            "client certificate by data",
            {"certificate-authority-data": b64(CA)},
            {"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)},
            ClientSettings(ApiEndpoint(SERVER, CA), client_cert_pem=CERT, client_key_pem=KEY),
        ),
        (
            "bearer token, insecure, SNI name",
            {"insecure-skip-tls-verify": True, "tls-server-name": "kubernetes"},
            {"token": "t0k"},
            ClientSettings(ApiEndpoint(SERVER, b"", True), tls_server_name="kubernetes", token="t0k"),
        ),
        ("token file (kept as a path)", {}, {"tokenFile": "token"}, "tokenFile"),
        (
            "basic auth",
            {},
            {"username": "admin", "password": "pw"},
            ClientSettings(ApiEndpoint(SERVER), username="admin", password="pw"),
        ),
        ("no user: anonymous", {}, None, ClientSettings(ApiEndpoint(SERVER))),
        ("exec plugin: the official loader", {}, {"exec": {"command": "x"}}, "delegated"),
        ("auth provider: the official loader", {}, {"auth-provider": {"name": "oidc"}}, "delegated"),
        ("proxy: the official loader", {"proxy-url": "http://proxy:3128"}, {"token": "t"}, "delegated"),
    ],
)
def test_client_settings(
    case: str, cluster: dict[str, Any], user: dict[str, Any] | None, expected: Any, tmp_path: Path
) -> None:
    path = kubeconfig(tmp_path, cluster, user)
    got = client_settings(path)
    if expected == "tokenFile":
        assert got.token_file == str(tmp_path / "token") and not got.token, case
    elif expected == "delegated":
        assert got.delegated == path and got.endpoint.server == SERVER, case
    else:
        assert got == expected, case
    assert "pw" not in repr(got) and "t0k" not in repr(got)  # secrets never printed


@pytest.mark.parametrize(
    ("case", "cluster", "user", "message"),
    [
        ("certificate without key", {}, {"client-certificate": "cert.pem"}, "both the certificate and its key"),
        ("missing file", {}, {"client-certificate": "nope.pem", "client-key": "key.pem"}, "cannot read"),
        ("bad base64", {"certificate-authority-data": "abc"}, {}, "not base64"),
        ("no server", {"server": ""}, {}, "no server"),
    ],
)
def test_client_settings_refuses(
    case: str, cluster: dict[str, Any], user: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(KubeconfigError, match=message):
        client_settings(kubeconfig(tmp_path, cluster, user))


@pytest.mark.parametrize(
    ("case", "environ", "server"),
    [
        ("IPv4", {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "https://10.96.0.1:443"),
        ("IPv6 in brackets", {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}, "https://[fd00::1]:443"),
    ],
)
def test_in_cluster_settings(case: str, environ: dict[str, str], server: str, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(CA)
    got = in_cluster_settings(environ, str(tmp_path / "token"), str(tmp_path / "ca.crt"))
    assert got == ClientSettings(ApiEndpoint(server, CA), token_file=str(tmp_path / "token")), case


def test_in_cluster_settings_outside_a_pod(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_settings({}, str(tmp_path / "token"), str(tmp_path / "ca.crt"))
    with pytest.raises(KubeconfigError, match="no ServiceAccount token"):
        env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        in_cluster_settings(env, str(tmp_path / "token"), str(tmp_path / "ca.crt"))
