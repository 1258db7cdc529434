"""`:explain` over HTTP against the same calls in process: what serving costs.

    python benchmarks/bench_serve.py [--model lite0.sise.onnx] [--methods gradcam,ada-sise]
                                     [--clients 1,4,16] [--slots 2] [--threads 1] [--requests 16,4]

The server (`python -m onnx_sise serve`, a subprocess on a free local port, gRPC off) runs
`--slots` explanations at once with `--threads` onnxruntime threads each and a queue long
enough that nothing is refused. For each method and number of concurrent clients, every
client sends its share of the requests one after the other (coffee.png, base64 in the V1
body, the map back as a base64 16-bit PNG); latency is each request's round trip, from
send to parsed answer. In process, the same calls go to one Explainer with the same
threads, at most `--slots` at once (the server's admission), from the same number of
client threads; latency there is `explain()` alone. Ratios are HTTP / in process (p50
latency) and in process / HTTP (throughput): what the decoding, base64, JSON, PNG, HTTP
and queueing add. Prints the machine; appends the table and the command to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import skimage

import onnx_sise

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from bench_preparation import machine  # noqa: E402
from served import b64, start_server  # noqa: E402

PHOTO = Path(skimage.__file__).parent / "data" / "coffee.png"


def run_clients(clients: int, requests: int, call: Callable[[], None]) -> tuple[list[float], float]:
    """Per-request latencies and the wall time of `requests` calls from `clients` threads."""
    shares = [requests // clients + (i < requests % clients) for i in range(clients)]
    latencies: list[float] = []
    lock = threading.Lock()

    def client(share: int) -> None:
        for _ in range(share):
            start = time.perf_counter()
            call()
            with lock:
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, shares))
    return latencies, time.perf_counter() - start


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="explainable ONNX (default: Lite0, exported now)")
    parser.add_argument("--methods", default="gradcam,ada-sise")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--requests", default="16,4",
                        help="requests per method at the lowest concurrency, comma-separated as --methods; "
                             "at c clients max(c, that) requests")
    args = parser.parse_args()
    methods, levels = args.methods.split(","), [int(c) for c in args.clients.split(",")]
    base_requests = dict(zip(methods, (int(r) for r in args.requests.split(","))))
    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    model = args.model
    if model is None:
        from onnx_sise_export import export_zoo

        model = work / "lite0.sise.onnx"
        export_zoo("efficientnet-lite0", str(model))
    print(f"machine: {machine()}; slots {args.slots}, onnxruntime threads {args.threads} per explanation")
    server = start_server(model, work / "server.log", "--slots", str(args.slots), "--queue", "64", "--threads",
                          str(args.threads))
    explainer = onnx_sise.Explainer(model, threads=args.threads)
    admission = threading.Semaphore(args.slots)
    rows = []
    try:
        for method in methods:
            body = {"instances": [{"image_bytes": {"b64": b64(PHOTO)}}], "parameters": {"method": method}}
            client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64))

            def over_http() -> None:
                answer = client.post(f"{server.url}/v1/models/lite0:explain", json=body)
                answer.raise_for_status()
                answer.json()

            def in_process() -> None:
                with admission:
                    explainer.explain(PHOTO, method=method)  # decoded each call, as the server does

            over_http()  # warm both
            in_process()
            for clients in levels:
                requests = max(clients, base_requests.get(method, 4))
                http_lat, http_wall = run_clients(clients, requests, over_http)
                local_lat, local_wall = run_clients(clients, requests, in_process)
                row = (method, clients, requests, p(http_lat, 50), p(http_lat, 95), requests / http_wall,
                       p(local_lat, 50), p(local_lat, 95), requests / local_wall)
                rows.append(row)
                print(f"{method:9} {clients:2} clients {requests:3} requests | HTTP p50 {row[3]:.3f} s p95 "
                      f"{row[4]:.3f} s {row[5]:.2f}/s | in process p50 {row[6]:.3f} s p95 {row[7]:.3f} s "
                      f"{row[8]:.2f}/s | p50 x{row[3] / row[6]:.2f}, throughput x{row[8] / row[5]:.2f}",
                      flush=True)
            client.close()
    finally:
        server.stop()
    write_results(rows, args, " ".join(sys.argv[1:]))


def write_results(rows: list[tuple], args: argparse.Namespace, flags: str) -> None:
    lines = [
        "", "## Serving: `:explain` over HTTP against the same calls in process (bench_serve.py)", "",
        f"`python benchmarks/bench_serve.py {flags}`".replace(" `", "`"), "",
        f"Machine: {machine()}, shared with other jobs while it ran (figures are indicative). Server: "
        f"`python -m onnx_sise serve` with {args.slots} slots, {args.threads} onnxruntime thread(s) per "
        "explanation, gRPC off; coffee.png (600 x 400) as base64 in a V1 body, the map back as a base64 16-bit "
        f"PNG. In process: one Explainer, the same threads, at most {args.slots} calls at once. Latency: one "
        "request's round trip (HTTP) or explain() (in process). Ratios: HTTP p50 / in-process p50, and "
        "in-process throughput / HTTP throughput (1.00 = serving costs nothing).", "",
        "| method | clients | requests | HTTP p50 (s) | HTTP p95 (s) | HTTP req/s | in-process p50 (s) | "
        "in-process p95 (s) | in-process req/s | p50 ratio | throughput ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, clients, requests, hp50, hp95, hput, lp50, lp95, lput in rows:
        lines.append(f"| {method} | {clients} | {requests} | {hp50:.3f} | {hp95:.3f} | {hput:.2f} | {lp50:.3f} | "
                     f"{lp95:.3f} | {lput:.2f} | {hp50 / lp50:.2f} | {lput / hput:.2f} |")
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as results:
        results.write("\n".join(lines) + "\n")
    print("appended to benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
