"""Prometheus metrics (mmdemo.metrics, GET /metrics): request counts that match the request log, latency histograms,
batch sizes under concurrent load, queue depths, model loads, streams and the process's memory."""

import collections
import json
import threading
import time
import urllib.request

import pytest
from conftest import EXAMPLES, QUESTION, free_port, served_app
from prometheus_client.parser import text_string_to_metric_families

import mmdemo
from mmdemo import metrics
from mmdemo.pipelines import ImageToTextPipeline
from mmdemo.registry import find_model

IMAGE = str(EXAMPLES / "5.png")
VQA, CLASSIFY = "visual-question-answering", "image-classification"
SCENES = "mmdemo-scene-classifier"  # a bundled image classifier, not a default: loaded on first use
BUNDLED_TASKS = (VQA, "image-to-text", CLASSIFY, "audio-classification")  # each has an offline default, loaded at start


def scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    headers = {"Accept": accept} if accept else {}
    with urllib.request.urlopen(urllib.request.Request(url + "/metrics", headers=headers), timeout=10) as r:
        return r.read().decode(), r.headers["Content-Type"]


def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted label items) -> value, from a scrape parsed as Prometheus parses it."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def wait_ready(url: str, timeout: float = 90) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url + "/readyz", timeout=5)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the app did not become ready")


def test_metrics_endpoint_counts_requests_as_the_log_does(tmp_path):
    from gradio_client import Client, handle_file

    with served_app(tmp_path, MMDEMO_FEEDBACK_DB=str(tmp_path / "feedback.db")) as url:
        wait_ready(url)
        client = Client(url + "/", verbose=False)
        client.predict(handle_file(IMAGE), QUESTION, None, api_name="/answer")
        with pytest.raises(Exception, match="does not know the words"):  # refused by the model's vocabulary check
            client.predict(handle_file(IMAGE), "is the zebra playing?", None, api_name="/answer")
        with pytest.raises(Exception, match="upload an image"):  # refused before any model: neither logged nor counted
            client.predict(None, QUESTION, None, api_name="/answer")
        client.predict(handle_file(IMAGE), SCENES, api_name="/classify_image")
        text, content_type = scrape(url)
        open_metrics, om_type = scrape(url, "application/openmetrics-text; version=1.0.0")
    found = samples(text)
    assert content_type.startswith("text/plain") and om_type.startswith("application/openmetrics-text")
    assert open_metrics.endswith("# EOF\n")

    log = (tmp_path / "server.log").read_text().splitlines()
    lines = [json.loads(line.split("mmdemo.requests ", 1)[1]) for line in log if " mmdemo.requests " in line]
    logged = collections.Counter((line["task"], line["model"], line["outcome"]) for line in lines)
    assert logged == {(VQA, "default", "ok"): 1, (VQA, "default", "rejected"): 1, (CLASSIFY, SCENES, "ok"): 1}
    counted = {
        (labels["task"], labels["model"], labels["outcome"]): v
        for (name, items), v in found.items()
        if name == "mmdemo_requests_total" and (labels := dict(items))
    }
    assert counted == logged
    assert value(found, "mmdemo_request_seconds_count", task=VQA, model="default") == 2
    assert value(found, "mmdemo_request_seconds_count", task=CLASSIFY, model=SCENES) == 1
    vqa_seconds = sum(line["ms"] for line in lines if line["task"] == VQA) / 1000
    assert value(found, "mmdemo_request_seconds_sum", task=VQA, model="default") == pytest.approx(vqa_seconds, abs=1e-3)

    vqa_model = find_model(VQA, None).name
    # the warm-up's call at start and the answered request's: the refused question never reached the model
    assert value(found, "mmdemo_batch_size_count", model=vqa_model) == 2
    assert value(found, "mmdemo_batch_size_sum", model=vqa_model) == 2
    assert value(found, "mmdemo_batch_size_count", model=SCENES) == 1  # not a default: not warmed up
    assert value(found, "mmdemo_pipeline_seconds_count", task=VQA, model=vqa_model) == 3
    assert value(found, "mmdemo_pipeline_errors_total", task=VQA, model=vqa_model, kind="input") == 1
    assert value(found, "mmdemo_batch_queue_depth", model=vqa_model) == 0

    defaults = {find_model(task, None).name for task in BUNDLED_TASKS}
    for model in [*defaults, SCENES]:
        assert value(found, "mmdemo_model_load_seconds_count", model=model) == 1, model
        assert value(found, "mmdemo_model_load_seconds_sum", model=model) > 0, model
    assert value(found, "mmdemo_models_loaded") == len(defaults) + 1
    assert value(found, "mmdemo_queue_depth") == 0 and value(found, "mmdemo_streams_active") == 0
    assert value(found, "process_resident_memory_bytes") > 10e6 and value(found, "process_cpu_seconds_total") > 0
    assert any(name == "python_info" for name, _ in found)


@pytest.fixture()
def slow_scenes(monkeypatch):
    """The scene classifier's pipeline, whose model calls wait for `release` (set) after the first one starts."""
    p = mmdemo.pipeline(CLASSIFY, SCENES)
    real, started, release = type(p.backend).__call__, threading.Event(), threading.Event()

    def held(self, items, **params):
        started.set()
        release.wait(10)
        return real(self, items, **params)

    monkeypatch.setattr(type(p.backend), "__call__", held)
    return p, started, release


