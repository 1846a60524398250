"""The approver against a tiny fake API server, for a fault the real one does not
produce on demand: a watch that the server closes at once with no events."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.certs import kube
from tests.cache.fake_apiserver import fake_apiserver, fake_kubeconfig
from tests.support.services import REPO


def test_watch_closed_at_once_backs_off_instead_of_spinning(tmp_path: Path) -> None:
    with fake_apiserver() as (url, state):
        state.watch_hold_seconds = 0.0
        kubeconfig = fake_kubeconfig(tmp_path / "fake.kubeconfig", url)
        log = tmp_path / "approver.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.certs", "approve", "--kubeconfig", str(kubeconfig)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        try:
            deadline = time.monotonic() + 15
            while state.csr_watches == 0 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert state.csr_watches >= 1, log.read_text()
            time.sleep(3.0)
            with state.lock:
                watches = state.csr_watches
        finally:
            proc.terminate()
            proc.wait(10)
        # Backoff 0.5-1.5 s, 1-3 s, ...: a few in 3 s, not hundreds.
        assert watches <= 6, watches
        assert "very short watch" in log.read_text()


def test_certificate_wait_does_not_spin_on_watches_closed_at_once(tmp_path: Path) -> None:
    with fake_apiserver() as (url, state):
        state.watch_hold_seconds = 0.0
        api = kube.new_client(str(fake_kubeconfig(tmp_path / "fake.kubeconfig", url)))
        try:
            with pytest.raises(TimeoutError):
                kube.wait_for_certificate(api, "multus-node-x", timeout=2.5)
        finally:
            kube.close(api)
        # At most one watch per MIN_WATCH_SECONDS, not hundreds.
        assert 1 <= state.csr_watches <= 4, state.csr_watches
