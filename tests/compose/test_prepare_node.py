"""multus-prepare-node (the DaemonSet's init container of the privilege split):
each non-root service gets the node paths it writes, and no other. Applied for
real to a tree under /tmp, then checked by processes running as those uids."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from compose.prepare_node import Identities, acl_with_writer, main, prepare_plan
from services.common.config import config_from_dict
from tests.support.as_user import run_as, shared_tmpdir

IDS = Identities(gateway=64301, cache=64302, certs=64303, group=64300)


def _config(root: Path) -> dict[str, object]:
    return {
        "cniConfigDir": str(root / "etc/cni/net.d"),
        "cniDir": str(root / "var/lib/cni/multus"),
        "socketDir": str(root / "run/multus/"),
        "runDir": str(root / "run/multus-grpc"),
        "logDir": str(root / "var/log/multus"),
        "deviceInfoDir": str(root / "run/k8s.cni.cncf.io/devinfo"),
        "perNodeCertificate": {"enabled": True, "certDir": str(root / "var/lib/multus/certs")},
        "grpcSocketGroup": str(IDS.group),
        "gatewayUid": IDS.gateway,
    }


def test_the_plan_gives_each_path_to_its_one_writer(tmp_path: Path) -> None:
    plan = {(s.path, s.files_named): s for s in prepare_plan(config_from_dict(_config(tmp_path)), IDS)}
    owner = {path: step.uid for (path, named), step in plan.items() if not named and step.uid >= 0}
    assert owner[str(tmp_path / "var/lib/cni/multus")] == IDS.gateway
    assert owner[str(tmp_path / "run/multus")] == IDS.gateway
    assert owner[str(tmp_path / "run/multus-grpc/cache")] == IDS.cache
    assert owner[str(tmp_path / "etc/cni/net.d/multus.d")] == IDS.certs
    assert plan[(str(tmp_path / "etc/cni/net.d"), "")].acl_writer == IDS.gateway  # the dir itself stays root's
    assert plan[(str(tmp_path / "run/multus-grpc/grpc"), "")].mode == 0o1770


def test_cert_dir_is_left_alone_without_per_node_certificates(tmp_path: Path) -> None:
    """Its default is a host path (/var/lib/multus/certs): only an enabled
    perNodeCertificate makes it the certs service's to create and own."""
    config = _config(tmp_path)
    cert_dir = str(tmp_path / "var/lib/multus/certs")
    assert cert_dir in {s.path for s in prepare_plan(config_from_dict(config), IDS)}
    config["perNodeCertificate"] = {"enabled": False, "certDir": cert_dir}
    assert cert_dir not in {s.path for s in prepare_plan(config_from_dict(config), IDS)}
    config.pop("perNodeCertificate")
    assert "/var/lib/multus/certs" not in {s.path for s in prepare_plan(config_from_dict(config), IDS)}


def test_the_acl_is_what_setfacl_writes() -> None:
    blob = acl_with_writer(0o755, 1000)
    assert blob[:4] == b"\x02\x00\x00\x00" and len(blob) == 4 + 5 * 8


@pytest.mark.root
def test_applied_each_uid_writes_only_where_it_should() -> None:
    with shared_tmpdir("prepare-") as root:
        config_path = root / "daemon-config.json"
        config_path.write_text(json.dumps(_config(root)))
        cni_conf = root / "etc/cni/net.d"
        cni_conf.mkdir(parents=True)
        cni_conf.chmod(0o755)
        (root / "var/log/multus").mkdir(parents=True)
        (root / "var/log/multus/gateway.log").write_text("from a root run\n")
        stale = root / "run/multus-grpc/grpc/gateway.sock"  # a root-owned socket from before the split
        stale.parent.mkdir(parents=True)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(stale))
        args = ["--config", str(config_path), "--cache-uid", str(IDS.cache), "--certs-uid", str(IDS.certs)]
        assert main(args) == 0
        # root's own view of the result
        assert stat.S_IMODE((root / "run/multus-grpc/grpc").stat().st_mode) == 0o1770
        assert (root / "var/lib/cni/multus").stat().st_uid == IDS.gateway
        assert (root / "var/log/multus/gateway.log").stat().st_uid == IDS.gateway
        assert cni_conf.stat().st_uid == 0
        assert not stale.exists()

        def can_write(uid: int, path: Path) -> bool:
            code = f"open({str(path / 'probe')!r}, 'w').write('x')"
            return run_as(uid, IDS.group, code).returncode == 0

        assert can_write(IDS.gateway, cni_conf)  # 00-multus.conf
        assert not can_write(IDS.cache, cni_conf) and not can_write(IDS.certs, cni_conf)
        assert can_write(IDS.certs, cni_conf / "multus.d")  # the delegates' kubeconfig
        assert not can_write(IDS.gateway, cni_conf / "multus.d")
        assert can_write(IDS.gateway, root / "var/lib/cni/multus")
        assert not can_write(IDS.cache, root / "var/lib/cni/multus")
        assert can_write(IDS.cache, root / "run/multus-grpc/cache")
        assert can_write(IDS.certs, root / "run/multus-grpc/grpc")  # its socket
        assert main(args) == 0  # idempotent
