#!/usr/bin/env python3
"""A CNI test plugin of our own (stdlib only), in the spirit of the reference
plugins' `noop`: it records every call and misbehaves on demand.

Keys read from its network config (stdin):
  recordDir      append one JSON line per call to <recordDir>/calls.jsonl
                 ({"command", "env": {CNI_*...}, "stdin": <parsed config>, "pid", "ppid", "time"})
  failOn         {"ADD": {"code": 7, "msg": "...", "details": "..."}} fail a verb
  exitOn         {"ADD": 3}: exit with this status after printing nothing
  sleep          {"ADD": 2.5}: sleep seconds before answering
  hugeOutput     print this many bytes of garbage to stdout instead of a result
  spawnChild     {"ADD": 30}: start a grandchild that sleeps this long (to test process-group kills);
                 with recordDir, its pid is appended to <recordDir>/children.jsonl
  recordFullEnv  true: record the whole environment, not only CNI_* and KUBECONFIG
  stderr         write this text to stderr before answering
  ip             address (CIDR) for the fabricated ADD result (default 10.99.0.2/24)
  supportedVersions  list answered to VERSION (default 0.3.0 .. 1.1.0)
  deviceInfo     on ADD, write this object to runtimeConfig.CNIDeviceInfoFile unless that
                 file already exists (as SR-IOV CNI does under the device-info spec)
Without failures it answers ADD with a result (passing prevResult through when
chained), and CHECK/DEL/STATUS/GC with nothing.
"""

import json
import os
import subprocess
import sys
import time

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    raw = sys.stdin.read()
    try:
        conf = json.loads(raw) if raw.strip() else {}
    except ValueError:
        print(json.dumps({"cniVersion": "1.0.0", "code": 6, "msg": "recorder: invalid JSON on stdin"}))
        return 1
    version = conf.get("cniVersion", "1.0.0")
    record_dir = conf.get("recordDir")
    if record_dir:
        env = {k: v for k, v in os.environ.items() if k.startswith("CNI_") or k == "KUBECONFIG"}
        if conf.get("recordFullEnv"):
            env = dict(os.environ)
        line = json.dumps(
            {
                "command": command,
                "env": env,
                "stdin": conf,
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "time": time.time(),
            }
        )
        with open(os.path.join(record_dir, "calls.jsonl"), "a") as out:
            out.write(line + "\n")
    spawn = conf.get("spawnChild", {}).get(command)
    if spawn:
        child = subprocess.Popen(["sleep", str(spawn)])
        if record_dir:
            with open(os.path.join(record_dir, "children.jsonl"), "a") as out:
                out.write(json.dumps({"command": command, "pid": child.pid, "parent": os.getpid()}) + "\n")
    if conf.get("stderr"):
        sys.stderr.write(str(conf["stderr"]))
        sys.stderr.flush()
    delay = conf.get("sleep", {}).get(command)
    if delay:
        time.sleep(float(delay))
    if command == "VERSION":
        print(json.dumps({"cniVersion": version, "supportedVersions": conf.get("supportedVersions", VERSIONS)}))
        return 0
    exit_status = conf.get("exitOn", {}).get(command)
    if exit_status is not None:
        return int(exit_status)
    failure = conf.get("failOn", {}).get(command)
    if failure:
        err = {"cniVersion": version, "code": failure.get("code", 100), "msg": failure.get("msg", "recorder failure")}
        if failure.get("details"):
            err["details"] = failure["details"]
        print(json.dumps(err))
        return 1
    huge = conf.get("hugeOutput")
    if huge:
        sys.stdout.write("x" * int(huge))
        return 0
    if command == "ADD":
        info_file = (conf.get("runtimeConfig") or {}).get("CNIDeviceInfoFile")
        if conf.get("deviceInfo") and info_file and not os.path.exists(info_file):
            os.makedirs(os.path.dirname(info_file), exist_ok=True)
            with open(info_file, "w") as out:
                out.write(json.dumps(conf["deviceInfo"]))
        prev = conf.get("prevResult")
        if prev:
            print(json.dumps(prev))
            return 0
        ifname = os.environ.get("CNI_IFNAME", "eth0")
        result = {
            "cniVersion": version,
            "interfaces": [{"name": ifname, "mac": "0a:58:0a:63:00:02", "sandbox": os.environ.get("CNI_NETNS", "")}],
            "ips": [{"address": conf.get("ip", "10.99.0.2/24"), "interface": 0}],
            "dns": {},
        }
        if version.startswith("0.3") or version.startswith("0.4"):
            result["ips"][0]["version"] = "4"
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
