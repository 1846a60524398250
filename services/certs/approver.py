"""`python -m services.certs approve`: the cluster-wide approver for multus
node client certificates (run once per cluster, e.g. as a Deployment). It lists
and watches CertificateSigningRequests and approves exactly those the rules in
services.certs.approval accept; everything else is left for humans, logged
with the reason."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

from services.certs import approval, kube
from services.common.backoff import backoff_delay
from services.common.logs import get_logger, setup_logging

log = get_logger(__name__)

BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
# A watch closed sooner than this without a single event counts as a failure (as
# client-go's "very short watch"): re-watching at once would be a busy loop.
MIN_WATCH_SECONDS = 1.0


class Approver:
    def __init__(self, api: kube.ApiClient) -> None:
        self.api = api
        self._explained: set[str] = set()  # CSRs whose "left for a human" reason was logged

    def handle(self, obj: dict[str, Any]) -> approval.Decision:
        view = kube.csr_view(obj)
        decision = approval.decide(view)
        if decision.approve:
            kube.approve_csr(self.api, view.name, f"approved by the multus approver: {decision.reason}")
            log.info("CSR approved", csr=view.name, requester=view.username, reason=decision.reason)
        elif not view.decided and view.name not in self._explained:
            self._explained.add(view.name)
            log.info("CSR left for a human", csr=view.name, requester=view.username, reason=decision.reason)
        return decision

    def sync(self) -> str:
        items, resource_version = kube.list_csrs(self.api)
        for obj in items:
            self._handle_safely(obj)
        return resource_version

    def _handle_safely(self, obj: dict[str, Any]) -> None:
        try:
            self.handle(obj)
        except kube.KubeError as exc:
            # A conflict or a vanished CSR: the next event or relist brings it back if it still matters.
            log.warning("CSR approval failed", csr=(obj.get("metadata") or {}).get("name"), error=str(exc))

    def run(self) -> None:
        failures = 0
        while True:
            try:
                resource_version = self.sync()
                failures = 0
                while True:
                    started, events = time.monotonic(), 0
                    for event_type, obj in kube.watch_csrs(self.api, resource_version):
                        events += 1
                        if event_type == "ERROR":
                            raise kube.KubeError(410, "watch expired")
                        resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
                        if event_type in ("ADDED", "MODIFIED"):
                            self._handle_safely(obj)
                    lasted = time.monotonic() - started
                    if events == 0 and lasted < MIN_WATCH_SECONDS:
                        raise kube.KubeError(0, f"very short watch: closed after {lasted:.3f}s with no events")
            except kube.KubeError as exc:
                failures += 1
                delay = backoff_delay(failures, BACKOFF_BASE, BACKOFF_CAP)
                if exc.status != 410:
                    log.warning("CSR list/watch failed; relisting", error=str(exc), retry_in=round(delay, 1))
                    time.sleep(delay)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multus-certs approve", description="approve multus node client CSRs")
    parser.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG", ""), help="default: KUBECONFIG, else in-cluster"
    )
    parser.add_argument("--once", action="store_true", help="handle the pending CSRs once and exit")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    setup_logging("certs-approver", args.log_level)
    try:
        api = kube.new_client(args.kubeconfig)
    except kube.KubeError as exc:
        log.error("cannot build an API client", error=str(exc))
        return 2
    approver = Approver(api)
    try:
        if args.once:
            approver.sync()
        else:
            log.info("approver started")
            approver.run()
    except kube.KubeError as exc:
        log.error("approver failed", error=str(exc))
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        kube.close(api)
    return 0
