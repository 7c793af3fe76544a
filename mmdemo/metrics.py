"""Prometheus metrics of this process, served at GET /metrics (mmdemo.ui): requests by outcome and their latency,
pipeline latency and errors, batch sizes, queue depths, model loads, open streams, and the process's memory, CPU and
garbage collection.

    REQUESTS.labels(task, model, outcome).inc()
    body, content_type = render(accept)            # what a Prometheus server scrapes, in the format it accepts

Everything lives on a registry of our own (not prometheus_client's global one), so that nothing else a library
registers there shows up, and model labels are bounded (`model_label`): a caller cannot add series at will.
"""

import time
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from mmdemo.errors import InputError, ModelError
from mmdemo.registry import catalog

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, process_cpu_seconds_total, open fds (Linux)
PlatformCollector(registry=REGISTRY)  # python_info
GCCollector(registry=REGISTRY)  # python_gc_*

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)  # seconds
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)  # seconds: a bundled model .. a hub download
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # inputs per model call

REQUESTS = Counter(
    "mmdemo_requests",
    "UI and HTTP API requests, by outcome: ok, rejected (bad input), failed (said to the user), stopped, error",
    ["task", "model", "outcome"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "mmdemo_request_seconds",
    "UI and HTTP API request latency, every outcome",
    ["task", "model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
PIPELINE_SECONDS = Histogram(
    "mmdemo_pipeline_seconds",
    "Pipeline.run latency (checks, batching and the model), every outcome",
    ["task", "model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
PIPELINE_ERRORS = Counter(
    "mmdemo_pipeline_errors",
    "Pipeline.run failures by kind: input (refused), out_of_memory, model (ModelError), error (anything else)",
    ["task", "model", "kind"],
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "mmdemo_batch_size", "Inputs per model call of a micro-batcher", ["model"], buckets=BATCH_BUCKETS, registry=REGISTRY
)
BATCH_QUEUE_DEPTH = Gauge(
    "mmdemo_batch_queue_depth", "Requests waiting for a micro-batcher's worker", ["model"], registry=REGISTRY
)
QUEUE_DEPTH = Gauge("mmdemo_queue_depth", "Events waiting in Gradio's queue (not yet running)", registry=REGISTRY)
MODEL_LOAD_SECONDS = Histogram(
    "mmdemo_model_load_seconds", "Time to load a model", ["model"], buckets=LOAD_BUCKETS, registry=REGISTRY
)
MODELS_LOADED = Gauge("mmdemo_models_loaded", "Models held in memory by this process", registry=REGISTRY)
STREAMS_ACTIVE = Gauge("mmdemo_streams_active", "Streamed generations running now", registry=REGISTRY)


def model_label(name: str | None) -> str:
    """A catalog name as it is, "default" for none, and "other" for anything else (a checkpoint folder, an unknown
    name): labels come from callers, and each new value would be a new series kept forever."""
    if not name:
        return "default"
    return name if any(m.name == name for m in catalog()) else "other"


def record_request(task: str, model: str | None, outcome: str, seconds: float) -> None:
    """One UI or HTTP request (mmdemo.ui.user_errors, beside its log line)."""
    model = model_label(model)
    REQUESTS.labels(task, model, outcome).inc()
    REQUEST_SECONDS.labels(task, model).observe(seconds)


@contextmanager
def pipeline_call(task: str, model: str):
    """Time one Pipeline.run and count its failure, if any, by kind."""
    model, start = model_label(model), time.perf_counter()
    try:
        yield
    except Exception as e:
        PIPELINE_ERRORS.labels(task, model, error_kind(e)).inc()
        raise
    finally:
        PIPELINE_SECONDS.labels(task, model).observe(time.perf_counter() - start)


def error_kind(e: BaseException) -> str:
    if isinstance(e, InputError):
        return "input"
    if isinstance(e, ModelError):  # the pipeline raises out of memory as a ModelError from the original error
        cause = e.__cause__
        oom = isinstance(cause, MemoryError) or type(cause).__name__ == "OutOfMemoryError"
        return "out_of_memory" if oom or "out of memory" in str(cause).lower() else "model"
    return "error"


@contextmanager
def model_load(name: str):
    """Time a model's load; count it as loaded once it has."""
    start = time.perf_counter()
    yield
    MODEL_LOAD_SECONDS.labels(model_label(name)).observe(time.perf_counter() - start)
    MODELS_LOADED.inc()


def render(accept: str = "") -> tuple[bytes, str]:
    """The metrics and their content type: OpenMetrics when the Accept header asks for it (Prometheus does), else
    Prometheus' text format, as prometheus_client's own exporters negotiate it."""
    encode, content_type = choose_encoder(accept)
    return encode(REGISTRY), content_type
