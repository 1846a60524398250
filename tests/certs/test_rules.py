"""Table tests for the certs service's pure logic: rotation schedule, backoff,
credential states and health, approval rules, RBAC requirements, kubeconfigs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from services.certs import approval, kubeconfig, ledger, pki, rbac, schedule
from services.certs.kube import csr_outcome
from services.certs.sources import ApiSource, api_source
from services.common.config import config_from_dict

T = 1_700_000_000.0

# ------------------------------------------------------------------ schedule


@pytest.mark.parametrize(
    ("case", "issued", "not_after", "jitter", "expected"),
    [
        ("lowest jitter renews at 70%", T, T + 1000, 0.0, T + 700),
        ("highest jitter renews at 90%", T, T + 1000, 1.0, T + 900),
        ("middle", T, T + 1000, 0.5, T + 800),
        # 1.20's signer with duration 6m: notBefore and notAfter backdated 5m, so
        # counted from issue time the certificate lives 1m: renew 42-54 s after issue.
        ("1.20 six-minute certificate, low", T, T + 60, 0.0, T + 42),
        ("1.20 six-minute certificate, high", T, T + 60, 1.0, T + 54),
        ("jitter out of range is clamped", T, T + 1000, 7.0, T + 900),
        ("already expired at issue", T, T - 5, 0.3, T),
    ],
)
def test_rotation_deadline(case: str, issued: float, not_after: float, jitter: float, expected: float) -> None:
    assert schedule.rotation_deadline(issued, not_after, jitter) == pytest.approx(expected), case


@pytest.mark.parametrize(
    ("case", "attempt", "jitter", "now", "not_after", "expected"),
    [
        ("first retry, full jitter", 0, 1.0, T, 0.0, 2.0),
        ("doubles", 3, 1.0, T, 0.0, 16.0),
        ("jitter low halves", 3, 0.0, T, 0.0, 8.0),
        ("jitter in between", 3, 0.5, T, 0.0, 12.0),
        ("capped", 20, 1.0, T, 0.0, schedule.BACKOFF_CAP),
        ("never past a quarter of the remaining life", 10, 0.5, T, T + 40, 10.0),
        ("never below the minimum", 10, 0.5, T, T + 1, schedule.BACKOFF_MIN),
        ("expired credential: plain backoff", 2, 1.0, T, T - 100, 8.0),
    ],
)
def test_retry_delay(case: str, attempt: int, jitter: float, now: float, not_after: float, expected: float) -> None:
    assert schedule.retry_delay(attempt, jitter, now, not_after) == pytest.approx(expected), case


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("1h30m", 5400), ("90s", 90), ("2h", 7200), ("1.5h", 5400), ("500ms", 0.5), ("8760h", 31536000)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert schedule.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "m", "10x", "1h5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        schedule.parse_duration(text)


def test_token_schedule() -> None:
    assert schedule.refresh_deadline(T, T + 3600) == T + 2880
    assert schedule.token_ttl(60) == 600  # TokenRequest's minimum
    assert schedule.token_ttl(3600) == 3600
    assert schedule.issue_time(T - 10, T, T + 100) == T  # written before notBefore? bounded
    assert schedule.issue_time(T + 500, T, T + 100) == T + 100
    assert schedule.issue_time(T + 50, T, T + 100) == T + 50


# -------------------------------------------------------------------- ledger

C = ledger.Credential


@pytest.mark.parametrize(
    ("case", "cred", "now", "state"),
    [
        ("valid", C("x", issued=T, not_after=T + 100), T + 50, ledger.VALID),
        ("last 10% is expiring", C("x", issued=T, not_after=T + 100), T + 91, ledger.EXPIRING),
        ("exactly 90% is expiring", C("x", issued=T, not_after=T + 100), T + 90, ledger.EXPIRING),
        ("expired", C("x", issued=T, not_after=T + 100), T + 100, ledger.EXPIRED),
        ("no expiry is static", C("x"), T, ledger.STATIC),
        ("missing", C("x", present=False), T, ledger.MISSING),
    ],
)
def test_credential_state(case: str, cred: ledger.Credential, now: float, state: str) -> None:
    assert ledger.credential_state(cred, now) == state, case


LIST_PODS = rbac.Permission("list", "", "pods")


@pytest.mark.parametrize(
    ("case", "creds", "missing", "healthy"),
    [
        ("all valid", (C("a", issued=T, not_after=T + 100), C("b")), (), True),
        ("expiring without renewal", (C("a", issued=T - 95, not_after=T + 5),), (), False),
        ("expired", (C("a", issued=T - 10, not_after=T - 1),), (), False),
        ("missing but optional", (C("a", present=False),), (), True),
        ("missing and required", (C("a", present=False, required=True),), (), False),
        ("permission missing", (C("a"),), (LIST_PODS,), False),
    ],
)
def test_health(
    case: str, creds: tuple[ledger.Credential, ...], missing: tuple[rbac.Permission, ...], healthy: bool
) -> None:
    assert (not ledger.unhealthy_reasons(creds, missing, T)) is healthy, case


async def test_ledger_generations_and_changes() -> None:
    book = ledger.CredentialLedger()
    v0 = book.version
    first = book.rotated(C("tok", issued=T, not_after=T + 100), T)
    book.failed("tok", "boom")
    assert book.get("tok") == ledger.Credential(
        "tok", issued=T, not_after=T + 100, last_rotation=T, generation=1, last_error="boom"
    )
    second = book.rotated(C("tok", issued=T + 80, not_after=T + 180), T + 80)
    assert (first.generation, second.generation, second.last_error) == (1, 2, "")
    assert await book.wait_for_change(v0) > v0
    version = book.version
    book.tick(T + 170)  # time alone moved it to EXPIRING: watchers are told
    assert book.version > version
    assert book.snapshot(T + 170).states == (ledger.EXPIRING,)


# ------------------------------------------------------------------ approval


def _request(
    cn: str = "system:multus:n1",
    orgs: tuple[str, ...] = ("system:multus",),
    san: bool = False,
    key: object | None = None,
) -> bytes:
    private = key or ec.generate_private_key(ec.SECP256R1())
    names = [
        *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False)
    return builder.sign(private, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


GOOD = _request()
OK_USAGES = ("digital signature", "client auth")


def _view(**kw: object) -> approval.CsrView:
    base: dict[str, object] = {
        "name": "c",
        "signer_name": approval.SIGNER,
        "username": "system:node:n1",
        "usages": OK_USAGES,
        "request": GOOD,
    }
    base.update(kw)
    return approval.CsrView(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "view", "approve", "reason_part"),
    [
        ("bootstrap by the kubelet of the same node", _view(), True, "node n1"),
        ("renewal by the node's own multus identity", _view(username="system:multus:n1"), True, "node n1"),
        (
            "our own CSR (usages in our order, no expirationSeconds)",
            _view(usages=("client auth", "digital signature")),
            True,
            "",
        ),
        ("another node's kubelet", _view(username="system:node:n2"), False, "requested by"),
        ("another node's multus identity", _view(username="system:multus:n2"), False, "requested by"),
        ("an arbitrary user", _view(username="alice"), False, "requested by"),
        ("a service account", _view(username="system:serviceaccount:kube-system:multus"), False, "requested by"),
        ("other signer", _view(signer_name="kubernetes.io/kube-apiserver-client-kubelet"), False, "signer"),
        ("extra usage", _view(usages=(*OK_USAGES, "server auth")), False, "usages"),
        ("missing usage", _view(usages=("client auth",)), False, "usages"),
        ("duplicated usage", _view(usages=("client auth", "client auth")), False, "usages"),
        ("key encipherment instead", _view(usages=("key encipherment", "client auth")), False, "usages"),
        ("wrong CN prefix", _view(request=_request(cn="system:node:n1")), False, "commonName"),
        ("CN without node", _view(request=_request(cn="system:multus:")), False, "names no node"),
        ("CN with extra colon", _view(request=_request(cn="system:multus:n1:x")), False, "names no node"),
        ("wrong organization", _view(request=_request(orgs=("system:masters",))), False, "organization"),
        (
            "extra organization",
            _view(request=_request(orgs=("system:multus", "system:masters"))),
            False,
            "organization",
        ),
        ("no organization", _view(request=_request(orgs=())), False, "organization"),
        ("subject alternative names", _view(request=_request(san=True)), False, "alternative"),
        ("weak RSA key", _view(request=_request(key=rsa.generate_private_key(65537, 1024))), False, "RSA 1024"),
        ("RSA 2048 is fine", _view(request=_request(key=rsa.generate_private_key(65537, 2048))), True, ""),
        ("not a CSR", _view(request=b"hello"), False, "not a PEM"),
        ("already decided", _view(decided=True), False, "already"),
    ],
)
def test_approval_rules(case: str, view: approval.CsrView, approve: bool, reason_part: str) -> None:
    decision = approval.decide(view)
    assert decision.approve is approve, (case, decision.reason)
    assert reason_part in decision.reason, case


def test_our_csr_passes_the_approver() -> None:
    request = pki.node_csr_pem(pki.new_private_key(), "node-7")
    assert approval.decide(_view(request=request, username="system:node:node-7")).approve


@pytest.mark.parametrize(
    ("case", "obj", "state"),
    [
        ("new", {"status": {}}, "pending"),
        ("approved, not signed yet", {"status": {"conditions": [{"type": "Approved", "status": "True"}]}}, "pending"),
        (
            "issued",
            {
                "status": {
                    "conditions": [{"type": "Approved", "status": "True"}],
                    "certificate": base64.b64encode(b"C").decode(),
                }
            },
            "issued",
        ),
        ("denied", {"status": {"conditions": [{"type": "Denied", "status": "True", "reason": "No"}]}}, "denied"),
        ("failed to sign", {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}, "denied"),
    ],
)
def test_csr_outcome(case: str, obj: dict[str, object], state: str) -> None:
    assert csr_outcome(obj).state == state, case


# ---------------------------------------------------------------------- RBAC


def test_required_permissions_follow_the_configuration() -> None:
    base = rbac.required_permissions(per_node_certificate=False)
    full = rbac.required_permissions(
        per_node_certificate=True, delegate_namespace="kube-system", delegate_service_account="d"
    )
    described = {p.describe() for p in full}
    assert {
        "get pods (core)",
        "list pods (core)",
        "watch pods (core)",
        "patch pods/status (core)",
        "update pods/status (core)",
        "create events (core)",
        "patch events (core)",
        "list network-attachment-definitions (k8s.cni.cncf.io)",
        "create certificatesigningrequests (certificates.k8s.io)",
        "watch certificatesigningrequests (certificates.k8s.io)",
        "create serviceaccounts/token (core) named d in namespace kube-system",
    } <= described
    assert not any(p.resource in ("certificatesigningrequests", "serviceaccounts") for p in base)
    assert len(full) == len(base) + 4


def test_fix_rule_is_exact_yaml() -> None:
    assert rbac.fix_rule(rbac.Permission("update", "", "pods", "status")) == (
        '- apiGroups: [""]\n  resources: ["pods/status"]\n  verbs: ["update"]\n'
    )
    assert rbac.fix_rule(rbac.Permission("create", "", "serviceaccounts", "token", "kube-system", "d")) == (
        '- apiGroups: [""]\n  resources: ["serviceaccounts/token"]\n  resourceNames: ["d"]\n  verbs: ["create"]\n'
    )


@pytest.mark.parametrize(
    ("case", "rule", "perm", "allowed"),
    [
        ("exact", {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}, LIST_PODS, True),
        ("other verb", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, LIST_PODS, False),
        ("wildcards", {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, LIST_PODS, True),
        ("other group", {"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["list"]}, LIST_PODS, False),
        (
            "subresource needs its own entry",
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["update"]},
            rbac.Permission("update", "", "pods", "status"),
            False,
        ),
        (
            "*/status",
            {"apiGroups": [""], "resources": ["*/status"], "verbs": ["update"]},
            rbac.Permission("update", "", "pods", "status"),
            True,
        ),
        (
            "resourceNames restrict",
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"], "resourceNames": ["x"]},
            rbac.Permission("create", "", "serviceaccounts", "token", "ns", "d"),
            False,
        ),
    ],
)
def test_rule_allows(case: str, rule: dict[str, list[str]], perm: rbac.Permission, allowed: bool) -> None:
    assert rbac.rule_allows(rule, perm) is allowed, case


def test_cluster_role_rules_grant_exactly_the_table() -> None:
    perms = rbac.required_permissions(per_node_certificate=True, delegate_namespace="ns", delegate_service_account="d")
    rules = rbac.cluster_role_rules(perms)
    assert rbac.missing_from_rules(rules, perms) == []
    without_list = [
        {**r, "verbs": [v for v in r["verbs"] if v != "list"]} if r["resources"] == ["pods"] else r for r in rules
    ]
    assert rbac.missing_from_rules(without_list, perms) == [LIST_PODS]
    assert rbac.missing_permissions(perms, {p: p != LIST_PODS for p in perms}) == [LIST_PODS]


# --------------------------------------------------------------- kubeconfig


def test_written_kubeconfigs_parse_back(tmp_path: Path) -> None:
    ep = kubeconfig.ApiEndpoint(
        "https://10.0.0.1:6443", b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "token.kc").write_text(kubeconfig.render_token_file(ep, "multus.token"))
    doc = kubeconfig.load(str(tmp_path / "token.kc"))
    assert kubeconfig.endpoint(doc, str(tmp_path)) == ep
    assert doc["users"][0]["user"] == {"tokenFile": "multus.token"}
    (tmp_path / "cert.kc").write_text(kubeconfig.render_client_certificate(ep, "current.pem", "current.pem"))
    assert kubeconfig.load(str(tmp_path / "cert.kc"))["users"][0]["user"] == {
        "client-certificate": "current.pem",
        "client-key": "current.pem",
    }


def _jwt(claims: dict[str, object]) -> str:
    def enc(part: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    return f"{enc({'alg': 'RS256'})}.{enc(claims)}.c2lnbmF0dXJlc2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("case", "token", "lifetime"),
    [
        ("bound token", _jwt({"iat": 100, "exp": 3700}), (100.0, 3700.0)),
        ("legacy token without exp", _jwt({"iat": 100}), (100.0, 0.0)),
        ("opaque token", "abcdef", (0.0, 0.0)),
        ("garbage", "a.b.c", (0.0, 0.0)),
    ],
)
def test_jwt_lifetime(case: str, token: str, lifetime: tuple[float, float]) -> None:
    assert kubeconfig.jwt_lifetime(token) == lifetime, case


@pytest.mark.parametrize(
    ("case", "raw", "environ", "in_pod", "expected"),
    [
        ("standalone", {"clusterDir": "/c"}, {}, False, ApiSource("standalone")),
        ("in a pod the cluster dir does not matter", {"clusterDir": "/c"}, {}, True, ApiSource("in-cluster")),
        (
            "KUBECONFIG wins over the file-backed cluster",
            {"clusterDir": "/c"},
            {"KUBECONFIG": "/k"},
            False,
            ApiSource("kubeconfig", "/k"),
        ),
        ("daemon-config kubeconfig", {"kubeconfig": "/k2"}, {}, False, ApiSource("kubeconfig", "/k2")),
        (
            "per-node certificate wins",
            {"perNodeCertificate": {"enabled": True, "certDir": "/certs"}},
            {"KUBECONFIG": "/k"},
            True,
            ApiSource("per-node-certificate", "/certs/multus-client.kubeconfig"),
        ),
        ("nothing at all", {}, {}, False, ApiSource("in-cluster")),
    ],
)
def test_api_source(
    case: str, raw: dict[str, object], environ: dict[str, str], in_pod: bool, expected: ApiSource
) -> None:
    assert api_source(config_from_dict(raw), environ, in_pod) == expected, case
