"""Delegate credentials against the real kube-apiserver: the TokenRequest token
and multus.d/multus.kubeconfig, used by a delegate-side client from inside a
chroot (auto and manual install modes), and the refresh at 80% of the TTL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from services.certs.delegate_token import DelegateTokenSettings, DelegateTokenWriter
from services.certs.ledger import DELEGATE_TOKEN, CredentialLedger
from services.certs.sources import ApiSource
from tests.certs.support import FakeClock, admin_client, eventually, namespace_with_service_account, unique, wait_for
from tests.certs.test_kube_node_certificate import credential, status
from tests.conftest import ShippedIdentity
from tests.support.kube_identity import shipped_namespaced_rbac
from tests.support.services import Instance, start_service, wait_serving

pytestmark = pytest.mark.kube
k8s: Any = kubernetes.client

# What a delegate plugin does with the kubeconfig it is handed: list pods in its
# namespace, and show who it is from a request it is not allowed to make.
DELEGATE_CLIENT = """
import json, sys
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
pods = core.list_namespaced_pod(sys.argv[2])
try:
    core.list_namespaced_secret("kube-system")
    denied = ""
except ApiException as exc:
    denied = json.loads(exc.body)["message"]
print(json.dumps({"pods": len(pods.items), "denied": denied}))
"""


def grant_list_pods(api: Any, namespace: str, service_account: str) -> None:
    rbac_api = k8s.RbacAuthorizationV1Api(api)
    rbac_api.create_namespaced_role(
        namespace,
        {"metadata": {"name": "delegate"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]},
    )
    rbac_api.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "delegate"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "delegate"},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
        },
    )


def run_in_chroot(root: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` chrooted into `root`, which sees /usr, this Python and its venv
    read-only through bind mounts in a private mount namespace (gone when it exits)."""
    binds = sorted({"/usr", os.path.realpath(sys.base_prefix), sys.prefix})
    for name, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        if not (root / name).exists():
            (root / name).symlink_to(target)
    script = []
    for path in binds:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        script.append(f"mount --bind {path} {root}{path} && mount -o remount,bind,ro {root}{path}")
    script.append('exec chroot "$0" "$@"')
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", " && ".join(script), str(root), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp"},
    )


@pytest.mark.parametrize("install_mode", ["auto", "manual"])
def test_delegate_reads_the_api_from_a_chroot(
    instance: Instance, kube_api: Path, install_mode: str, shipped_identity: ShippedIdentity
) -> None:
    api = admin_client(kube_api)
    node_kubeconfig = shipped_identity.node_kubeconfig(unique("node"))
    host_root = instance.root / "hostroot"
    cni_conf_dir = host_root / "etc" / "cni" / "net.d"
    cni_conf_dir.mkdir(parents=True)
    (host_root / "tmp").mkdir()
    with namespace_with_service_account(api, "multus-delegate") as namespace:
        shipped_namespaced_rbac(api, namespace)
        grant_list_pods(api, namespace, "multus-delegate")
        instance.config.update(
            cniConfigDir=str(cni_conf_dir),
            multusNamespace=namespace,
            delegateServiceAccount="multus-delegate",
            delegateTokenSeconds=600,
        )
        if install_mode == "manual":
            manual = cni_conf_dir / "10-manual.conflist"
            manual.write_text(json.dumps({"cniVersion": "1.0.0", "name": "m", "plugins": [{"type": "bridge"}]}))
            instance.config["multusConfigFile"] = str(manual)
        instance.write_config()
        svc = start_service(instance, "certs", env={"KUBECONFIG": str(node_kubeconfig)})
        try:
            wait_serving(instance.grpc_socket("certs"), timeout=30)
            try:
                cred = wait_for(
                    lambda: (c := credential(status(instance), DELEGATE_TOKEN)) and c.state == "VALID" and c, 30
                )
            except TimeoutError as exc:
                raise AssertionError(f"no valid delegate token: {svc.log()[-3000:]}") from exc
            kubeconfig_path = cni_conf_dir / "multus.d" / "multus.kubeconfig"
            token_path = cni_conf_dir / "multus.d" / "multus.token"
            assert cred.path == str(kubeconfig_path)
            assert 590 <= cred.not_after_unix - cred.issued_unix <= 610
            for path in (kubeconfig_path, token_path):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
            doc = yaml.safe_load(kubeconfig_path.read_text())
            assert doc["users"][0]["user"] == {"tokenFile": "multus.token"}
            assert doc["clusters"][0]["cluster"]["server"] == shipped_identity.recorder.url  # the node's own API URL
            assert doc["clusters"][0]["cluster"]["certificate-authority-data"]
            token = token_path.read_text()
            assert token.count(".") == 2 and token not in svc.log()

            result = run_in_chroot(
                host_root,
                [sys.executable, "-c", DELEGATE_CLIENT, "/etc/cni/net.d/multus.d/multus.kubeconfig", namespace],
            )
            assert result.returncode == 0, result.stderr[-2000:]
            seen = json.loads(result.stdout)
            assert seen["pods"] == 0
            assert f"system:serviceaccount:{namespace}:multus-delegate" in seen["denied"]
        finally:
            svc.stop()
        # Unlike upstream, stopping never removes the delegate kubeconfig.
        assert kubeconfig_path.exists()


async def test_token_refreshed_at_80_percent_of_its_ttl(
    tmp_path: Path, kube_api: Path, shipped_identity: ShippedIdentity
) -> None:
    api = admin_client(kube_api)
    node_kubeconfig = shipped_identity.node_kubeconfig(unique("node"))
    with namespace_with_service_account(api, "multus-delegate") as namespace:
        shipped_namespaced_rbac(api, namespace)
        kubeconfig_path = tmp_path / "multus.d" / "multus.kubeconfig"
        settings = DelegateTokenSettings(namespace, "multus-delegate", "", 60, str(kubeconfig_path))
        clock, book = FakeClock(), CredentialLedger()
        source = ApiSource("kubeconfig", str(node_kubeconfig))
        writer = DelegateTokenWriter(settings, source, book, clock, random.Random())
        task = asyncio.create_task(writer.run())
        try:
            first = await eventually(lambda: (c := book.get(DELEGATE_TOKEN)) and c.generation == 1 and c)
            # 60 s asked for, TokenRequest's minimum of 600 s used.
            assert first.not_after - first.issued == pytest.approx(600, abs=10)
            token = Path(settings.token_path).read_text()
            clock.set(first.issued + 0.79 * 600)
            await asyncio.sleep(1.1)  # also makes the next token's iat differ: tokens have 1 s resolution
            assert book.get(DELEGATE_TOKEN).generation == 1  # type: ignore[union-attr]
            clock.set(first.issued + 0.80 * 600 + 0.01)
            second = await eventually(lambda: (c := book.get(DELEGATE_TOKEN)) and c.generation == 2 and c)
            assert Path(settings.token_path).read_text() != token
            assert second.issued == pytest.approx(clock.now())
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
