"""Run one service with wall-clock spans around the calls a CNI request goes
through, for profiling only (`python -m bench.node_cost.profile` starts the
services this way; the product is not changed): every span is one JSON line
{"svc", "name", "t0" (ns since the epoch), "us"} in $MULTUS_TRACE_DIR/<service>.jsonl.
SIGUSR2 dumps what the process holds (modules, threads, gc counts) to
<service>.state.json, for the memory profile.

    python -m bench.node_cost.trace gateway --config <daemon-config.json>
    python -m bench.node_cost.trace supervisor --config ...   # the local supervisor, its services traced
"""

from __future__ import annotations

import functools
import gc
import importlib
import inspect
import json
import os
import runpy
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

# (module, class or None for a module attribute, names)
SPANS: dict[str, list[tuple[str, str | None, tuple[str, ...]]]] = {
    "gateway": [
        ("services.gateway.dispatch", "Dispatcher", ("cni",)),
        ("services.gateway.add", None, ("cmd_add", "attach_all", "write_network_status", "resolve_networks")),
        ("services.gateway.delete", None, ("cmd_del",)),
        ("services.gateway.core", "Core", ("get_pod", "netconf", "plan", "save", "load_records", "teardown")),
        ("services.gateway.resolver", "NetworkResolver", ("resolve", "nad_delegate", "cluster_delegates")),
        ("services.gateway.invoke", "NetworkInvoker", ("add", "delete")),
        ("services.gateway.records", "RecordStore", ("load", "save", "remove")),
        ("services.gateway.executor_client", "ExecutorClient", ("exec_plugin", "exec_plugins")),
        ("services.gateway.cache_client", "CacheClient", ("get_pod", "update_network_status", "emit_pod_event")),
        ("services.gateway.cache_client", "CacheClient", ("get_network_attachment_definition",)),
        ("services.gateway.http_api", None, ("decode_request_body",)),
    ],
    "cache": [
        ("services.cache.servicer", "CacheServicer", ("GetPod", "UpdateNetworkStatus", "EmitPodEvent")),
        ("services.cache.servicer", "CacheServicer", ("GetNetworkAttachmentDefinition",)),
        ("services.cache.kube_source", "KubeSource", ("_write_network_status", "_create_event", "_get_raw")),
        ("services.cache.kube_source", "KubeSource", ("_replace_network_status",)),
        ("services.cache.kube_source", None, ("send_json", "get_json")),
    ],
    "executor": [
        ("services.executor.servicer", "ExecutorServicer", ("ExecPlugin", "ExecPlugins")),
        ("services.executor.runner", "DelegateRunner", ("run", "_run_slot")),
        ("services.executor.runner", None, ("run_plugin_process",)),
    ],
    "certs": [],
}


class Spans:
    def __init__(self, service: str, path: str) -> None:
        self.service = service
        self._out = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self._lock = threading.Lock()

    def record(self, name: str, t0: int, t1: int) -> None:
        line = json.dumps({"svc": self.service, "name": name, "t0": t0, "us": (t1 - t0) // 1000})
        with self._lock:
            self._out.write(line + "\n")

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                t0 = time.time_ns()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.record(name, t0, time.time_ns())

            return timed_async

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.time_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                self.record(name, t0, time.time_ns())

        return timed


def install(service: str, spans: Spans) -> None:
    for module_name, class_name, names in SPANS[service]:
        module = importlib.import_module(module_name)
        owner: Any = getattr(module, class_name) if class_name else module
        for name in names:
            label = f"{class_name or module_name.rsplit('.', 1)[1]}.{name}"
            setattr(owner, name, spans.wrap(label, getattr(owner, name)))


def dump_state(path: str) -> None:
    """What the process holds: imported modules by top-level package, threads, gc counts."""
    by_package: dict[str, int] = {}
    for name in list(sys.modules):
        top = name.split(".", 1)[0]
        by_package[top] = by_package.get(top, 0) + 1
    state = {
        "modules": len(sys.modules),
        "by_package": dict(sorted(by_package.items(), key=lambda kv: -kv[1])),
        "module_names": sorted(sys.modules),
        "threads": [t.name for t in threading.enumerate()],
        "gc_objects": len(gc.get_objects()),
        "gc_counts": gc.get_count(),
    }
    with open(path, "w") as fh:
        json.dump(state, fh, indent=1)


def traced_argv(service: str, passthrough: Sequence[str], interpreter: str = "") -> list[str]:
    return [interpreter or sys.executable, "-m", "bench.node_cost.trace", service, *passthrough]


def main() -> None:
    service, rest = sys.argv[1], sys.argv[2:]
    if service == "supervisor":
        from compose import supervisor

        supervisor.service_argv = traced_argv
        sys.exit(supervisor.main(rest))
    out_dir = os.environ["MULTUS_TRACE_DIR"]
    install(service, Spans(service, os.path.join(out_dir, f"{service}.jsonl")))
    state_path = os.path.join(out_dir, f"{service}.state.json")
    signal.signal(signal.SIGUSR2, lambda *_: dump_state(state_path))
    sys.argv = [f"services.{service}", *rest]
    runpy.run_module(f"services.{service}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
