"""Migration in place: attachments made by upstream Multus before the swap.

Upstream's daemon saves, at ADD, the pod's delegate list to `<cniDir>/<containerID>`
(a JSON list of DelegateNetConf: `Conf`, `ConfList`, `Name`, `ifnameRequest`,
..., `Bytes` = the delegate's config as base64), and libcni caches each
delegate's result in `<cniDir>/results/<network>-<containerID>-<ifname>`
(`{"kind": "cniCacheV1", "containerId", "ifName", "networkName", "config",
"cniArgs", "capabilityArgs", "result"}`). This module turns them into our
attachment records so DEL and CHECK work for those pods."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.gateway.records import AttachmentRecord, validate_container_id


def _delegate_config(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = entry.get("Bytes")
    if isinstance(raw, str) and raw:
        try:
            obj = json.loads(base64.b64decode(raw))
            if isinstance(obj, dict):
                return obj
        except (binascii.Error, ValueError):
            pass
    conf_list = entry.get("ConfList") or {}
    if isinstance(conf_list, dict) and conf_list.get("plugins"):
        return dict(conf_list)
    conf = entry.get("Conf") or {}
    if isinstance(conf, dict) and conf.get("type"):
        return dict(conf)
    return None


def _ifname(entry: Mapping[str, Any], index: int, runtime_ifname: str) -> str:
    requested = entry.get("ifnameRequest")
    if isinstance(requested, str) and requested:
        return requested
    return runtime_ifname if index == 0 else f"net{index}"


def libcni_cache_path(cni_dir: str, network_name: str, container_id: str, ifname: str) -> Path:
    return Path(cni_dir) / "results" / f"{network_name}-{container_id}-{ifname}"


def _libcni_cache(cni_dir: str, network_name: str, container_id: str, ifname: str) -> Mapping[str, Any]:
    try:
        obj = json.loads(libcni_cache_path(cni_dir, network_name, container_id, ifname).read_bytes())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def read_upstream_attachments(
    cni_dir: str,
    container_id: str,
    netns: str,
    runtime_ifname: str,
    *,
    cni_version: str = "",
    cni_args: str = "",
) -> list[AttachmentRecord]:
    """Records for a container upstream Multus attached; empty when there is no scratch file.
    As upstream's CmdDel: a conflist without cniVersion takes the Multus config's
    (`cni_version`), and a delegate without libcni's cached CNI_ARGS gets the pod's
    (`cni_args`) as upstream rebuilds them for every DEL."""
    validate_container_id(container_id)
    path = Path(cni_dir) / container_id
    try:
        entries = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    records = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        config = _delegate_config(entry)
        if config is None:
            continue
        if cni_version and not config.get("type") and not config.get("cniVersion"):
            config["cniVersion"] = cni_version
        ifname = _ifname(entry, index, runtime_ifname)
        conf_name = str(config.get("name") or "")
        cached = _libcni_cache(cni_dir, conf_name, container_id, ifname)
        caps = cached.get("capabilityArgs")
        args = cached.get("cniArgs")
        result = cached.get("result")
        records.append(
            AttachmentRecord(
                container_id=container_id,
                ifname=ifname,
                index=index,
                netns=netns,
                network_name=str(entry.get("Name") or conf_name),
                config=config,
                capability_args=caps if isinstance(caps, dict) else {},
                cni_args=";".join(f"{k}={v}" for k, v in args) if isinstance(args, list) and args else cni_args,
                master=index == 0,
                state="added",
                result=result if isinstance(result, dict) else None,
                origin="upstream",
            )
        )
    return records


def forget_upstream_attachments(cni_dir: str, records: list[AttachmentRecord]) -> None:
    """Remove upstream's scratch file and libcni result caches once the pod is torn down."""
    for record in records:
        with contextlib.suppress(OSError):
            name = str(record.config.get("name") or "")
            libcni_cache_path(cni_dir, name, record.container_id, record.ifname).unlink()
    if records:
        with contextlib.suppress(OSError):
            os.unlink(Path(cni_dir) / records[0].container_id)
