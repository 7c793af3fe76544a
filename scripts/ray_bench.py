"""The app in one process against the Ray Serve app, under the same HTTP load (VQA with the bundled model).

    python scripts/ray_bench.py                          # 32 clients, 512 requests; Ray: 2 replicas of the model
    python scripts/ray_bench.py --clients 32 --requests 1024 --replicas 2 --single 100

Each app runs in its own processes (`python app.py`; a local Ray with the UI replica and the model's replicas), this
process only drives HTTP: `--clients` threads on Gradio's REST API (mmdemo.bench's driver), after a warm-up. Prints
throughput and p50/p95 latency under load, one client's latency on the same request (the per-request cost Ray adds),
and the batch sizes the model replicas saw.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from screenshot import free_port  # noqa: E402  (scripts/, beside this one)

from mmdemo.bench import _drive_http, _scenarios  # noqa: E402

MODEL = "mmdemo-vqa-easy"


def _wait_ready(url: str, timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready")


def measure(url: str, clients: int, requests: int, single: int) -> dict:
    """Throughput and latency with `clients` at once, then one client alone on one request."""
    s = _scenarios()["vqa"]()
    work = [s.inputs[i % len(s.inputs)] for i in range(requests)]
    server = (None, url)
    _drive_http(server, s, work[: 4 * clients], clients)  # warm-up: connections, uploads, first batches
    loaded = _drive_http(server, s, work, clients)
    alone = _drive_http(server, s, [s.inputs[0]] * single, 1)
    return {"load": loaded, "one_client": alone}


def single_process(args) -> dict:
    port, home = free_port(), tempfile.mkdtemp(prefix="mmdemo-bench-")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MMDEMO_FEEDBACK_DB": f"{home}/feedback.db"}
    with open(f"{home}/server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url)
            return measure(url, args.clients, args.requests, args.single)
        finally:
            server.terminate()
            server.wait(30)


def on_ray(args) -> dict:
    import ray
    from ray import serve

    from mmdemo.serving.ray_app import build_app

    home = tempfile.mkdtemp(prefix="mmdemo-bench-")
    env = {"HF_HUB_OFFLINE": "1", "MMDEMO_FEEDBACK_DB": f"{home}/feedback.db", "GRADIO_ANALYTICS_ENABLED": "False"}
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        model = {"num_replicas": args.replicas, "ray_actor_options": {"num_cpus": args.cpus / args.replicas}}
        app = build_app({"models": {MODEL: model}, "ui": {"ray_actor_options": {"num_cpus": 0}}})
        serve.run(app, name="mmdemo")
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url)
        out = measure(url, args.clients, args.requests, args.single)
        handle = serve.get_deployment_handle(MODEL, app_name="mmdemo")
        sizes = [handle.batch_sizes.remote().result() for _ in range(4 * args.replicas)]  # reaches every replica
        seen = max(sizes, key=len)
        out["batches"] = {"replies": len(sizes), "mean_batch_one_replica": round(sum(seen) / max(1, len(seen)), 1)}
        return out
    finally:
        serve.shutdown()
        ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    p.add_argument("--requests", type=int, default=512, help="requests under load, per app")
    p.add_argument("--single", type=int, default=100, help="requests of the lone client, per app")
    p.add_argument("--replicas", type=int, default=2, help="replicas of the model deployment on Ray")
    p.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs Ray may use (split among the replicas)")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    results = {"single_process": single_process(args), "ray": on_ray(args)}
    for name, r in results.items():
        load, alone = r["load"], r["one_client"]
        print(
            f"{name:15} {args.clients} clients: {load['throughput']:7.1f} req/s  p50 {load['p50_ms']:7.1f} ms  "
            f"p95 {load['p95_ms']:7.1f} ms  errors {load['errors']} | one client: p50 {alone['p50_ms']:6.2f} ms  "
            f"p95 {alone['p95_ms']:6.2f} ms"
        )
    overhead = results["ray"]["one_client"]["p50_ms"] - results["single_process"]["one_client"]["p50_ms"]
    print(f"Ray's per-request overhead (one client, p50): {overhead:+.2f} ms; batches: {results['ray']['batches']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
