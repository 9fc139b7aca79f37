"""Load test of `lightft serve` on loopback: concurrent clients, mixed adapters and text lengths.

Starts `lightft serve` with the given runs on 127.0.0.1, waits for /healthz, then CLIENTS threads each send
REQUESTS requests (one text each, a random adapter, a random slice of a BBC test article). Prints
throughput, latency p50/p95/p99, the error count (must be 0) and the server's RSS before and after (growth
must stay under 10%). Traffic goes to 127.0.0.1 only and the loop is bounded in count and time.

    .venv/bin/python bench/serve_load.py news=runs/bench-lightft small=runs/bbc-small
(runs/bench-lightft comes from bench/recipe_vs_lightft.py; any complete LoRA runs on one base model do.)
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="name=RUN_DIR for each adapter (one base model)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import httpx

    from lightft.config import load_run_config
    from lightft.data import load_splits

    names = [spec.partition("=")[0] for spec in args.runs]
    first = args.runs[0].partition("=")[2] or args.runs[0]
    cfg = load_run_config(first)
    texts = load_splits(cfg.data, cfg.seed).test.texts
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "lightft", "serve", *args.runs, "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {server.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise SystemExit("server did not start in 300 s")
            time.sleep(0.5)
        # Warm-up, then the RSS the load is compared against.
        for name in names:
            httpx.post(f"{base}/v1/classify", json={"adapter": name, "texts": texts[:4]}, timeout=120)
        rss_before = rss_mib(server.pid)
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client(k: int) -> None:
            rng = random.Random(args.seed + k)
            with httpx.Client(timeout=120) as http:
                for _ in range(args.requests):
                    text = rng.choice(texts)
                    text = text[: rng.randint(40, min(len(text), 4000))]
                    start = time.perf_counter()
                    try:
                        r = http.post(f"{base}/v1/classify", json={"adapter": rng.choice(names), "texts": [text]})
                        ok = r.status_code == 200
                        reason = f"HTTP {r.status_code}: {r.text[:200]}"
                    except httpx.HTTPError as exc:
                        ok, reason = False, repr(exc)
                    with lock:
                        latencies.append(time.perf_counter() - start)
                        if not ok:
                            errors.append(reason)

        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        rss_after = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    q = statistics.quantiles(latencies, n=100)
    total = len(latencies)
    growth = (rss_after - rss_before) / rss_before
    print(f"{args.clients} clients x {args.requests} requests, adapters {', '.join(names)}, on {base}")
    print(f"throughput {total / wall:.1f} requests/s ({total} in {wall:.1f} s)")
    print(f"latency p50 {1000 * q[49]:.0f} ms, p95 {1000 * q[94]:.0f} ms, p99 {1000 * q[98]:.0f} ms")
    print(f"errors {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    print(f"server RSS before {rss_before:.0f} MiB, after {rss_after:.0f} MiB ({growth:+.1%})")
    print(f"requests_per_second={total / wall:.1f} errors={len(errors)} rss_growth={growth:.3f}")


if __name__ == "__main__":
    main()
