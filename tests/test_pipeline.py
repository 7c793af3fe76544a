"""The pipeline API of CONTRACT.md: result shapes, batching, input kinds, the catalog and its errors."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, QUESTION, VQA
from PIL import Image

import mmdemo
from mmdemo.backends.native import NativeVQA

QUESTIONS = [  # several lengths, all in the tiny checkpoint's vocabulary
    "what shape?",
    "what color is the shape?",
    "is there a red shape in the image?",
    "does the image not contain a circle?",
    QUESTION,
]


def random_image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def assert_vqa_result(result, top_k: int, answers: list[str]) -> None:
    assert isinstance(result, list) and len(result) == top_k
    for item in result:
        assert set(item) == {"answer", "score"}
        assert type(item["answer"]) is str and item["answer"] in answers
        assert type(item["score"]) is float and 0.0 <= item["score"] <= 1.0
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) <= 1.0 + 1e-6
    assert len({r["answer"] for r in result}) == top_k  # no answer twice
    json.dumps(result)  # plain Python all the way down


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert [r["answer"] for r in a] == [r["answer"] for r in b]
    np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], rtol=0, atol=1e-5)


@pytest.mark.parametrize("top_k", [1, 3, 5])
def test_single_input_gives_one_ranked_list(tiny_vqa, example_image, top_k):
    result = tiny_vqa(str(example_image), QUESTION, top_k=top_k)
    assert_vqa_result(result, top_k, tiny_vqa.backend.answers)


def test_default_top_k_is_five(tiny_vqa, example_image):
    assert len(tiny_vqa(str(example_image), QUESTION)) == 5


def test_top_k_beyond_the_answer_set_gives_every_answer_once(tiny_vqa, example_image):
    answers = tiny_vqa.backend.answers
    result = tiny_vqa(str(example_image), QUESTION, top_k=len(answers) + 10)
    assert_vqa_result(result, len(answers), answers)
    assert math.isclose(sum(r["score"] for r in result), 1.0, abs_tol=1e-5)  # the whole softmax


def test_list_input_gives_list_of_results_in_order(tiny_vqa, examples):
    images = [str(e["image"]) for e in examples[:4]]
    questions = QUESTIONS[:4]
    results = tiny_vqa(images, questions, top_k=2)
    assert isinstance(results, list) and len(results) == 4
    for image, question, result in zip(images, questions, results, strict=True):
        assert_vqa_result(result, 2, tiny_vqa.backend.answers)
        assert_same(result, tiny_vqa(image, question, top_k=2))


def test_one_question_serves_every_image(tiny_vqa, examples):
    images = [str(e["image"]) for e in examples[:3]]
    results = tiny_vqa(images, QUESTION, top_k=3)
    assert len(results) == 3
    for image, result in zip(images, results, strict=True):
        assert_same(result, tiny_vqa(image, QUESTION, top_k=3))


def test_empty_list_gives_empty_list(tiny_vqa):
    assert tiny_vqa([], []) == []


@pytest.mark.parametrize("batch_size", [64, 3])
def test_batched_equals_one_at_a_time(tiny_vqa, examples, batch_size, monkeypatch):
    sizes = [(64, 64), (30, 50), (100, 40), (17, 17), (64, 200), (9, 5), (128, 128)]
    images = [random_image(h, w, seed) for seed, (h, w) in enumerate(sizes)]
    images += [Image.open(e["image"]) for e in examples[:3]]
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(len(images))]
    monkeypatch.setattr(tiny_vqa, "batch_size", batch_size)
    batched = tiny_vqa(images, questions, top_k=4)
    assert len(batched) == len(images)
    for image, question, result in zip(images, questions, batched, strict=True):
        assert_same(result, tiny_vqa(image, question, top_k=4))
    # the batch really mixed different answers: not one result copied everywhere
    assert len({tuple(r["answer"] for r in res) + tuple(r["score"] for r in res) for res in batched}) > 1


def test_pil_path_and_array_inputs_agree(tiny_vqa, example_image):
    as_path = tiny_vqa(str(example_image), QUESTION)
    as_pathlib = tiny_vqa(Path(example_image), QUESTION)
    with Image.open(example_image) as im:
        pil = im.convert("RGB")
    as_pil = tiny_vqa(pil, QUESTION)
    array = np.asarray(pil)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    as_array = tiny_vqa(array, QUESTION)
    for other in (as_pathlib, as_pil, as_array):
        assert_same(as_path, other)


def test_answers_depend_on_the_question(tiny_vqa, example_image):
    """Two different questions about one image do not give identical score lists (the text is read)."""
    a = tiny_vqa(str(example_image), "what color is the shape?", top_k=13)
    b = tiny_vqa(str(example_image), "is there a red shape in the image?", top_k=13)
    assert {r["answer"]: r["score"] for r in a} != {r["answer"]: r["score"] for r in b}


def test_list_models_returns_contract_fields():
    models = mmdemo.list_models()
    assert models, "the catalog is empty"
    for m in models:
        assert isinstance(m, mmdemo.ModelInfo)
        assert isinstance(m.name, str) and m.name
        assert isinstance(m.tasks, tuple) and m.tasks and set(m.tasks) <= set(mmdemo.TASKS)
        assert isinstance(m.backend, str) and m.backend
        assert isinstance(m.offline, bool)
        for field in ("description", "license", "size"):
            assert isinstance(getattr(m, field), str)
        assert isinstance(m.default_for, tuple) and set(m.default_for) <= set(m.tasks)
    names = [m.name for m in models]
    assert len(names) == len(set(names))
    default = next(m for m in models if m.name == "mmdemo-vqa-easy")
    assert VQA in default.tasks and VQA in default.default_for and default.offline


def test_list_models_by_task():
    vqa = mmdemo.list_models(VQA)
    assert "mmdemo-vqa-easy" in [m.name for m in vqa]
    assert all(VQA in m.tasks for m in vqa)
    everything = mmdemo.list_models()
    for task in mmdemo.TASKS:
        assert mmdemo.list_models(task) == [m for m in everything if task in m.tasks]


def test_list_models_unknown_task_lists_tasks():
    with pytest.raises(ValueError, match="visual-question-answering"):
        mmdemo.list_models("no-such-task")


def test_unknown_task_lists_tasks():
    with pytest.raises(ValueError) as e:
        mmdemo.pipeline("no-such-task")
    assert "no-such-task" in str(e.value)
    for task in mmdemo.TASKS:
        assert task in str(e.value)
    assert not isinstance(e.value, mmdemo.InputError)


def test_task_without_a_model_says_which_tasks_have_one(monkeypatch):
    from mmdemo import registry

    only_vqa = [m for m in registry.catalog() if m.tasks == (VQA,)]
    monkeypatch.setattr(registry, "catalog", lambda: only_vqa)  # a catalog that serves one task
    with pytest.raises(ValueError, match=f"no model serves 'image-to-text' yet; tasks with models: {VQA}"):
        mmdemo.pipeline("image-to-text")


def test_unknown_model_lists_models(tmp_path):
    with pytest.raises(ValueError) as e:
        mmdemo.pipeline(VQA, model="no-such-model")
    message = str(e.value)
    assert "no-such-model" in message
    for m in mmdemo.list_models(VQA):
        assert m.name in message
    # a folder without a checkpoint in it is not a model either
    with pytest.raises(ValueError, match="mmdemo-vqa-easy"):
        mmdemo.pipeline(VQA, model=str(tmp_path))


def test_checkpoint_folder_works_as_model(tiny_checkpoint, example_image):
    p = mmdemo.pipeline(VQA, model=str(tiny_checkpoint), device="cpu")
    assert p.info.name == tiny_checkpoint.name
    assert p.info.backend == "native"
    assert p.task == VQA
    assert_vqa_result(p(str(example_image), QUESTION, top_k=2), 2, p.backend.answers)


def test_pipeline_loads_a_model_once(tiny_checkpoint, monkeypatch):
    loads = []
    real_init = NativeVQA.__init__

    def counting_init(self, *args, **kwargs):
        loads.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(NativeVQA, "__init__", counting_init)
    first = mmdemo.pipeline(VQA, model=str(tiny_checkpoint), device="cpu")
    loaded = len(loads)  # 0 if an earlier test loaded it already, else 1
    second = mmdemo.pipeline(VQA, model=str(tiny_checkpoint), device="cpu")
    assert first.backend is second.backend
    assert loaded <= 1 and len(loads) == loaded


def test_a_rejected_item_stops_the_batch_before_any_model_call(tiny_vqa, example_image, monkeypatch):
    calls = []
    real_call = NativeVQA.__call__
    monkeypatch.setattr(
        NativeVQA, "__call__", lambda self, items, **kw: calls.append(len(items)) or real_call(self, items, **kw)
    )
    with pytest.raises(mmdemo.InputError, match=r"^Input 2: .*zebra"):
        tiny_vqa([str(example_image)] * 3, [QUESTION, "what is the zebra?", QUESTION])
    assert calls == []
    tiny_vqa(str(example_image), QUESTION)
    assert calls == [1]


def test_a_model_that_cannot_stream_gives_its_best_answer_once():
    vqa = mmdemo.pipeline("visual-question-answering")
    assert not vqa.streams  # the bundled model classifies among the answers it knows
    image, question = EXAMPLES / "5.png", "what shape is in the image?"
    assert list(vqa.stream(image, question)) == [vqa(image, question, top_k=1)[0]["answer"]]
    with pytest.raises(mmdemo.InputError):
        list(vqa.stream(image, ""))
