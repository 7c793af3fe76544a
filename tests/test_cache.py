"""Loaded models are kept once, evicted least-recently-used past the memory budget, and unloadable."""

import shutil

import pytest
from conftest import ROOT, VQA

import mmdemo
from mmdemo import pipelines
from mmdemo.cache import model_bytes


@pytest.fixture
def two_models(tiny_checkpoint, tmp_path):
    """Two copies of the tiny checkpoint, loaded by folder: distinct models of the same size."""
    folders = [tmp_path / "first", tmp_path / "second"]
    for folder in folders:
        shutil.copytree(tiny_checkpoint, folder)
    yield [str(f) for f in folders]
    for folder in folders:
        mmdemo.unload(folder.name)


def loaded_names() -> list[str]:
    return [key[0] for key in pipelines._models.loaded()]


def test_models_stay_loaded_without_a_budget(two_models, monkeypatch):
    monkeypatch.delenv("MMDEMO_MEMORY_BUDGET_GB", raising=False)
    first = mmdemo.pipeline(VQA, model=two_models[0]).backend
    mmdemo.pipeline(VQA, model=two_models[1])
    assert {"first", "second"} <= set(loaded_names())
    assert mmdemo.pipeline(VQA, model=two_models[0]).backend is first  # loaded once


def test_the_least_recently_used_model_is_evicted_past_the_budget(two_models, monkeypatch):
    first = mmdemo.pipeline(VQA, model=two_models[0]).backend
    size = model_bytes(first)
    assert size > 0
    monkeypatch.setenv("MMDEMO_MEMORY_BUDGET_GB", str(1.5 * size / 2**30))  # room for one of them
    mmdemo.unload()
    first = mmdemo.pipeline(VQA, model=two_models[0]).backend
    mmdemo.pipeline(VQA, model=two_models[1])
    assert "second" in loaded_names() and "first" not in loaded_names()
    again = mmdemo.pipeline(VQA, model=two_models[0])
    assert again.backend is not first and "second" not in loaded_names()
    assert again(str(ROOT / "assets/examples/easy-vqa/5.png"), "what shape is in the image?")  # reloaded, answering


def test_unload_frees_one_model_or_all(two_models):
    mmdemo.pipeline(VQA, model=two_models[0])
    mmdemo.pipeline(VQA, model=two_models[1])
    assert mmdemo.unload("first") == ["first"]
    assert "first" not in loaded_names() and "second" in loaded_names()
    assert mmdemo.unload("no-such-model") == []
    mmdemo.unload()
    assert loaded_names() == []


def test_out_of_memory_is_a_clear_error_and_the_next_request_is_served(tiny_checkpoint, monkeypatch):
    import torch

    vqa = mmdemo.pipeline(VQA, model=str(tiny_checkpoint))
    real = vqa.backend.model.forward

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(vqa.backend.model, "forward", exhausted)
    image = str(ROOT / "assets/examples/easy-vqa/5.png")
    with pytest.raises(mmdemo.ModelError, match="ran out of memory on this input"):
        vqa(image, "what shape is in the image?")
    monkeypatch.setattr(vqa.backend.model, "forward", real)
    assert vqa(image, "what shape is in the image?")[0]["answer"]
