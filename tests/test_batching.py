"""Dynamic batching across concurrent callers (mmdemo.batching): batches form under load and only then, each caller
gets exactly its own results, params never mix, failures reach every caller of a batch, and an unloaded model is
freed. With the real pipeline: answers under concurrent load equal answers one at a time."""

import gc
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

import mmdemo
import mmdemo.inputs
from mmdemo.batching import MicroBatcher


class Slow:
    """A fake model: each call takes 20 ms, whatever its size; results name their item and params."""

    def __init__(self):
        self.calls: list[tuple[list, dict]] = []

    def __call__(self, items, **params):
        self.calls.append((list(items), params))
        time.sleep(0.02)
        return [(item, params.get("top_k")) for item in items]


def test_a_lone_caller_is_not_kept_waiting():
    model = Slow()
    batcher = MicroBatcher(model, max_wait_s=1.0)
    start = time.perf_counter()
    for n in range(5):
        assert batcher([n], top_k=1) == [(n, 1)]
    assert time.perf_counter() - start < 0.5  # 5 × 20 ms of model, no 1 s waits
    assert batcher.batch_sizes == [1] * 5


def test_concurrent_callers_share_batches_and_get_their_own_results():
    model = Slow()
    batcher = MicroBatcher(model, max_batch=16)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda n: batcher([n, -n], top_k=3), range(64)))
    assert results == [[(n, 3), (-n, 3)] for n in range(64)]
    assert max(batcher.batch_sizes) > 2 and max(batcher.batch_sizes) <= 16
    assert sum(batcher.batch_sizes) == 128 and len(model.calls) < 64


def test_calls_with_different_params_never_share_a_batch():
    model = Slow()
    batcher = MicroBatcher(model)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda n: batcher([n], top_k=n % 3), range(48)))
    assert results == [[(n, n % 3)] for n in range(48)]
    for items, params in model.calls:
        assert {item % 3 for item in items} == {params["top_k"]}


def test_a_failing_batch_fails_its_callers_and_the_next_call_works():
    fail = threading.Event()

    def model(items, **params):
        time.sleep(0.02)
        if fail.is_set():
            raise MemoryError("out of memory")
        return items

    batcher = MicroBatcher(model)
    fail.set()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher, [n]) for n in range(8)]
        errors = [f.exception(timeout=10) for f in futures]
    assert all(isinstance(e, MemoryError) for e in errors)
    fail.clear()
    assert batcher([7]) == [7]


def test_an_unloaded_model_is_freed_although_its_batcher_lives():
    model = Slow()
    batcher = MicroBatcher(model)
    batcher([1])
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
    with pytest.raises(RuntimeError, match="unloaded"):
        batcher([2])


def test_pipeline_answers_under_concurrent_load_equal_one_at_a_time(examples):
    vqa = mmdemo.pipeline("visual-question-answering")
    cases = [(e["image"], e["question"]) for e in examples] * 4
    alone = [vqa(image, question) for image, question in cases]
    before = len(vqa.backend._batcher.batch_sizes)
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda case: vqa(*case), cases))
    assert [[r["answer"] for r in result] for result in together] == [[r["answer"] for r in a] for a in alone]
    for got, want in zip(together, alone, strict=True):
        # in bf16 (on CPUs that have it) a batch's sums round differently from one input's: equal to ~3 digits
        assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=2e-3)
    assert max(vqa.backend._batcher.batch_sizes[before:]) > 1  # they were batched


def test_prepared_inputs_give_the_results_of_raw_ones(examples):
    """The pipeline resizes each image in its caller's thread (`prepare`); the backend takes either form."""
    vqa = mmdemo.pipeline("visual-question-answering")
    raw = [{"image": mmdemo.inputs.load_image(e["image"]), "question": e["question"]} for e in examples]
    prepared = [vqa.backend.prepare(item) for item in raw]
    assert all(item["pixels"].shape == (*[vqa.backend.model.config.image_size] * 2, 3) for item in prepared)
    assert vqa.backend(prepared, top_k=3) == vqa.backend(raw, top_k=3)


def test_prepare_runs_in_the_worker_and_a_failing_one_fails_only_its_caller():
    model, threads = Slow(), set()

    def prepare(items):
        threads.add(threading.current_thread().name)
        if items == ["bad"]:
            raise mmdemo.InputError("bad input")
        return [item * 10 for item in items]

    batcher = MicroBatcher(model, max_batch=16)

    def call(n):
        try:
            return batcher(["bad"] if n % 5 == 0 else [n], prepare=prepare, top_k=1)
        except mmdemo.InputError as e:
            return str(e)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(40)))
    assert results == ["bad input" if n % 5 == 0 else [(n * 10, 1)] for n in range(40)]
    assert threads == {"mmdemo-batcher"} and max(batcher.batch_sizes) > 1
    assert all("bad" not in items for items, _ in model.calls)


def test_small_inputs_are_decoded_by_the_worker_and_photos_by_their_callers(examples, monkeypatch):
    """A lone small input (an easy-VQA image) is decoded in the batcher's worker; a large one in its caller's thread.
    Under concurrent load each caller still gets its own answer, or its own error."""
    vqa = mmdemo.pipeline("visual-question-answering")
    decoded_in, load_image = [], mmdemo.inputs.load_image

    def recording(image):
        decoded_in.append(threading.current_thread().name)
        return load_image(image)

    monkeypatch.setattr(mmdemo.pipelines, "load_image", recording)
    vqa(examples[0]["image"], examples[0]["question"])
    vqa(Image.new("RGB", (640, 480), "red"), "what color is the shape?")  # 900 KB of pixels
    assert decoded_in == ["mmdemo-batcher", "MainThread"]
    cases = [(e["image"], e["question"]) for e in examples] * 3 + [(examples[0]["image"], "what is a colour?")]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda case: _answer_or_error(vqa, *case), cases))
    assert results[:-1] == [e["answer"] for e in examples] * 3
    assert "does not know the word 'colour'" in results[-1]


def _answer_or_error(vqa, image, question) -> str:
    try:
        return vqa(image, question)[0]["answer"]
    except mmdemo.InputError as e:
        return str(e)
