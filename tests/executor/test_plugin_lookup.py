"""Plugin lookup where the plugin will run: inside chrootDir when set, links
followed as the chrooted process follows them (absolute targets restart at the
root, `..` stops there). Table tests over throw-away directory trees; no root
privileges needed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from services.executor.rejection import Reason, Rejected
from services.executor.validation import find_plugin
from shim.rootfs import resolve_in_root

BIN = "/opt/cni/bin"

# Each tree: path inside the root -> "file" (executable), "plain" (not executable),
# "dir", or "-> target" (a symlink with that target).
DISTRO = {"/usr/lib/cni/bridge": "file", "/opt/cni/bin/bridge": "-> /usr/lib/cni/bridge"}


def build(root: Path, tree: dict[str, str]) -> None:
    for path, kind in tree.items():
        where = root / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        if kind.startswith("-> "):
            where.symlink_to(kind[3:])
        elif kind == "dir":
            where.mkdir()
        else:
            where.write_text("#!/bin/sh\nexit 0\n")
            where.chmod(0o755 if kind == "file" else 0o644)


LOOKUPS = [
    # (case, tree inside the root, plugin, found at (path inside the root that is executed) or None)
    ("regular file in the bin dir", {"/opt/cni/bin/bridge": "file"}, "bridge", "/opt/cni/bin/bridge"),
    ("absolute link outside the bin dir (Debian/RPM packages)", DISTRO, "bridge", "/opt/cni/bin/bridge"),
    (
        "relative link outside the bin dir",
        {"/usr/lib/cni/macvlan": "file", "/opt/cni/bin/macvlan": "-> ../../../usr/lib/cni/macvlan"},
        "macvlan",
        "/opt/cni/bin/macvlan",
    ),
    (
        "relative link with more .. than the depth stops at the root",
        {"/usr/lib/cni/vlan": "file", "/opt/cni/bin/vlan": "-> ../../../../../../../usr/lib/cni/vlan"},
        "vlan",
        "/opt/cni/bin/vlan",
    ),
    (
        "chain of links",
        {
            "/usr/libexec/cni/ptp": "file",
            "/usr/lib/cni/ptp": "-> /usr/libexec/cni/ptp",
            "/opt/cni/bin/ptp": "-> ../../../usr/lib/cni/ptp",
        },
        "ptp",
        "/opt/cni/bin/ptp",
    ),
    (
        "the bin dir itself is a link",
        {"/usr/lib/cni/bridge": "file", "/opt/cni/bin": "-> /usr/lib/cni"},
        "bridge",
        "/opt/cni/bin/bridge",
    ),
    ("dangling link", {"/opt/cni/bin/bridge": "-> /usr/lib/cni/bridge"}, "bridge", None),
    (
        "link to a directory",
        {"/usr/lib/cni/bridge": "dir", "/opt/cni/bin/bridge": "-> /usr/lib/cni/bridge"},
        "bridge",
        None,
    ),
    (
        "link to a file that is not executable",
        {"/usr/lib/cni/bridge": "plain", "/opt/cni/bin/bridge": "-> /usr/lib/cni/bridge"},
        "bridge",
        None,
    ),
    ("a directory named like the plugin", {"/opt/cni/bin/bridge": "dir"}, "bridge", None),
    (
        "link loop",
        {"/opt/cni/bin/a": "-> /opt/cni/bin/b", "/opt/cni/bin/b": "-> /opt/cni/bin/a"},
        "a",
        None,
    ),
    ("missing", {"/opt/cni/bin/other": "file"}, "bridge", None),
    (
        "second bin dir",
        {"/opt/cni/bin/other": "file", "/usr/libexec/cni/bridge": "file"},
        "bridge",
        "/usr/libexec/cni/bridge",
    ),
]


@pytest.mark.parametrize(("case", "tree", "plugin", "expected"), LOOKUPS, ids=[c[0] for c in LOOKUPS])
def test_lookup_inside_the_chroot(
    tmp_path: Path, case: str, tree: dict[str, str], plugin: str, expected: str | None
) -> None:
    root = tmp_path / "hostroot"
    root.mkdir()
    build(root, tree)
    bin_dirs = (BIN, "/usr/libexec/cni")
    if expected is None:
        with pytest.raises(Rejected) as info:
            find_plugin(plugin, bin_dirs, str(root))
        assert info.value.reason == Reason.NOT_FOUND
        assert "inside chrootDir" in str(info.value)
    else:
        assert find_plugin(plugin, bin_dirs, str(root)) == expected


def test_an_absolute_link_resolves_in_the_root_not_on_the_executors_filesystem(tmp_path: Path) -> None:
    """The defect seen on a real node: the target exists only in one of the two
    filesystems. Inside the root it is what the chrooted exec runs; the same
    absolute path on the executor's own filesystem must not be consulted."""
    outside = tmp_path / "outside" / "bridge"  # exists on "our" filesystem only
    build(tmp_path / "outside", {"/bridge": "file"})
    root = tmp_path / "hostroot"
    build(root, {"/opt/cni/bin/bridge": f"-> {outside}"})
    with pytest.raises(Rejected):
        find_plugin("bridge", (BIN,), str(root))
    build(root, {str(outside): "file"})  # now also inside the root, at that path
    assert find_plugin("bridge", (BIN,), str(root)) == "/opt/cni/bin/bridge"


