"""The Kubernetes manifests: valid for their APIs, and consistent with what the
code serves and needs (ports, probes, entry points, paths, RBAC)."""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import pytest
import yaml

from compose.kubernetes import exec_probes
from services.certs import rbac
from services.common.config import SERVICES
from services.common.grpc_server import LIVENESS, OVERALL
from services.common.probe import build_parser, probe_target
from shim import install as shim_install
from tests.deploy.manifests import (
    EXEC_DAEMONSET,
    GRPC_DAEMONSET,
    Manifest,
    base_objects,
    console_scripts,
    daemon_config,
    deserialize,
    load,
    load_all,
    manifest_files,
    model_errors,
    model_name,
    one,
    service_of,
)

ALL = load_all()


def _pod_spec(manifest: Manifest) -> dict[str, Any]:
    return dict(manifest.obj["spec"]["template"]["spec"])


def _daemonset(path: Any = GRPC_DAEMONSET) -> dict[str, Any]:
    return one(load(path), "DaemonSet").obj


def _containers(ds: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in ds["spec"]["template"]["spec"]["containers"]}


def _volumes(ds: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}


def test_every_manifest_file_parses() -> None:
    assert manifest_files(), "no manifests found"
    for path in manifest_files():
        docs = load(path)
        assert docs, f"{path} holds no object"
        for m in docs:
            assert {"apiVersion", "kind", "metadata"} <= m.obj.keys(), str(m)


@pytest.mark.parametrize("manifest", ALL, ids=str)
def test_object_is_valid_for_its_model(manifest: Manifest) -> None:
    assert model_errors(manifest.obj, model_name(manifest.obj)) == []
    deserialize(manifest.obj)  # required fields and enums, by the client itself


