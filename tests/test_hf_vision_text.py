"""The transformers captioning and VQA runners (BLIP, GIT, ViLT) on tiny random models of the real architectures.

Each model is saved to a folder and named in a user catalog, so mmdemo loads it exactly as it loads a hub snapshot.
mmdemo's batched results must equal plain transformers usage, one input at a time.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import hf_tiny
import numpy as np
import pytest
import torch
from PIL import Image

import mmdemo

CAPTION, VQA = "image-to-text", "visual-question-answering"
QUESTIONS = ["what color is it?", "is there a cat?", "how many circles are on the sky?"]  # different lengths


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict:
    """runner name -> folder of a tiny model for it."""
    root = tmp_path_factory.mktemp("hf-tiny")
    builders = {
        "blip-caption": hf_tiny.blip_caption,
        "git-caption": hf_tiny.git_caption,
        "blip-vqa": hf_tiny.blip_vqa,
        "vilt-vqa": hf_tiny.vilt_vqa,
    }
    return {runner: build(root / runner) for runner, build in builders.items()}


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((40, 60), (64, 32), (50, 50))]


def catalog_entry(tmp_path, monkeypatch, name: str, task: str, runner: str, **fields) -> str:
    """Point MMDEMO_CATALOG at a file with one transformers model; returns its name."""
    lines = [f'name = "{name}"', f'tasks = ["{task}"]', 'backend = "transformers"', f'runner = "{runner}"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    path = tmp_path / "catalog.toml"
    path.write_text("[[model]]\n" + "\n".join(lines) + "\n")
    monkeypatch.setenv("MMDEMO_CATALOG", str(path))
    return name


def load_tiny(tmp_path, monkeypatch, tiny_models, task: str, runner: str, name: str):
    catalog_entry(tmp_path, monkeypatch, name, task, runner, path=str(tiny_models[runner]), offline=True)
    return mmdemo.pipeline(task, model=name, device="cpu")


def assert_plain(results) -> None:
    json.dumps(results)  # plain Python: no tensors, no numpy scalars


@pytest.mark.parametrize("runner", ["blip-caption", "git-caption"])
def test_captioner_batch_matches_transformers(tmp_path, monkeypatch, tiny_models, images, runner):
    from transformers import AutoProcessor, BlipForConditionalGeneration, GitForCausalLM

    p = load_tiny(tmp_path, monkeypatch, tiny_models, CAPTION, runner, f"tiny-{runner}-greedy")
    results = p(images, num_beams=1, max_new_tokens=8)

    model_cls = {"blip-caption": BlipForConditionalGeneration, "git-caption": GitForCausalLM}[runner]
    model = model_cls.from_pretrained(tiny_models[runner]).eval()
    processor = AutoProcessor.from_pretrained(tiny_models[runner])
    expected = []
    for image in images:
        ids = model.generate(**processor(images=image, return_tensors="pt"), max_new_tokens=8, do_sample=False)
        expected.append([{"generated_text": processor.decode(ids[0], skip_special_tokens=True).strip()}])
    assert results == expected
    assert len({r[0]["generated_text"] for r in results}) > 1, "captions should depend on the image"
    assert_plain(results)
    assert p(images[0], num_beams=1, max_new_tokens=8) == expected[0]  # one image -> one result


def test_captioner_beam_search_batches(tmp_path, monkeypatch, tiny_models, images):
    p = load_tiny(tmp_path, monkeypatch, tiny_models, CAPTION, "blip-caption", "tiny-blip-caption-beams")
    batched = p(images, num_beams=3, max_new_tokens=6)
    assert batched == [p(image, num_beams=3, max_new_tokens=6) for image in images]
    assert all(isinstance(r[0]["generated_text"], str) for r in batched)


def reference_blip_answer(model, processor, image, question) -> tuple[str, float]:
    """BLIP VQA used as documented, one input: greedy answer and its probability (product of token probabilities)."""
    inputs = processor(images=image, text=question, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=20, return_dict_in_generate=True, output_scores=True)
    logp = model.text_decoder.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)[0]
    tokens = out.sequences[0, 1:].tolist()
    sep = model.config.text_config.sep_token_id
    end = tokens.index(sep) + 1 if sep in tokens else len(tokens)
    return processor.decode(out.sequences[0], skip_special_tokens=True).strip(), logp[:end].sum().exp().item()


def test_blip_vqa_batch_matches_transformers(tmp_path, monkeypatch, tiny_models, images):
    from transformers import AutoProcessor, BlipForQuestionAnswering

    p = load_tiny(tmp_path, monkeypatch, tiny_models, VQA, "blip-vqa", "tiny-blip-vqa")
    results = p(images, QUESTIONS)

    model = BlipForQuestionAnswering.from_pretrained(tiny_models["blip-vqa"]).eval()
    processor = AutoProcessor.from_pretrained(tiny_models["blip-vqa"])
    assert_plain(results)
    for result, image, question in zip(results, images, QUESTIONS, strict=True):
        answer, probability = reference_blip_answer(model, processor, image, question)
        assert len(result) == 1  # generative: one answer
        assert result[0]["answer"] == answer
        assert result[0]["score"] == pytest.approx(probability, rel=1e-4)
        assert 0.0 < result[0]["score"] <= 1.0
    assert len({r[0]["answer"] for r in results}) > 1, "answers should depend on the input"


def test_vilt_batch_matches_transformers_with_top_k(tmp_path, monkeypatch, tiny_models, images):
    from transformers import AutoProcessor, ViltForQuestionAnswering

    p = load_tiny(tmp_path, monkeypatch, tiny_models, VQA, "vilt-vqa", "tiny-vilt-vqa")
    results = p(images, QUESTIONS, top_k=3)

    model = ViltForQuestionAnswering.from_pretrained(tiny_models["vilt-vqa"]).eval()
    processor = AutoProcessor.from_pretrained(tiny_models["vilt-vqa"])
    assert_plain(results)
    for result, image, question in zip(results, images, QUESTIONS, strict=True):
        with torch.inference_mode():
            scores = model(**processor(images=image, text=question, return_tensors="pt")).logits[0].sigmoid()
        best = scores.argsort(descending=True)[:3].tolist()
        assert [r["answer"] for r in result] == [model.config.id2label[i] for i in best]
        assert [r["score"] for r in result] == pytest.approx(scores[best].tolist(), abs=1e-5)
    assert len(p(images[0], QUESTIONS[0])) == 5  # the default top_k
    assert len(p(images[0], QUESTIONS[0], top_k=50)) == len(hf_tiny.ANSWERS)  # no more than there are answers


def test_uncached_hub_model_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_id = "mmdemo-tests/never-downloaded-blip"
    name = catalog_entry(tmp_path, monkeypatch, "hub-blip-offline", CAPTION, "blip-caption", hub_id=hub_id)
    with pytest.raises(mmdemo.ModelError, match="could not be loaded") as error:
        mmdemo.pipeline(CAPTION, model=name, device="cpu")
    assert hub_id in str(error.value) and f"mmdemo download {name}" in str(error.value)


def test_catalog_names_importable_runners():
    import importlib

    from mmdemo.backends.hf import RUNNERS

    ours = {"blip-caption", "git-caption", "blip-vqa", "vilt-vqa"}
    entries = [m for m in mmdemo.list_models() if m.extra.get("runner") in ours]
    assert {m.extra["runner"] for m in entries} == ours
    for m in entries:
        assert m.hub_id and not m.offline and not m.default_for, m.name
        module, cls = RUNNERS[m.extra["runner"]].split(":")
        assert callable(getattr(importlib.import_module(module), cls))


@pytest.mark.parametrize("runner", ["blip-caption", "git-caption"])
def test_streamed_caption_grows_to_the_greedy_caption(tmp_path, monkeypatch, tiny_models, images, runner):
    p = load_tiny(tmp_path, monkeypatch, tiny_models, CAPTION, runner, f"tiny-{runner}-stream")
    parts = list(p.stream(images[0], max_new_tokens=8))
    assert parts and parts[-1] == p(images[0], num_beams=1, max_new_tokens=8)[0]["generated_text"]
    assert all(b.startswith(a.rstrip()) for a, b in zip(parts, parts[1:], strict=False))  # text only grows


def test_closing_a_stream_stops_generation(tmp_path, monkeypatch, tiny_models, images):
    import threading

    p = load_tiny(tmp_path, monkeypatch, tiny_models, CAPTION, "blip-caption", "tiny-blip-stop")
    stream = p.stream(images[1], max_new_tokens=100)
    next(stream)
    stream.close()  # what Gradio does when a user presses Stop
    assert not any(t.name == "mmdemo-generate" and t.is_alive() for t in threading.enumerate())
    assert p(images[1], num_beams=1, max_new_tokens=4)  # the model serves the next request


def test_a_generation_that_runs_too_long_is_cut_at_the_time_cap(tmp_path, monkeypatch, tiny_models, images):
    import time

    from mmdemo.backends.hf.loading import GENERATION_SECONDS

    p = load_tiny(tmp_path, monkeypatch, tiny_models, CAPTION, "git-caption", "tiny-git-slow")
    assert p.backend.model.generation_config.max_time == GENERATION_SECONDS  # every loaded model carries the cap
    full = p(images[0], num_beams=1, max_new_tokens=60)[0]["generated_text"]
    slow = p.backend.model.register_forward_pre_hook(lambda *_: time.sleep(0.05))  # far slower than the cap allows
    monkeypatch.setattr(p.backend.model.generation_config, "max_time", 0.3)
    try:
        start = time.perf_counter()
        cut = p(images[0], num_beams=1, max_new_tokens=60)[0]["generated_text"]
        assert time.perf_counter() - start < 2.0  # 60 tokens would take over 3 s
    finally:
        slow.remove()
    assert len(cut.split()) < len(full.split()) and full.startswith(cut)


def test_captions_under_concurrent_load_equal_one_at_a_time(tmp_path, monkeypatch, tiny_models, images):
    """Images are prepared (resized, normalised) in each caller's thread and batched across callers; the captions
    equal the ones the backend gives each raw image alone."""
    p = load_tiny(tmp_path, monkeypatch, tiny_models, CAPTION, "blip-caption", "tiny-blip-concurrent")
    cases = images * 6
    alone = [p.backend([{"image": im}], num_beams=1, max_new_tokens=8)[0] for im in cases]
    before = len(p.backend._batcher.batch_sizes) if hasattr(p.backend, "_batcher") else 0
    with ThreadPoolExecutor(9) as pool:
        together = list(pool.map(lambda im: p(im, num_beams=1, max_new_tokens=8), cases))
    assert together == alone
    assert max(p.backend._batcher.batch_sizes[before:]) > 1


def test_cpu_bf16_entries_load_in_bf16_where_the_cpu_has_it(tmp_path, monkeypatch, tiny_models):
    import torch

    path = str(tiny_models["blip-caption"])
    catalog_entry(tmp_path, monkeypatch, "tiny-blip-bf16", CAPTION, "blip-caption", path=path, cpu_bf16=True)
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    p = mmdemo.pipeline(CAPTION, model="tiny-blip-bf16", device="cpu")
    assert p.backend.model.dtype == (torch.bfloat16 if native else torch.float32)
    assert p(Image.new("RGB", (40, 30), "red"), max_new_tokens=4)[0]["generated_text"] is not None
    mmdemo.unload("tiny-blip-bf16")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert mmdemo.pipeline(CAPTION, model="tiny-blip-bf16", device="cpu").backend.model.dtype == torch.float32