def test_without_chroot_links_resolve_on_our_own_filesystem(tmp_path: Path) -> None:
    build(tmp_path, {"/lib/bridge": "file", "/bin/bridge": f"-> {tmp_path}/lib/bridge", "/bin/dangling": "-> /nowhere"})
    assert find_plugin("bridge", (str(tmp_path / "bin"),)) == str(tmp_path / "bin" / "bridge")
    with pytest.raises(Rejected):
        find_plugin("dangling", (str(tmp_path / "bin"),))


@pytest.mark.parametrize(
    "name", ["../bridge", "/usr/lib/cni/bridge", "bin/bridge", "..", ".", "", "bri\0dge", ".hidden"]
)
def test_names_stay_plain_type_names_with_a_chroot(tmp_path: Path, name: str) -> None:
    build(tmp_path, DISTRO)
    with pytest.raises(Rejected) as info:
        find_plugin(name, (BIN,), str(tmp_path))
    assert info.value.reason == Reason.INVALID


def test_resolve_in_root_rules(tmp_path: Path) -> None:
    build(tmp_path, {**DISTRO, "/etc/x": "-> ../../../../etc/y", "/etc/y": "plain", "/f": "plain"})
    assert resolve_in_root(str(tmp_path), "/opt/cni/bin/bridge") == str(tmp_path / "usr/lib/cni/bridge")
    assert resolve_in_root(str(tmp_path), "/etc/x") == str(tmp_path / "etc/y")
    assert resolve_in_root(str(tmp_path), "/../../etc/./y") == str(tmp_path / "etc/y")
    # missing components are kept as given, so a stat of the result answers "missing"
    assert resolve_in_root(str(tmp_path), "/etc/missing/x") == str(tmp_path / "etc/missing/x")
    assert resolve_in_root(str(tmp_path), "/opt/cni/bin/../../../etc/missing") == str(tmp_path / "etc/missing")
    with pytest.raises(NotADirectoryError):
        os.stat(resolve_in_root(str(tmp_path), "/f/below"))
    build(tmp_path, {"/loop": "-> /loop"})
    with pytest.raises(OSError) as info:
        resolve_in_root(str(tmp_path), "/loop")
    assert info.value.errno == errno.ELOOP
    # no root: our own filesystem, where the absolute target is the host's own file
    assert resolve_in_root("", os.fspath(tmp_path / "opt/cni/bin/bridge")) == os.path.realpath("/usr/lib/cni/bridge")
