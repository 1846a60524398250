"""chrootDir: the plugin is looked up in the bin dirs inside the root, links
followed as the chrooted process follows them (distro packages install
`/opt/cni/bin/<plugin>` as links to `/usr/lib/cni`), and that same path is
executed inside a real prepared root, with the netns path passed unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from services.api import executor_pb2, executor_pb2_grpc
from tests.executor.conftest import GATEWAY, launch_executor, make_executor_instance
from tests.support.netns import host_link_exists, ip, netns, unique_name

REFERENCE = Path("/usr/lib/cni")
PLUGINS = ("bridge", "host-local")


def shared_libraries(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            libs.append(Path(path))
    return libs


def prepare_root(root: Path, bin_dir: Path, layout: str = "files") -> None:
    """A minimal host root: the reference plugins at the bin dir's own path, and their libraries.

    layout "files": copies in the bin dir; "links": copies in /usr/lib/cni with the
    bin dir holding links to them as a distro package leaves it (bridge absolute,
    host-local relative), which dangle on the executor's own filesystem."""
    inner_bin = root / str(bin_dir).lstrip("/")
    inner_bin.mkdir(parents=True)
    for name in PLUGINS:
        if layout == "files":
            shutil.copy2(REFERENCE / name, inner_bin / name)
        else:
            distro = root / "usr/lib/cni"
            distro.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REFERENCE / name, distro / name)
            if name == "bridge":
                (inner_bin / name).symlink_to(f"/usr/lib/cni/{name}")
            else:
                (inner_bin / name).symlink_to(os.path.relpath(distro / name, inner_bin))
        for lib in shared_libraries(REFERENCE / name):
            target = root / str(lib).lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copy2(lib.resolve(), target)


