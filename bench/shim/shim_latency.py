"""Shim start-to-exit time against a trivial in-process unix-socket daemon, side by side.

Each round runs, in a shuffled order, the same number of times:
  bare        /usr/bin/python3 -IS -c pass      (the floor: interpreter start)
  version     installed shim, CNI VERSION       (start + shim load, no socket)
  del / add   installed shim, DEL / ADD         (+ /healthz or /readyz probe + POST /cni)
  add-source  /usr/bin/python3 -IS shim/multus_shim.py, ADD (no installed bytecode)
The daemon answers canned bytes from a thread, so what is measured is the shim.
Prints medians, p90 and the ratio of each to `bare`.

    .venv/bin/python -m bench.shim.shim_latency --rounds 200
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shim import install

PYTHON = "/usr/bin/python3"
ADD_RESULT = json.dumps(
    {
        "Result": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/bench"}],
            "ips": [{"interface": 0, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}],
            "dns": {},
        }
    }
).encode()


def http_answer(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class TrivialDaemon:
    """Answers every request on the socket at once: /readyz and /healthz 200, /cni a canned body."""

    def __init__(self, socket_path: Path) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(socket_path))
        self.listener.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length:
                    body += conn.recv(65536)
                is_add = head.startswith(b"POST /cni") and b'"CNI_COMMAND":"ADD"' in body
                conn.sendall(http_answer(ADD_RESULT if is_add else b""))

    def close(self) -> None:
        self.listener.close()


def timed(command: list[str], env: dict[str, str], stdin: bytes) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        proc = subprocess.run(command, input=stdin, env=env, capture_output=True)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{command}: {proc.stdout!r} {proc.stderr!r}")
        return elapsed

    return run


def cni_env(command: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "bench0123456789",
        "CNI_NETNS": "/var/run/netns/bench",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench;K8S_POD_UID=1",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="shimbench"))
    try:
        install.install(root / "bin", PYTHON)
        shim = str(root / "bin" / "multus-shim")
        socket_dir = root / "run"
        socket_dir.mkdir()
        daemon = TrivialDaemon(socket_dir / "multus.sock")
        conf = json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "multus-cni-network",
                "type": "multus-shim",
                "daemonSocketDir": str(socket_dir),
            }
        ).encode()
        runners = {
            "bare": timed([PYTHON, "-IS", "-c", "pass"], {}, b""),
            "version": timed([shim], {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}'),
            "del": timed([shim], cni_env("DEL"), conf),
            "add": timed([shim], cni_env("ADD"), conf),
            "add-source": timed([PYTHON, "-IS", str(install.SHIM_SOURCE)], cni_env("ADD"), conf),
        }
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for runner in runners.values():  # warm the page cache
            runner()
        order = list(runners)
        for _ in range(args.rounds):
            random.shuffle(order)
            for name in order:
                samples[name].append(runners[name]() * 1000)
        daemon.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # Shared, noisy machines: the minimum and p10 say what the code costs, the median what a busy node sees.
    bare_median, bare_min = statistics.median(samples["bare"]), min(samples["bare"])
    print(f"{args.rounds} rounds, shuffled; ratios against bare")
    print(f"{'case':<12}{'min ms':>8}{'p10 ms':>8}{'median ms':>11}{'p90 ms':>8}{'min x':>7}{'median x':>10}")
    for name, values in samples.items():
        ordered = sorted(values)
        p10, p90 = ordered[int(0.1 * (len(ordered) - 1))], ordered[int(0.9 * (len(ordered) - 1))]
        median = statistics.median(values)
        print(
            f"{name:<12}{ordered[0]:>8.2f}{p10:>8.2f}{median:>11.2f}{p90:>8.2f}"
            f"{ordered[0] / bare_min:>7.2f}{median / bare_median:>10.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
