"""Latency of vaelab-explore's decode round trip, the request a slider or the pad sends.

    python scripts/bench_explore.py --ckpt <run>/checkpoints/last.ckpt [--data-dir <folder>]

Starts the real command (vaelab-explore ... port=0) in a subprocess, sends
`--requests` decodes of random codes one at a time over one keep-alive connection (as the
page does: one request in flight), then from `--clients` threads at once, and prints latency
percentiles and requests/s; then the same decodes in this process without HTTP (the model's
decode and the PNG), and the ratio of the round trip to that baseline.
"""

import argparse
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import torch

from vaelab.configs import compose_config
from vaelab.explore.command import build_space
from vaelab.explore.images import png_data_url


def start_server(overrides: list[str]) -> tuple[subprocess.Popen, str]:
    command = ("import sys; sys.argv[0] = 'vaelab-explore'; "
               "from vaelab.cli import explore; explore()")  # the console script
    proc = subprocess.Popen([sys.executable, "-c", command, "port=0", *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        match = re.search(r"open (http://\S+) in a browser", line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain the rest
            return proc, match.group(1)
    raise SystemExit(f"vaelab-explore did not start (exit code {proc.wait()})")


def percentiles(seconds: list[float]) -> str:
    ms = sorted(1000 * s for s in seconds)
    at = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return (f"p50 {statistics.median(ms):.2f} ms, p90 {at(0.9):.2f}, p99 {at(0.99):.2f}, "
            f"max {ms[-1]:.2f}")


def codes(info: dict, n: int, seed: int) -> list[list[float]]:
    """n random codes inside the sliders' ranges."""
    g = torch.Generator().manual_seed(seed)
    low = torch.tensor([0.0] * info["latent_dim"])
    high = torch.tensor([0.0] * info["latent_dim"])
    for dim in info["dims"]:
        low[dim["index"]], high[dim["index"]] = dim["low"], dim["high"]
    return (low + (high - low) * torch.rand(n, len(low), generator=g)).tolist()


def one_at_a_time(url: str, zs: list[list[float]]) -> list[float]:
    times = []
    with httpx2.Client(base_url=url, timeout=30) as client:
        for z in zs:
            start = time.perf_counter()
            answer = client.post("api/decode", json={"z": z, "y": None})
            answer.raise_for_status()
            times.append(time.perf_counter() - start)
    return times


def at_once(url: str, zs: list[list[float]], clients: int) -> float:
    """Requests per second with `clients` connections sending at the same time."""
    chunks = [zs[i::clients] for i in range(clients)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda chunk: one_at_a_time(url, chunk), chunks))
    return len(zs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by vaelab-train")
    parser.add_argument("--data-dir", default=None, help="the data, if it moved since training")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--num-points", type=int, default=2000)
    args = parser.parse_args()
    overrides = [f"ckpt_path={args.ckpt}", f"num_points={args.num_points}"]
    if args.data_dir:
        overrides.append(f"data_dir={args.data_dir}")

    proc, url = start_server(overrides)
    try:
        info = httpx2.get(url + "api/info", timeout=60).json()
        if info["condition"] is not None:
            raise SystemExit("this benchmark sends unconditional codes: give an unconditional run")
        one_at_a_time(url, codes(info, 20, seed=1))  # warm-up
        zs = codes(info, args.requests, seed=0)
        latency = one_at_a_time(url, zs)
        parallel = at_once(url, zs, args.clients)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)

    cfg = compose_config("explore", overrides, "bench_explore")
    space, title = build_space(cfg)
    baseline = []
    for z in zs:
        start = time.perf_counter()
        png_data_url(space.decode(z, None))
        baseline.append(time.perf_counter() - start)

    shape = "x".join(map(str, info["image_shape"]))
    print(f"{title}: {info['latent_dim']}-D codes, images {shape}")
    print(f"decode round trip over HTTP, {len(zs)} requests one at a time: {percentiles(latency)}"
          f" -> {len(zs) / sum(latency):.0f} requests/s")
    print(f"{args.clients} clients at once: {parallel:.0f} requests/s")
    print(f"in this process, no HTTP (decode + PNG): {percentiles(baseline)}")
    print(f"round trip / in-process, medians: "
          f"{statistics.median(latency) / statistics.median(baseline):.1f}x")


if __name__ == "__main__":
    main()
