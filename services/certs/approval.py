"""Which CertificateSigningRequests the multus approver signs off: pure rules.

Approved: requests for signer kubernetes.io/kube-apiserver-client that parse
and are self-signed correctly, whose subject is exactly CN system:multus:<node>
and O system:multus, with no SANs and a sound key, made by system:node:<node>
(bootstrap with the kubelet's credentials) or system:multus:<node> (renewal)
for the same node, and whose usages are exactly digital signature + client
auth. expirationSeconds is not required (Kubernetes 1.20 drops it). Anything
else is left for humans; the reason is returned for the log."""

from __future__ import annotations

from dataclasses import dataclass

from services.certs import pki
from services.certs.csr_spec import SIGNER as SIGNER
from services.certs.csr_spec import USAGES as USAGES
from services.certs.csr_spec import CsrView as CsrView

NODE_USER_PREFIX = "system:node:"


@dataclass(frozen=True)
class Decision:
    approve: bool
    reason: str


def _leave(reason: str) -> Decision:
    return Decision(False, reason)


def decide(csr: CsrView) -> Decision:
    if csr.decided:
        return _leave("already approved or denied")
    if csr.signer_name != SIGNER:
        return _leave(f"signer {csr.signer_name!r} is not {SIGNER}")
    try:
        facts = pki.request_facts(csr.request)
    except ValueError:
        return _leave("request is not a PEM certificate request")
    if not facts.signature_valid:
        return _leave("request signature is invalid")
    if len(facts.common_names) != 1 or not facts.common_names[0].startswith(pki.CN_PREFIX):
        return _leave(f"commonName {list(facts.common_names)} is not {pki.CN_PREFIX}<node>")
    node = facts.common_names[0][len(pki.CN_PREFIX) :]
    if not node or ":" in node:
        return _leave(f"commonName {facts.common_names[0]!r} names no node")
    if facts.organizations != (pki.ORGANIZATION,):
        return _leave(f"organization {list(facts.organizations)} is not [{pki.ORGANIZATION!r}]")
    if facts.has_other_subject_fields:
        return _leave("subject has fields other than CN and O")
    if facts.has_subject_alt_names:
        return _leave("request has subject alternative names")
    if not facts.key_ok:
        return _leave(f"key {facts.key_description} is not ECDSA P-256/P-384 or RSA >= 2048")
    if csr.username not in (NODE_USER_PREFIX + node, pki.CN_PREFIX + node):
        return _leave(f"requested by {csr.username!r}, not {NODE_USER_PREFIX}{node} or {pki.CN_PREFIX}{node}")
    if len(csr.usages) != len(USAGES) or frozenset(csr.usages) != USAGES:
        return _leave(f"usages {list(csr.usages)} are not exactly {sorted(USAGES)}")
    return Decision(True, f"multus client certificate for node {node} requested by {csr.username}")