def test_model_check_catches_mistakes() -> None:
    ds = _daemonset()
    broken = json.loads(json.dumps(ds))
    gateway = broken["spec"]["template"]["spec"]["containers"][0]
    gateway["readinessProbe"]["grpc"]["prot"] = 1
    gateway["resources"]["limits"] = ["cpu"]
    broken["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    errors = model_errors(broken, model_name(broken))
    assert any(e.endswith("grpc.prot: not a field of V1GRPCAction") for e in errors)
    assert any("resources.limits: expected a map" in e for e in errors)
    assert any("hostNetwork: expected bool" in e for e in errors)


def test_everything_lives_in_one_namespace_matching_the_config() -> None:
    cfg = daemon_config()
    namespace = one(ALL, "Namespace").name
    assert cfg.multus_namespace == namespace
    for m in ALL:
        if m.kind in ("Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            assert not m.namespace, str(m)
        else:
            assert m.namespace == namespace, str(m)


# --- DaemonSet ---------------------------------------------------------------------------------


def test_daemonset_runs_one_container_per_service() -> None:
    ds = _daemonset()
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    assert sorted(_containers(ds)) == sorted(f"multus-{s}" for s in SERVICES)
    scripts = console_scripts()
    for name, container in _containers(ds).items():
        command = container["command"]
        assert command[0] == name, "each container runs its service's own entry point"
        assert command[0] in scripts, f"{command[0]} is not a console script in pyproject.toml"
        assert command[1:] == ["--config", "/etc/multus/daemon-config.json"]
        resources = container["resources"]
        assert resources["requests"] and resources["limits"], name
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["MULTUS_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_entry_points_resolve_to_code() -> None:
    scripts = console_scripts()
    used = {c["command"][0] for m in ALL if m.kind in ("DaemonSet", "Deployment") for c in _all_containers(m)}
    for script in used & scripts.keys():
        module, _, func = scripts[script].partition(":")
        assert callable(getattr(importlib.import_module(module), func)), script


def _all_containers(m: Manifest) -> list[dict[str, Any]]:
    spec = _pod_spec(m)
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_command_exists() -> None:
    scripts = console_scripts()
    for m in ALL:
        if m.kind not in ("DaemonSet", "Deployment"):
            continue
        for c in _all_containers(m):
            command = c["command"]
            if command[:2] == ["python3", "-m"]:
                assert importlib.util.find_spec(command[2]) is not None, f"{m}: no module {command[2]}"
            elif command[0] == "sleep":
                assert command[1] == "infinity"
            else:
                assert command[0] in scripts, f"{m}: {command[0]} is not an entry point"


def test_only_the_executor_is_privileged() -> None:
    ds = _daemonset()
    for name, container in _containers(ds).items():
        privileged = bool(container.get("securityContext", {}).get("privileged"))
        assert privileged is (name == "multus-executor"), name
        if name != "multus-executor":
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_mount_propagation_as_upstream() -> None:
    ds = _daemonset()
    spec = ds["spec"]["template"]["spec"]
    volumes = _volumes(ds)
    bidirectional = []
    for container in [*spec["initContainers"], *spec["containers"]]:
        for mount in container["volumeMounts"]:
            if mount.get("mountPropagation") == "Bidirectional":
                bidirectional.append((container["name"], mount["name"]))
            host = volumes[mount["name"]].get("hostPath", {}).get("path")
            if host in ("/", "/run/netns", "/var/lib/kubelet"):
                assert mount.get("mountPropagation") == "HostToContainer", (container["name"], mount)
    # Only the init container's CNI bin mount, as upstream (and it is privileged, which Bidirectional needs).
    assert bidirectional == [("install-multus-shim", "cni-bin")]
    init = spec["initContainers"][0]
    assert init["securityContext"]["privileged"] is True


def test_gateway_cache_and_certs_run_as_their_own_non_root_uids() -> None:
    """The privilege split: only the executor is root; the others get no capability and
    share the sockets' group (grpcSocketGroup) as their primary group; the executor
    trusts the gateway's uid (gatewayUid) for node-changing calls."""
    cfg = daemon_config()
    ds = _daemonset()
    uids = {}
    for name, container in _containers(ds).items():
        ctx = container["securityContext"]
        if name == "multus-executor":
            assert "runAsUser" not in ctx
            continue
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] >= 1000, name
        assert str(ctx["runAsGroup"]) == cfg.grpc_socket_group, name
        assert ctx["capabilities"] == {"drop": ["ALL"]}, name
        uids[name] = ctx["runAsUser"]
    assert len(set(uids.values())) == 3
    assert uids["multus-gateway"] == cfg.gateway_uid


def test_prepare_node_mounts_every_path_it_prepares_and_matches_the_uids() -> None:
    from compose.prepare_node import Identities, prepare_plan

    ds = _daemonset()
    spec = ds["spec"]["template"]["spec"]
    prepare = next(c for c in spec["initContainers"] if c["name"] == "prepare-node")
    assert prepare["command"][0] == "multus-prepare-node"
    assert prepare["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert not prepare["securityContext"].get("privileged")
    containers = _containers(ds)
    ids = Identities(
        gateway=containers["multus-gateway"]["securityContext"]["runAsUser"],
        cache=containers["multus-cache"]["securityContext"]["runAsUser"],
        certs=containers["multus-certs"]["securityContext"]["runAsUser"],
        group=int(daemon_config().grpc_socket_group),
    )
    assert ids == Identities()  # the defaults of multus-prepare-node are the manifests' uids
    for step in prepare_plan(daemon_config(), ids):
        mount = _covered(prepare, step.path)
        assert mount is not None and not mount.get("readOnly"), step.path


def test_init_container_installs_the_shim_into_the_host_cni_bin_dir() -> None:
    ds = _daemonset()
    spec = ds["spec"]["template"]["spec"]
    init = spec["initContainers"][0]
    assert init["command"][0] == "multus-install-shim"
    args = shim_install.parse_args(init["command"][1:])
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    volumes = _volumes(ds)
    assert volumes[mounts[str(args.cni_bin_dir)]]["hostPath"]["path"] == "/opt/cni/bin"
    assert volumes[mounts[str(args.host_root)]]["hostPath"]["path"] == "/"
    assert os.path.isabs(args.interpreter)


def _covered(container: dict[str, Any], path: str) -> dict[str, Any] | None:
    best = None
    for mount in container["volumeMounts"]:
        mount_path = mount["mountPath"].rstrip("/")
        inside = path.rstrip("/") == mount_path or path.startswith(mount_path + "/")
        if inside and (best is None or len(mount_path) > len(best["mountPath"].rstrip("/"))):
            best = mount
    return best


def test_every_path_a_service_uses_is_mounted_from_the_same_host_path() -> None:
    """Host paths sit at the same paths in the containers, so paths written into
    files (clusterNetwork, the delegate kubeconfig, daemonSocketDir) hold on the host too."""
    cfg = daemon_config()
    ds = _daemonset()
    containers = _containers(ds)
    volumes = _volumes(ds)
    needs: dict[str, list[tuple[str, bool]]] = {
        "gateway": [
            (cfg.cni_config_dir, True),
            (cfg.autoconfig_dir, False),
            (cfg.conf_dir, False),
            (cfg.cni_dir, True),
            (cfg.socket_dir, True),
            (cfg.run_dir, True),
        ],
        "cache": [(cfg.run_dir, True), (cfg.per_node_certificate.cert_dir, False)],
        "executor": [(cfg.run_dir, True), *((d, False) for d in cfg.bin_dirs), (cfg.chroot_dir, True)],
        "certs": [
            (cfg.run_dir, True),
            (os.path.dirname(cfg.delegate_kubeconfig_path), True),
            (cfg.per_node_certificate.cert_dir, True),
            (cfg.per_node_certificate.bootstrap_kubeconfig, False),
        ],
    }
    for service, paths in needs.items():
        container = containers[f"multus-{service}"]
        for path, writable in paths:
            mount = _covered(container, path)
            assert mount is not None, f"{service} needs {path}"
            assert not (writable and mount.get("readOnly")), f"{service} writes {path}"
            host = volumes[mount["name"]]["hostPath"]["path"]
            if path != cfg.chroot_dir:
                assert host.rstrip("/") == mount["mountPath"].rstrip("/"), f"{path}: host {host} != {mount}"
    config_mount = _covered(containers["multus-gateway"], "/etc/multus/daemon-config.json")
    assert config_mount is not None and volumes[config_mount["name"]]["configMap"]["name"] == "multus-daemon-config"


# --- probes ------------------------------------------------------------------------------------


def test_native_grpc_probes_hit_each_services_health_port() -> None:
    cfg = daemon_config()
    ports_seen: list[int] = []
    for name, container in _containers(_daemonset()).items():
        service = service_of(container)
        ports = cfg.ports(service)
        assert ports.health_port and ports.metrics_port, f"servicePorts.{service} must set both ports"
        ready, live = container["readinessProbe"], container["livenessProbe"]
        assert ready["grpc"] == {"port": ports.health_port}, name  # service "" = overall readiness
        assert live["grpc"] == {"port": ports.health_port, "service": LIVENESS}, name
        declared = {p["containerPort"] for p in container["ports"]}
        assert declared == {ports.health_port, ports.metrics_port}, name
        ports_seen += [ports.health_port, ports.metrics_port]
    assert len(ports_seen) == len(set(ports_seen)), "hostNetwork: every port must be distinct"


def test_exec_probe_variant_is_generated_from_the_grpc_one() -> None:
    assert exec_probes.main(["--check"]) == 0, "run: python -m compose.kubernetes.exec_probes"
    grpc_ds, exec_ds = _daemonset(GRPC_DAEMONSET), _daemonset(EXEC_DAEMONSET)

    def strip(ds: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in c.items() if k not in ("readinessProbe", "livenessProbe")}
            for c in ds["spec"]["template"]["spec"]["containers"]
        ]

    assert strip(grpc_ds) == strip(exec_ds)
    assert {k: v for k, v in grpc_ds["spec"]["template"]["spec"].items() if k != "containers"} == {
        k: v for k, v in exec_ds["spec"]["template"]["spec"].items() if k != "containers"
    }


def test_exec_probes_ask_the_same_port_and_health_name() -> None:
    cfg = daemon_config()
    grpc_containers = _containers(_daemonset(GRPC_DAEMONSET))
    for name, container in _containers(_daemonset(EXEC_DAEMONSET)).items():
        for kind in ("readinessProbe", "livenessProbe"):
            probe, native = container[kind], grpc_containers[name][kind]
            assert "grpc" not in probe
            command = probe["exec"]["command"]
            assert command[0] in console_scripts()
            args = build_parser().parse_args(command[1:])
            assert args.config == "/etc/multus/daemon-config.json" and args.service == service_of(container)
            target = probe_target(cfg, args.service, liveness=args.liveness, unix=args.unix)
            assert target.address == f"127.0.0.1:{native['grpc']['port']}"
            assert target.health_service == native["grpc"].get("service", OVERALL)
            assert {k: v for k, v in probe.items() if k != "exec"} == {k: v for k, v in native.items() if k != "grpc"}


# --- RBAC --------------------------------------------------------------------------------------


def _rules_for(subject: dict[str, str], namespace: str) -> list[dict[str, Any]]:
    """Rules granted to `subject` in `namespace` by the manifests' bindings."""

    def matches(s: dict[str, Any]) -> bool:
        same = s["kind"] == subject["kind"] and s["name"] == subject["name"]
        return bool(same and (s["kind"] != "ServiceAccount" or s["namespace"] == subject["namespace"]))

    rules: list[dict[str, Any]] = []
    for binding in ALL:
        if binding.kind not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if binding.kind == "RoleBinding" and binding.namespace != namespace:
            continue
        if not any(matches(s) for s in binding.obj["subjects"]):
            continue
        ref = binding.obj["roleRef"]
        role = one(ALL, ref["kind"], ref["name"])
        rules.extend(role.obj["rules"])
    return rules


def _node_permissions() -> tuple[rbac.Permission, ...]:
    cfg = daemon_config()
    return rbac.required_permissions(
        per_node_certificate=True,
        delegate_namespace=cfg.multus_namespace,
        delegate_service_account=cfg.delegate_service_account,
    )


NODE_SUBJECTS = [
    {"kind": "ServiceAccount", "name": "multus", "namespace": "multus-system"},
    {"kind": "Group", "name": "system:multus"},  # perNodeCertificate identities
]


@pytest.mark.parametrize("subject", NODE_SUBJECTS, ids=lambda s: s["name"])
def test_node_identity_has_every_permission_the_preflight_checks(subject: dict[str, str]) -> None:
    permissions = _node_permissions()
    assert {r.permission.verb for r in rbac.REQUIRED_PERMISSIONS} <= {p.verb for p in permissions}
    for perm in permissions:
        rules = _rules_for(subject, perm.namespace or "multus-system")
        # cluster-wide permissions must come from ClusterRoleBindings, not a namespace's RoleBinding
        if not perm.namespace:
            rules = _rules_for(subject, "")
        assert rbac.missing_from_rules(rules, [perm]) == [], f"{subject['name']} lacks {perm.describe()}"


def test_node_roles_grant_nothing_beyond_the_preflight_list() -> None:
    """Least privilege: every verb on every resource granted to the node identity is one the code uses."""
    required = {(p.group, p.full_resource, p.verb, p.name) for p in _node_permissions()}
    for subject in NODE_SUBJECTS:
        for rule in _rules_for(subject, "multus-system"):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        names = rule.get("resourceNames") or [""]
                        for name in names:
                            assert (group, resource, verb, name) in required, f"unneeded grant: {rule}"


def test_no_wildcards_anywhere() -> None:
    for m in ALL:
        for rule in m.obj.get("rules", []) if m.kind in ("ClusterRole", "Role") else []:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), f"{m}: wildcard in {key}"


def test_delegate_service_account_exists_where_certs_requests_its_token() -> None:
    cfg = daemon_config()
    sa = one(ALL, "ServiceAccount", cfg.delegate_service_account)
    assert sa.namespace == cfg.multus_namespace
    ds = one(base_objects() + load(GRPC_DAEMONSET), "DaemonSet", "multus")
    assert ds.obj["spec"]["template"]["spec"]["serviceAccountName"] == "multus"


def test_approver_runs_the_certs_approve_mode() -> None:
    deployment = one(ALL, "Deployment", "multus-approver")
    (container,) = _pod_spec(deployment)["containers"]
    assert container["command"] == ["python3", "-m", "services.certs", "approve"]
    from services.certs import approver

    assert callable(approver.main)
    sa = _pod_spec(deployment)["serviceAccountName"]
    rules = _rules_for({"kind": "ServiceAccount", "name": sa, "namespace": deployment.namespace}, "")
    wanted = [
        rbac.Permission("list", "certificates.k8s.io", "certificatesigningrequests"),
        rbac.Permission("watch", "certificates.k8s.io", "certificatesigningrequests"),
        rbac.Permission("get", "certificates.k8s.io", "certificatesigningrequests"),
        rbac.Permission("update", "certificates.k8s.io", "certificatesigningrequests", "approval"),
        rbac.Permission("approve", "certificates.k8s.io", "signers", name=approver_signer()),
    ]
    assert rbac.missing_from_rules(rules, wanted) == []


def approver_signer() -> str:
    from services.certs.approval import SIGNER

    return SIGNER


def test_crd_is_the_nad_crd_the_cache_reads() -> None:
    crd = one(ALL, "CustomResourceDefinition").obj
    assert crd["spec"]["group"] == "k8s.cni.cncf.io"
    assert crd["spec"]["names"]["plural"] == "network-attachment-definitions"
    node_nad = [p for p in _node_permissions() if p.group == "k8s.cni.cncf.io"]
    assert node_nad and all(p.resource == crd["spec"]["names"]["plural"] for p in node_nad)


def test_configmap_is_a_valid_daemon_config() -> None:
    raw = yaml.safe_load(one(ALL, "ConfigMap").obj["data"]["daemon-config.json"])
    cfg = daemon_config()
    assert cfg.multus_config_file == "auto" and cfg.chroot_dir == "/hostroot"
    assert set(raw["servicePorts"]) == set(SERVICES)
