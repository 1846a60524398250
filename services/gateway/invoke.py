"""Calling one network's plugins with libcni's semantics: per-plugin stdin
(name, cniVersion, runtimeConfig filtered by the plugin's capabilities,
prevResult), conflist chaining for ADD, reverse order for DEL, CHECK with the
stored result, STATUS/GC per CNI 1.1, and skipping plugins that do not support
a verb. The stdin builders are pure; `NetworkInvoker` does the calls through a
`PluginRunner` (the executor), several networks' plugins in one round trip
where no plugin's stdin depends on another's result (ADD of single-plugin
networks, every DEL)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.common import cni
from services.gateway.result import to_version, version_at_least

VALID_ATTACHMENTS_KEY = "cni.dev/valid-attachments"


@dataclass(frozen=True)
class Target:
    """Where a network is attached: the CNI runtime arguments for its plugins."""

    container_id: str
    netns: str
    ifname: str
    cni_args: str


@dataclass(frozen=True)
class PluginCall:
    """One plugin to run, its stdin built."""

    plugin: str
    command: str
    target: Target
    stdin: bytes


Outcome = bytes | cni.CniError  # a plugin's stdout, or its failure


class PluginRunner(Protocol):
    async def run(self, plugin: str, command: str, target: Target, stdin: bytes) -> bytes:
        """Run one plugin; returns its stdout; raises CniError with the plugin's code on failure."""
        ...

    async def run_all(self, calls: Sequence[PluginCall], *, stop_at_failure: bool) -> list[Outcome]:
        """Run `calls` one after another in one round trip: an outcome per call that ran
        (with `stop_at_failure`, none after the first failure). Raises CniError when the
        calls could not be run at all (no executor)."""
        ...


async def run_one_by_one(runner: PluginRunner, calls: Sequence[PluginCall], *, stop_at_failure: bool) -> list[Outcome]:
    """run_all's semantics over run(), for runners without a batch transport."""
    outcomes: list[Outcome] = []
    for call in calls:
        try:
            outcomes.append(await runner.run(call.plugin, call.command, call.target, call.stdin))
        except cni.CniError as err:
            outcomes.append(err)
            if stop_at_failure:
                break
    return outcomes