def sample(name: str, **labels) -> float:
    """A value of this process's metrics (0 for a series not yet recorded)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def batch_sizes() -> list[float]:
    """The scene classifier's batch-size histogram: batches, inputs, and batches of one input."""
    return [
        sample("mmdemo_batch_size_count", model=SCENES),
        sample("mmdemo_batch_size_sum", model=SCENES),
        sample("mmdemo_batch_size_bucket", model=SCENES, le="1.0"),
    ]


def test_concurrent_calls_are_batched_and_measured(slow_scenes):
    p, started, release = slow_scenes
    before = batch_sizes()
    before_runs = sample("mmdemo_pipeline_seconds_count", task=CLASSIFY, model=SCENES)
    threads = [threading.Thread(target=p, args=(IMAGE,)) for _ in range(16)]
    threads[0].start()
    assert started.wait(10)  # the first call runs alone, and is held there: the others queue behind it
    for thread in threads[1:]:
        thread.start()
    end = time.time() + 10
    while sample("mmdemo_batch_queue_depth", model=SCENES) < 15 and time.time() < end:
        time.sleep(0.01)
    assert sample("mmdemo_batch_queue_depth", model=SCENES) == 15
    release.set()
    for thread in threads:
        thread.join(10)
    assert [a - b for a, b in zip(batch_sizes(), before, strict=True)] == [2, 16, 1]  # 1, then the other 15
    assert sample("mmdemo_pipeline_seconds_count", task=CLASSIFY, model=SCENES) - before_runs == 16
    assert sample("mmdemo_batch_queue_depth", model=SCENES) == 0


def errors(kind: str, task: str = CLASSIFY, model: str = SCENES) -> float:
    return sample("mmdemo_pipeline_errors_total", task=task, model=model, kind=kind)


def test_pipeline_failures_are_counted_by_kind(monkeypatch):
    vqa = mmdemo.pipeline(VQA, "mmdemo-vqa-easy")
    before = errors("input", VQA, "mmdemo-vqa-easy")
    with pytest.raises(mmdemo.InputError):
        vqa(IMAGE, "is the zebra playing?")
    assert errors("input", VQA, "mmdemo-vqa-easy") == before + 1

    p = mmdemo.pipeline(CLASSIFY, SCENES)
    failures = {
        "out_of_memory": RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        "error": ZeroDivisionError("division by zero"),
    }
    for kind, exception in failures.items():

        def fail(self, items, exception=exception, **params):
            raise exception

        monkeypatch.setattr(type(p.backend), "__call__", fail)
        before = errors(kind)
        with pytest.raises((mmdemo.ModelError, ZeroDivisionError)):
            p(IMAGE)
        assert errors(kind) == before + 1


class Streamer:
    """A fake captioner that streams two pieces."""

    info = find_model("image-to-text", "mmdemo-captioner")

    def validate(self, item):
        pass

    def stream(self, item, **options):
        yield "a"
        yield "a cat"


def test_open_streams_are_counted_until_closed():
    p = ImageToTextPipeline(Streamer.info, Streamer())
    before = sample("mmdemo_streams_active")
    finished = p.stream(IMAGE)
    assert next(finished) == "a" and sample("mmdemo_streams_active") == before + 1
    assert list(finished) == ["a cat"] and sample("mmdemo_streams_active") == before
    stopped = p.stream(IMAGE)
    next(stopped)
    stopped.close()  # the user pressed Stop
    assert sample("mmdemo_streams_active") == before


def test_model_labels_are_bounded():
    assert metrics.model_label(SCENES) == SCENES
    assert metrics.model_label(None) == metrics.model_label("") == "default"
    assert metrics.model_label("/some/checkpoint/folder") == metrics.model_label("no-such-model") == "other"


def test_gradio_queue_depth_counts_the_events_waiting(slow_scenes, monkeypatch, tmp_path):
    from gradio_client import Client, handle_file

    from mmdemo import ui

    _, _, release = slow_scenes  # every model call is held until release
    monkeypatch.setenv("MMDEMO_FEEDBACK_DB", str(tmp_path / "feedback.db"))
    monkeypatch.setattr(ui, "_store", None)
    monkeypatch.setattr(ui, "MODEL_CONCURRENCY", 1)  # one model event at a time: the others wait in Gradio's queue
    port = free_port()
    demo = ui.build_demo()
    ui.launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}"
        client = Client(url + "/", verbose=False)
        jobs = [client.submit(handle_file(IMAGE), SCENES, api_name="/classify_image") for _ in range(4)]
        end, depth = time.time() + 20, None
        while depth != 3 and time.time() < end:  # one event held in the model, three waiting
            depth = value(samples(scrape(url)[0]), "mmdemo_queue_depth")
            time.sleep(0.05)
        assert depth == 3
        release.set()
        assert [job.result(timeout=20)[0]["label"] for job in jobs] == ["brown circle"] * 4
        assert value(samples(scrape(url)[0]), "mmdemo_queue_depth") == 0
    finally:
        release.set()
        demo.close()


def test_the_ray_ingress_app_serves_metrics(monkeypatch, tmp_path):
    """ui.mount (the Ray Serve ingress) serves /metrics as launch() does, in the format the scraper asks for."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from mmdemo import ui

    monkeypatch.setenv("MMDEMO_FEEDBACK_DB", str(tmp_path / "feedback.db"))
    monkeypatch.setattr(ui, "_store", None)
    client = TestClient(ui.mount(FastAPI()))
    plain = client.get("/metrics")
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/plain")
    assert value(samples(plain.text), "mmdemo_queue_depth") == 0
    open_metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")
