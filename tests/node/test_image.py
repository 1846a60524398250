"""The image as built from compose/Containerfile (the archive ../shared/node's
image.sh exported): no layer holds pip or setuptools, every entry point runs in
it, and the default command refuses to start without its config file."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.conftest import NodeKit
from tests.node.support import IMAGE, NODE_ROOT

pytestmark = [pytest.mark.node, pytest.mark.timeout(1800)]

ARCHIVE = NODE_ROOT / "image" / "multus-grpc_dev.tar"
FORBIDDEN = ("/pip/__init__.py", "/setuptools/__init__.py", "/kubernetes/aio/__init__.py")
ENTRY_POINTS = (
    "multus-gateway",
    "multus-cache",
    "multus-executor",
    "multus-certs",
    "multus-probe",
    "multus-install-shim",
    "multus-uninstall",
    "multusctl",
)


def layers(archive: Path) -> Iterator[tuple[str, tarfile.TarFile]]:
    """The image's layers, bottom first, as opened tar files."""
    with tarfile.open(archive) as oci:
        index = json.load(oci.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(oci.extractfile(f"blobs/sha256/{manifest_digest}"))  # type: ignore[arg-type]
        for layer in manifest["layers"]:
            blob = oci.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}")
            assert blob is not None
            with tarfile.open(fileobj=io.BytesIO(blob.read())) as content:
                yield layer["digest"][:19], content


@pytest.fixture(scope="module")
def rootfs(node_kit: NodeKit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    node_kit.import_image()
    root = tmp_path_factory.mktemp("image-rootfs")
    for _, layer in layers(ARCHIVE):
        for member in layer.getmembers():
            name = Path(member.name)
            if name.name.startswith(".wh."):
                target = root / name.parent / name.name[4:]
                subprocess.run(["rm", "-rf", str(target)], check=True)
                continue
            if member.isdev():
                continue
            layer.extract(member, root, filter="fully_trusted")
    return root


def test_no_layer_holds_pip_setuptools_or_the_unused_async_client(node_kit: NodeKit) -> None:
    node_kit.import_image()
    total = 0
    for digest, layer in layers(ARCHIVE):
        names = layer.getnames()
        total += sum(m.size for m in layer.getmembers())
        found = [n for n in names if n.endswith(FORBIDDEN)]
        assert not found, f"layer {digest} holds {found}"
    print(f"{IMAGE}: {total / 2**20:.0f} MiB unpacked, archive {ARCHIVE.stat().st_size / 2**20:.0f} MiB")


def chroot(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/opt/multus/venv/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    program = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin") or "chroot"
    return subprocess.run([program, str(root), *argv], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_every_entry_point_runs(rootfs: Path, entry_point: str) -> None:
    result = chroot(rootfs, f"/opt/multus/venv/bin/{entry_point}", "--help")
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_default_command_refuses_to_start_without_its_config(rootfs: Path) -> None:
    result = chroot(rootfs, "multus-gateway", "--config", "/etc/multus/daemon-config.json")
    assert result.returncode == 2
    assert "daemon config /etc/multus/daemon-config.json does not exist" in result.stderr