def plugin_confs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The plugin configs of a conf (itself) or a conflist (each plugin with the list's name/version)."""
    if config.get("type"):
        return [dict(config)]
    out = []
    for plugin in config.get("plugins") or []:
        conf = dict(plugin)
        conf["name"] = config.get("name", "")
        conf["cniVersion"] = config.get("cniVersion", "")
        out.append(conf)
    return out


def filtered_runtime_config(conf: Mapping[str, Any], capability_args: Mapping[str, Any]) -> dict[str, Any]:
    caps = conf.get("capabilities")
    if not isinstance(caps, dict):
        return {}
    return {name: capability_args[name] for name, on in caps.items() if on is True and name in capability_args}


def plugin_stdin(
    conf: Mapping[str, Any],
    capability_args: Mapping[str, Any],
    prev_result: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    stdin = dict(conf)
    runtime_config = filtered_runtime_config(conf, capability_args)
    if runtime_config:
        stdin["runtimeConfig"] = runtime_config
    # else: as libcni, a runtimeConfig written in the config itself stays as it is
    if prev_result is not None:
        stdin["prevResult"] = to_version(prev_result, str(conf.get("cniVersion") or ""))
    if extra:
        stdin.update(extra)
    return stdin


def _encode(stdin: Mapping[str, Any]) -> bytes:
    return json.dumps(stdin, separators=(",", ":")).encode()


def _parse_result(stdout: bytes, plugin: str) -> dict[str, Any] | None:
    text = stdout.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise cni.CniError(cni.DECODE_FAILURE, f"plugin {plugin!r} returned an invalid result", str(exc)[:512]) from exc
    if not isinstance(obj, dict):
        raise cni.CniError(cni.DECODE_FAILURE, f"plugin {plugin!r} returned an invalid result", "not an object")
    return obj


class NetworkInvoker:
    """Runs the plugins of one network (conf or conflist) for a verb."""

    def __init__(self, runner: PluginRunner) -> None:
        self._runner = runner
        self._versions: dict[str, tuple[str, ...]] = {}

    async def add(
        self, config: Mapping[str, Any], target: Target, capability_args: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        prev: dict[str, Any] | None = None
        for conf in plugin_confs(config):
            plugin = str(conf["type"])
            stdin = plugin_stdin(conf, capability_args, prev)
            out = await self._runner.run(plugin, "ADD", target, _encode(stdin))
            result = _parse_result(out, plugin)
            if result is not None:
                prev = result
        return prev

    def single_add(
        self, config: Mapping[str, Any], target: Target, capability_args: Mapping[str, Any]
    ) -> PluginCall | None:
        """The ADD of a network with one plugin (nothing chained); None for a chain."""
        confs = plugin_confs(config)
        if len(confs) != 1:
            return None
        return PluginCall(str(confs[0]["type"]), "ADD", target, _encode(plugin_stdin(confs[0], capability_args)))

    async def add_each(self, calls: Sequence[PluginCall]) -> list[dict[str, Any] | cni.CniError | None]:
        """ADD single-plugin networks (single_add) in order in one round trip, stopping
        at the first failure: per network that ran, its result or its failure (an
        invalid result counts as a failure, but the networks after it did run)."""
        outcomes = await self._runner.run_all(calls, stop_at_failure=True)
        results: list[dict[str, Any] | cni.CniError | None] = []
        for call, outcome in zip(calls, outcomes, strict=False):
            if isinstance(outcome, cni.CniError):
                results.append(outcome)
                continue
            try:
                results.append(_parse_result(outcome, call.plugin))
            except cni.CniError as err:
                results.append(err)
        return results

    def delete_calls(
        self,
        config: Mapping[str, Any],
        target: Target,
        capability_args: Mapping[str, Any],
        prev_result: Mapping[str, Any] | None,
    ) -> list[PluginCall]:
        """DEL of every plugin of a network, in reverse, each with the stored result."""
        version = str(config.get("cniVersion") or "")
        try:
            prev = prev_result if version_at_least(version, "0.4.0") else None
        except cni.CniError:  # a record from before versions were checked at ADD: DEL must still run
            prev = None
        return [
            PluginCall(str(conf["type"]), "DEL", target, _encode(plugin_stdin(conf, capability_args, prev)))
            for conf in reversed(plugin_confs(config))
        ]

    async def delete(
        self,
        config: Mapping[str, Any],
        target: Target,
        capability_args: Mapping[str, Any],
        prev_result: Mapping[str, Any] | None,
    ) -> None:
        """DEL every plugin in reverse; keeps going on error and raises the first one."""
        (failure,) = await self.delete_each([self.delete_calls(config, target, capability_args, prev_result)])
        if failure is not None:
            raise failure

    async def delete_each(self, networks: Sequence[Sequence[PluginCall]]) -> list[cni.CniError | None]:
        """DEL several networks (delete_calls each) in order in one round trip, going on
        past failures: per network, its first failure or None."""
        flat = [call for calls in networks for call in calls]
        outcomes = await self._runner.run_all(flat, stop_at_failure=False)
        failures: list[cni.CniError | None] = []
        position = 0
        for calls in networks:
            mine = outcomes[position : position + len(calls)]
            position += len(calls)
            failures.append(next((o for o in mine if isinstance(o, cni.CniError)), None))
        return failures

    async def check(
        self,
        config: Mapping[str, Any],
        target: Target,
        capability_args: Mapping[str, Any],
        prev_result: Mapping[str, Any] | None,
    ) -> bool:
        """CHECK every plugin in order; False when the config's version predates CHECK (skipped)."""
        version = str(config.get("cniVersion") or "")
        if not version_at_least(version, "0.4.0") or config.get("disableCheck") is True:
            return False
        if prev_result is None:
            raise cni.CniError(
                cni.UNKNOWN_CONTAINER, "no stored result to CHECK against", f"network {config.get('name')!r}"
            )
        for conf in plugin_confs(config):
            stdin = plugin_stdin(conf, capability_args, prev_result)
            await self._runner.run(str(conf["type"]), "CHECK", target, _encode(stdin))
        return True

    async def supports(self, conf: Mapping[str, Any], verb_version: str) -> bool:
        """Whether this plugin config may get a verb introduced in `verb_version` (1.1.0 for
        STATUS/GC): its cniVersion must be new enough and the plugin must say it speaks it."""
        version = str(conf.get("cniVersion") or "")
        if not version_at_least(version, verb_version):
            return False
        plugin = str(conf["type"])
        if plugin not in self._versions:
            # The spec's VERSION stdin is {"cniVersion"}; the whole config is a superset
            # plugins accept (skel reads only cniVersion) and lets test plugins vary.
            stdin = _encode(conf)
            try:
                out = await self._runner.run(plugin, "VERSION", Target("", "", "", ""), stdin)
                answer = json.loads(out or b"{}")
                supported = tuple(str(v) for v in answer.get("supportedVersions") or ())
            except (cni.CniError, ValueError, AttributeError):
                supported = ()
            self._versions[plugin] = supported
        return any(version_at_least(v, verb_version) for v in self._versions[plugin])

    async def status(self, config: Mapping[str, Any]) -> int:
        """STATUS for each plugin that supports it; returns how many were asked."""
        asked = 0
        for conf in plugin_confs(config):
            if await self.supports(conf, "1.1.0"):
                await self._runner.run(str(conf["type"]), "STATUS", Target("", "", "", ""), _encode(conf))
                asked += 1
        return asked

    async def gc(self, config: Mapping[str, Any], valid: Sequence[Mapping[str, str]]) -> int:
        """GC for each plugin that supports it, telling it which attachments are still valid."""
        asked = 0
        for conf in plugin_confs(config):
            if await self.supports(conf, "1.1.0"):
                stdin = plugin_stdin(conf, {}, None, {VALID_ATTACHMENTS_KEY: [dict(v) for v in valid]})
                await self._runner.run(str(conf["type"]), "GC", Target("", "", "", ""), _encode(stdin))
                asked += 1
        return asked
