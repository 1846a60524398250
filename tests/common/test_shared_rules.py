"""One table of cases for the rules the stdlib-only shim keeps its own copy of:
the services (services.common.validation, services.common.cni) and the shim
must answer every row alike, so the two copies cannot drift apart again."""

from __future__ import annotations

import pytest

from services.common import cni, validation
from shim import multus_shim as shim

# (case, value, valid): interface names, as the kernel and libcni count them.
IFNAMES = [
    ("plain", "eth0", True),
    ("15 ASCII bytes", "a" * 15, True),
    ("16 ASCII bytes", "a" * 16, False),
    ("7 two-byte characters (14 bytes)", "é" * 7, True),
    ("8 two-byte characters (16 bytes, 8 characters)", "é" * 8, False),
    ("annotation-style name of 16 bytes", "éééééééé", False),
    ("5 three-byte characters (15 bytes)", "\u20ac" * 5, True),
    ("6 three-byte characters (18 bytes)", "\u20ac" * 6, False),
    ("empty", "", False),
    ("dot", ".", False),
    ("dot dot", "..", False),
    ("three dots are a name", "...", True),
    ("slash", "a/b", False),
    ("colon", "eth0:1", False),
    ("space", "a b", False),
    ("tab", "a\tb", False),
    ("newline", "eth0\n", False),
    ("vertical tab", "a\vb", False),
    ("NUL", "a\x00b", False),
    ("dash and dot", "net-1.2", True),
]

# (case, value, valid): container IDs, libcni's [A-Za-z0-9][A-Za-z0-9_.-]*.
CONTAINER_IDS = [
    ("hex", "0123abcdef", True),
    ("with _ . -", "a_b.c-d", True),
    ("leading dash", "-abc", False),
    ("leading dot", ".abc", False),
    ("leading underscore", "_abc", False),
    ("slash", "ab/c", False),
    ("dot dot path", "../x", False),
    ("trailing newline", "abc\n", False),
    ("inner newline", "ab\nc", False),
    ("space", "a b", False),
    ("non-ASCII letter", "abcé", False),
    ("non-ASCII digit", "\u0663abc", False),
    ("empty", "", False),
]


@pytest.mark.parametrize(("case", "ifname", "valid"), IFNAMES, ids=[c[0] for c in IFNAMES])
def test_interface_names(case: str, ifname: str, valid: bool) -> None:
    services_problem = validation.ifname_problem(ifname)
    shim_problem = shim.interface_name_problem(ifname)
    assert (services_problem == "") is valid, case
    assert shim_problem == services_problem, case


@pytest.mark.parametrize(("case", "container_id", "valid"), CONTAINER_IDS, ids=[c[0] for c in CONTAINER_IDS])
def test_container_ids(case: str, container_id: str, valid: bool) -> None:
    assert (validation.container_id_problem(container_id) == "") is valid, case
    assert shim.is_valid_container_id(container_id) is valid, case


@pytest.mark.parametrize(
    ("name", "services_code"),
    [
        ("INCOMPATIBLE_VERSION", cni.INCOMPATIBLE_VERSION),
        ("INVALID_ENV", cni.INVALID_ENV),
        ("IO_FAILURE", cni.IO_FAILURE),
        ("DECODE_FAILURE", cni.DECODE_FAILURE),
        ("INVALID_CONFIG", cni.INVALID_CONFIG),
        ("TRY_AGAIN_LATER", cni.TRY_AGAIN_LATER),
        ("INTERNAL", cni.INTERNAL),
    ],
)
def test_error_codes(name: str, services_code: int) -> None:
    """The shim spells the few codes it uses out (it cannot import the services)."""
    assert getattr(shim, name) == services_code
