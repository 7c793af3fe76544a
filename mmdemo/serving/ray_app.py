"""The Ray Serve application: one deployment per model, each loading its model once and batching the requests of
every UI replica (@serve.batch), and the Gradio UI as the ingress deployment, calling the models through handles.

    mmdemo serve --ray                              # on this machine: starts (or joins) Ray, runs the app
    serve deploy deploy/serve_config.yaml           # on a cluster (deploy/RAY.md)
    serve.run(build_app({"models": {"mmdemo-vqa-easy": {"num_replicas": 2}}}), route_prefix="/")

Models not given a deployment load in the UI replica, as in `python app.py`.
"""

import asyncio
import json
import threading

from ray import serve
from ray.serve import metrics as serve_metrics

from mmdemo.backends import load_backend
from mmdemo.batching import MAX_BATCH
from mmdemo.metrics import BATCH_BUCKETS
from mmdemo.registry import catalog, find_model
from mmdemo.serving.remote import decode_item, serve_remotely

BATCH_WAIT_S = 0.005  # the longest a request waits on its replica for company before its batch runs
MAX_ONGOING = 64  # requests one model replica takes at once: its batches can grow to this many callers
UI_MAX_ONGOING = 1000  # HTTP requests the UI replica takes at once (each open Gradio session holds one)
# the keys of a model's settings that go to ModelDeployment; the others are Ray Serve deployment options
MODEL_SETTINGS = ("task", "device", "max_batch_size", "batch_wait_timeout_s")


@serve.deployment(max_ongoing_requests=MAX_ONGOING, ray_actor_options={"num_cpus": 1})
class ModelDeployment:
    """One catalog model, loaded once per replica: validate(item) and __call__(items, params) as a backend's, with
    items encoded by mmdemo.serving.encode_item; concurrent calls share batches of up to max_batch_size inputs."""

    def __init__(
        self,
        name: str,
        task: str | None = None,
        device: str | None = None,
        max_batch_size: int = MAX_BATCH,
        batch_wait_timeout_s: float = BATCH_WAIT_S,
    ):
        self.backend = load_backend(model_info(name, task), device)
        # decorated here, not on the class: each instance has its own batch queue (the class's would be shared)
        self._batch = serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s)(self._run)
        self._sizes: list[int] = []
        self._size_metric = serve_metrics.Histogram(  # Ray exports it as ray_mmdemo_batch_size{deployment, replica}
            "mmdemo_batch_size", description="Inputs per model call of a replica", boundaries=list(BATCH_BUCKETS)
        )

    def validate(self, item: dict) -> None:
        self.backend.validate(decode_item(item))

    async def __call__(self, items: list[dict], params: dict) -> list:
        items = await asyncio.to_thread(self._prepare, items)
        return list(await asyncio.gather(*(self._batch(item, params) for item in items)))

    def _prepare(self, items: list[dict]) -> list[dict]:
        """Decode, and do the backend's per-input work (resizing ...) outside the batch, as the pipeline does."""
        items = [decode_item(item) for item in items]
        return [self.backend.prepare(item) for item in items] if hasattr(self.backend, "prepare") else items

    async def _run(self, items: list[dict], params: list[dict]) -> list:
        """One batch: the inputs of concurrent calls (@serve.batch gathers them), each with its call's params."""
        self._sizes = [*self._sizes[-999:], len(items)]
        self._size_metric.observe(len(items))
        return await asyncio.to_thread(run_grouped, self.backend, items, params)

    def batch_sizes(self) -> list[int]:
        """The inputs of each model call on this replica, newest last (for tests and benchmarks)."""
        return list(self._sizes)


def model_info(name: str, task: str | None = None):
    """The catalog entry of `name` (for `task`; None: the model's first task)."""
    if task is None:
        entry = next((m for m in catalog() if m.name == name), None)
        if entry is None:
            raise ValueError(f"unknown model {name!r}; the catalog has: {', '.join(m.name for m in catalog())}")
        task = entry.tasks[0]
    return find_model(task, name)


def run_grouped(backend, items: list[dict], params: list[dict]) -> list:
    """One backend call per distinct params (top_k ...) among a batch's inputs; results in the inputs' order."""
    groups: dict[str, list[int]] = {}
    for n, p in enumerate(params):
        groups.setdefault(json.dumps(p, sort_keys=True, default=str), []).append(n)
    results: list = [None] * len(items)
    for rows in groups.values():
        for row, result in zip(rows, backend([items[r] for r in rows], **params[rows[0]]), strict=True):
            results[row] = result
    return results


@serve.deployment(max_ongoing_requests=UI_MAX_ONGOING, ray_actor_options={"num_cpus": 1})
@serve.ingress()
class UIDeployment:
    """The Gradio app (mmdemo.ui), built on its replica, running the deployed models through their handles."""

    def __init__(self, handles: dict):
        serve_remotely(handles)

    def __serve_build_asgi_app__(self):
        from fastapi import FastAPI

        from mmdemo import ui

        return ui.mount(FastAPI())


def default_models() -> list[str]:
    """The models that work offline (the bundled ones): each gets its own deployment unless the config names others."""
    return [m.name for m in catalog() if m.offline]


def build_app(args: dict | None = None):
    """The application (for `serve run`/`serve deploy`, whose config gives `args`):

        models: {catalog name: {task, device, max_batch_size, batch_wait_timeout_s, and any deployment option:
                 num_replicas, autoscaling_config, ray_actor_options (num_cpus, num_gpus: fractions share a GPU),
                 max_ongoing_requests ...}}      (default: every bundled model, one replica each)
        ui: deployment options of the UI (default: one replica)

    A config file's `deployments:` entries (named as the models, and "UIDeployment") override these options."""
    args = args or {}
    models = args.get("models") or {name: {} for name in default_models()}
    handles = {}
    for name, settings in models.items():
        options = dict(settings or {})
        settings = {k: options.pop(k) for k in MODEL_SETTINGS if k in options}
        handles[name] = ModelDeployment.options(name=name, **options).bind(name, **settings)
    return UIDeployment.options(**(args.get("ui") or {})).bind(handles)


def run(host: str, port: int, models: str | None = None, replicas: int = 1, address: str | None = None) -> None:
    """`mmdemo serve --ray`: start Ray here (or join the cluster at `address`), run the app on host:port with
    `replicas` replicas of each model (comma-separated `models`; None: the bundled ones), print its URL, and serve
    until interrupted."""
    import ray

    names = [n.strip() for n in models.split(",") if n.strip()] if models else default_models()
    for name in names:
        model_info(name)  # an unknown name fails here, with the list of known ones
    ray.init(address=address)
    serve.start(http_options={"host": host, "port": port})
    # the cluster's CPUs shared out (at most one a replica), so that every replica finds room on a small machine
    share = {"num_cpus": min(1.0, ray.cluster_resources().get("CPU", 1) / (len(names) * replicas + 1))}
    models = {name: {"num_replicas": replicas, "ray_actor_options": share} for name in names}
    app = build_app({"models": models, "ui": {"ray_actor_options": share}})
    serve.run(app, name="mmdemo", route_prefix="/")
    print(f"mmdemo on Ray Serve: http://{host}:{port}/ ({', '.join(names)}; {replicas} replica(s) each)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        serve.delete("mmdemo")
