"""The demo in docs/config-manager.md, run exactly as written."""

from __future__ import annotations

import re
import subprocess

from tests.support.services import REPO

DOC = REPO / "docs" / "config-manager.md"


def demo_script() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- demo:begin.*?-->\s*```sh\n(.*?)```\s*<!-- demo:end -->", text, re.S)
    assert match, "demo block not found in docs/config-manager.md"
    return match.group(1)


def test_documented_demo_runs_as_shown() -> None:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", demo_script()], cwd=REPO, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    appeared, changed, took_over = lines[0:3]  # the first `ls` prints nothing: the directory is empty
    assert '"type":"multus-shim"' in appeared and "10-cluster.conflist" in appeared
    assert '"capabilities":{"portMappings":true}' in changed
    assert "05-other.conf" in took_over
    assert lines[3:6] == ["00-multus.conf", "05-other.conf", "10-cluster.conflist"], "kept after the manager stopped"
    assert lines[6].startswith("removed ") and lines[6].endswith("/net.d/00-multus.conf")
    assert lines[7:] == ["05-other.conf", "10-cluster.conflist"]
    # The documented output is exactly what the demo prints (temporary paths aside).
    documented = DOC.read_text().split("Output (paths shortened):")[1].split("```")[1].strip().splitlines()
    assert [re.sub(r"/tmp/tmp\.\w+", "/tmp/tmp.X", line) for line in lines] == documented