@contextmanager
def bind_mount(source: str, target: Path) -> Iterator[None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch()
    subprocess.run(["mount", "--bind", source, str(target)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(target)], check=False)


@contextmanager
def proc_mounted(root: Path) -> Iterator[None]:
    """A host root has /proc: the plugins open /proc/<pid>/task/<tid>/ns/net."""
    target = root / "proc"
    target.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(target)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.skipif(not (REFERENCE / "bridge").exists(), reason="reference plugins not installed")
@pytest.mark.parametrize("layout", ["files", "links"])
def test_bridge_runs_inside_the_chroot_with_the_same_paths(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "hostroot"
    # The executor's own bin dir has no reference plugins (as in the DaemonSet's
    # executor container, where distro links dangle): only the root's count.
    inst, bin_dir, _ = make_executor_instance(tmp_path, chrootDir=str(root), with_reference=False)
    prepare_root(root, bin_dir, layout)
    proc = launch_executor(inst)
    bridge = unique_name("exc")
    # host-local's dataDir as the plugin sees it: inside the chroot it lands under root.
    data_dir = "/var/lib/cni/chroot-test"
    conf = {
        "cniVersion": "1.0.0",
        "name": "chrooted",
        "type": "bridge",
        "bridge": bridge,
        "ipam": {"type": "host-local", "subnet": "10.251.9.0/24", "dataDir": data_dir},
    }
    try:
        with netns("exr") as ns, proc_mounted(root), bind_mount(ns.path, root / ns.path.lstrip("/")):
            req = executor_pb2.ExecPluginRequest(
                plugin="bridge",
                command="ADD",
                container_id="chroot01",
                netns=ns.path,  # unchanged: the same path exists inside the root
                ifname="net1",
                config=json.dumps(conf).encode(),
            )
            with grpc.insecure_channel(f"unix://{inst.grpc_socket('executor')}") as channel:
                stub = executor_pb2_grpc.ExecutorStub(channel)
                added = stub.ExecPlugin(req, timeout=20, metadata=GATEWAY)
                assert not added.HasField("error"), (added.error, proc.log()[-2000:])
                address = json.loads(added.stdout)["ips"][0]["address"]
                assert ns.addresses("net1") == [address]
                # host-local (found through CNI_PATH, inside the root too) wrote its lease in the root.
                lease = root / data_dir.lstrip("/") / "chrooted" / address.split("/")[0]
                assert lease.exists()
                assert not Path(data_dir).exists()

                req.command = "DEL"
                deleted = stub.ExecPlugin(req, timeout=20, metadata=GATEWAY)
                assert not deleted.HasField("error"), deleted.error
                assert not lease.exists()
                assert "net1" not in ns.links()
    finally:
        proc.stop()
        if host_link_exists(bridge):
            ip("link", "delete", bridge, check=False)


def test_a_plugin_only_on_the_executors_filesystem_is_not_found(tmp_path: Path) -> None:
    """`recorder` is in the bin dir on the executor's filesystem but not in the root:
    it would not run there, so the lookup says so before anything is executed."""
    root = tmp_path / "emptyroot"
    root.mkdir()
    inst, _, record_dir = make_executor_instance(tmp_path, chrootDir=str(root))
    proc = launch_executor(inst)
    try:
        conf = json.dumps({"cniVersion": "1.0.0", "recordDir": str(record_dir)}).encode()
        req = executor_pb2.ExecPluginRequest(plugin="recorder", command="DEL", config=conf)
        channel = grpc.insecure_channel(f"unix://{inst.grpc_socket('executor')}")
        with channel, pytest.raises(grpc.RpcError) as info:
            executor_pb2_grpc.ExecutorStub(channel).ExecPlugin(req, timeout=10, metadata=GATEWAY)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "failed to find plugin 'recorder'" in str(info.value.details())
        assert f"inside chrootDir {root}" in str(info.value.details())
        assert not (record_dir / "calls.jsonl").exists()
    finally:
        proc.stop()


def test_executor_is_not_serving_until_the_chroot_dir_exists(tmp_path: Path) -> None:
    from tests.support.services import start_service, wait_serving

    inst, _, _ = make_executor_instance(tmp_path, chrootDir=str(tmp_path / "hostroot"))
    proc = start_service(inst, "executor")
    try:
        with pytest.raises(TimeoutError):
            wait_serving(inst.grpc_socket("executor"), timeout=1.5)
        assert os.path.exists(inst.grpc_socket("executor"))
        assert "chrootDir" in proc.log()
        (tmp_path / "hostroot").mkdir()  # the host root is mounted late
        wait_serving(inst.grpc_socket("executor"), timeout=5)
    finally:
        proc.stop()


@contextmanager
def usr_bound(root: Path) -> Iterator[None]:
    """A root that can run Python scripts: the host's /usr bound read-only, merged-/usr links."""
    for name in ("bin", "lib", "lib64", "sbin"):
        if Path("/", name).is_symlink():
            (root / name).symlink_to(f"usr/{name}")
    target = root / "usr"
    target.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", "/usr", str(target)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_delegates_in_the_chroot_get_the_kubeconfig_present_only_in_the_host_root(tmp_path: Path) -> None:
    """As in the DaemonSet: the certs service writes <cniConfigDir>/multus.d/multus.kubeconfig
    on the host; the executor's container does not mount the CNI config dir, its delegates
    open the path inside the chroot. KUBECONFIG must be passed whenever the file is there."""
    root = tmp_path / "hostroot"
    root.mkdir()
    inst, bin_dir, _ = make_executor_instance(tmp_path, chrootDir=str(root))
    kubeconfig = os.path.join(inst.config["cniConfigDir"], "multus.d", "multus.kubeconfig")
    assert not os.path.exists(kubeconfig)
    inner_bin = root / str(bin_dir).lstrip("/")
    inner_bin.mkdir(parents=True)
    recorder = inner_bin / "recorder"
    recorder.write_text("#!/usr/bin/python3\n" + (bin_dir / "recorder").read_text().split("\n", 1)[1])
    recorder.chmod(0o755)
    (root / "records").mkdir()
    conf = json.dumps({"cniVersion": "1.0.0", "recordDir": "/records"}).encode()
    req = executor_pb2.ExecPluginRequest(plugin="recorder", command="DEL", config=conf)
    proc = launch_executor(inst)
    try:
        with usr_bound(root), grpc.insecure_channel(f"unix://{inst.grpc_socket('executor')}") as channel:
            stub = executor_pb2_grpc.ExecutorStub(channel)
            resp = stub.ExecPlugin(req, timeout=10, metadata=GATEWAY)
            assert not resp.HasField("error"), (resp.error, proc.log()[-2000:])
            calls = (root / "records" / "calls.jsonl").read_text().splitlines()
            assert "KUBECONFIG" not in json.loads(calls[-1])["env"]  # not written yet
            inside = root / kubeconfig.lstrip("/")
            inside.parent.mkdir(parents=True)
            inside.write_text("apiVersion: v1\nkind: Config\n")
            resp = stub.ExecPlugin(req, timeout=10, metadata=GATEWAY)
            assert not resp.HasField("error"), resp.error
            calls = (root / "records" / "calls.jsonl").read_text().splitlines()
            assert json.loads(calls[-1])["env"]["KUBECONFIG"] == kubeconfig
    finally:
        proc.stop()
