"""Keys, certificate requests and certificates (cryptography; no I/O).

Imported by the approver and by the PKI worker (services.certs.pki_worker),
never by the resident certs service: that process asks the short-lived worker
(services.certs.pki_client) instead of keeping the cryptography package loaded."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from services.certs.csr_spec import CN_PREFIX as CN_PREFIX
from services.certs.csr_spec import ORGANIZATION as ORGANIZATION
from services.certs.csr_spec import node_common_name as node_common_name


@dataclass(frozen=True)
class CertificateFacts:
    subject_cn: str
    not_before: float
    not_after: float
    public_key_der: bytes


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def node_csr_pem(key: ec.EllipticCurvePrivateKey, node: str) -> bytes:
    """The PKCS#10 request for a node's client certificate (CN system:multus:<node>, O system:multus)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, node_common_name(node)),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate_facts(pem: bytes) -> CertificateFacts:
    """Facts of the first certificate in `pem`. Raises ValueError if there is none."""
    cert = x509.load_pem_x509_certificate(pem)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertificateFacts(
        subject_cn=str(cns[0].value) if cns else "",
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        public_key_der=_public_der(cert.public_key()),
    )


def key_matches(key: ec.EllipticCurvePrivateKey, cert_pem: bytes) -> bool:
    return certificate_facts(cert_pem).public_key_der == _public_der(key.public_key())


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def key_pem_matches(key_pem: bytes, cert_pem: bytes) -> bool:
    """Whether `key_pem` is an ECDSA private key (PEM) whose public half is in the certificate."""
    key = load_private_key(key_pem)
    return key is not None and key_matches(key, cert_pem)


def new_node_request(node: str) -> tuple[bytes, bytes]:
    """A new private key (PKCS#8 PEM) and the node's CSR (PEM) signed with it."""
    key = new_private_key()
    return private_key_pem(key), node_csr_pem(key, node)


@dataclass(frozen=True)
class RequestFacts:
    """What the approver needs to know about a PKCS#10 request."""

    common_names: tuple[str, ...]
    organizations: tuple[str, ...]
    has_other_subject_fields: bool
    has_subject_alt_names: bool
    signature_valid: bool
    key_ok: bool
    key_description: str


def request_facts(pem: bytes) -> RequestFacts:
    """Parse a CSR. Raises ValueError when it is not a PEM certificate request."""
    csr = x509.load_pem_x509_csr(pem)
    cns = tuple(str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    orgs = tuple(str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    other = any(a.oid not in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME) for a in csr.subject)
    try:
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        has_san = True
    except x509.ExtensionNotFound:
        has_san = False
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key_ok, desc = key.curve.name in ("secp256r1", "secp384r1"), f"ECDSA {key.curve.name}"
    elif isinstance(key, rsa.RSAPublicKey):
        key_ok, desc = key.key_size >= 2048, f"RSA {key.key_size}"
    else:
        key_ok, desc = False, type(key).__name__
    return RequestFacts(cns, orgs, other, has_san, csr.is_signature_valid, key_ok, desc)
