"""What a multus node CertificateSigningRequest is: signer, usages and subject
names, and the view of a CSR the approval rules read. No cryptography here:
the resident certs service imports this module, and keeping the cryptography
package out of that process is worth several MiB per node (services.certs.pki
holds the cryptography, imported by the approver and the PKI worker only)."""

from __future__ import annotations

from dataclasses import dataclass

SIGNER = "kubernetes.io/kube-apiserver-client"
USAGES = frozenset({"digital signature", "client auth"})
CN_PREFIX = "system:multus:"
ORGANIZATION = "system:multus"


def node_common_name(node: str) -> str:
    return CN_PREFIX + node


@dataclass(frozen=True)
class CsrView:
    name: str
    signer_name: str
    username: str
    usages: tuple[str, ...]
    request: bytes  # the PEM request
    decided: bool = False  # already Approved or Denied
