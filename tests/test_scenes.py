"""Generated scenes, the captioner and the scene classifier: data, models, training and pipelines."""

import numpy as np
import pytest
import torch

import mmdemo
import mmdemo.evaluate
from mmdemo import train
from mmdemo.data import scenes
from mmdemo.models.captioner import Captioner, CaptionerConfig
from mmdemo.models.checkpoint import load_checkpoint, save_checkpoint
from mmdemo.recipes.captions import caption_metrics


def test_scenes_are_deterministic_from_the_seed():
    a, b, c = scenes.generate(20, seed=5), scenes.generate(20, seed=5), scenes.generate(20, seed=6)
    assert all(np.array_equal(x.image, y.image) and x.captions == y.captions for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=True))


def test_scenes_cover_counts_sizes_and_relations():
    data = scenes.generate(400, seed=1)
    assert {len(s.shapes) for s in data} == {1, 2, 3, 4}
    assert {s.size for d in data for s in d.shapes} == set(scenes.SIZES)
    assert {s.color for d in data for s in d.shapes} == set(scenes.COLORS)
    for s in data:
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert [x.column for x in s.shapes] == sorted({x.column for x in s.shapes})  # left to right, one a column
        assert len(s.captions) >= 3 and len(set(s.captions)) == len(s.captions)
        assert s.label == f"{s.shapes[0].color} {s.shapes[0].shape}" and s.label in scenes.LABELS


def test_captions_follow_the_grammar():
    red = scenes.Shape("circle", "red", "small", 0)
    blue = scenes.Shape("triangle", "blue", "large", 2)
    assert scenes.describe([red])[0] == "a small red circle"
    assert scenes.describe([red, blue])[:2] == [
        "a small red circle to the left of a large blue triangle",
        "a large blue triangle to the right of a small red circle",
    ]
    assert scenes.describe([red, blue, red])[0] == (
        "three shapes from left to right a small red circle, a large blue triangle and a small red circle"
    )


def test_the_drawn_colours_are_where_the_shapes_are():
    for s in scenes.generate(30, seed=2):
        for shape in s.shapes:
            column = s.image[:, shape.column * 16 : (shape.column + 1) * 16].reshape(-1, 3)
            assert (column == scenes.COLORS[shape.color]).all(axis=1).sum() >= 20  # at least a small shape's area


def test_caption_metrics_use_every_reference():
    refs = [["a small red circle", "one small red circle"], ["a large blue triangle", "there is a large blue triangle"]]
    perfect = caption_metrics(["one small red circle", "a large blue triangle"], refs)
    assert perfect["exact_match"] == 1.0 and perfect["bleu_4"] > 0.99 and perfect["cider"] > 1.0
    wrong = caption_metrics(["a large green square", "a small red circle"], refs)
    assert wrong["exact_match"] == 0.0 and wrong["bleu_1"] < perfect["bleu_1"] and wrong["cider"] < perfect["cider"]


def tiny_captioner() -> Captioner:
    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "red", "circle"]
    return Captioner(CaptionerConfig(cnn_channels=(8, 16), embed_dim=8, hidden=16, vocab_size=7, words=words)).eval()


def test_beam_search_with_one_beam_is_greedy_decoding():
    model = tiny_captioner()
    images = torch.from_numpy(np.stack([s.image for s in scenes.generate(6, seed=3)]))
    ids, scores = model.generate(images, num_beams=1, max_new_tokens=8)
    (image, state), token, greedy = model.encode_image(images), torch.full((6,), 2), []
    for _ in range(8):
        logp, state = model._step(token, image, state)
        token = logp[:, 3:].argmax(-1) + 3  # words or [EOS]
        greedy.append(token)
    for row, expected in zip(ids, torch.stack(greedy, 1).tolist(), strict=True):
        cut = expected.index(3) if 3 in expected else len(expected)
        assert row == [i for i in expected[:cut] if i > 3]


def test_beam_search_finds_captions_at_least_as_likely_as_greedy():
    model = tiny_captioner()
    images = torch.from_numpy(np.stack([s.image for s in scenes.generate(6, seed=4)]))
    _, greedy = model.generate(images, num_beams=1, max_new_tokens=6)
    _, beam = model.generate(images, num_beams=4, max_new_tokens=6)
    assert all(b >= g - 1e-5 for b, g in zip(beam, greedy, strict=True))


def test_captioner_checkpoint_round_trip(tmp_path):
    model = tiny_captioner()
    save_checkpoint(model, tmp_path / "c")
    loaded, tokenizer, meta = load_checkpoint(tmp_path / "c")
    assert tokenizer is None and meta["architecture"] == "mmdemo-captioner"
    images = torch.from_numpy(np.stack([s.image for s in scenes.generate(3, seed=5)]))
    ids = torch.tensor([[2, 4, 5, 6]] * 3)
    assert torch.allclose(model(images, ids), loaded(images, ids))


@pytest.fixture(scope="module")
def tiny_captioner_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("captioner")
    args = ["--task", "image-to-text", "--preset", "tiny", "--size", "300", "--epochs", "2", "--device", "cpu"]
    report = train.main([*args, "--out", str(out)])
    assert report["epochs"] == 2 and report["final_loss"] > 0
    return out


def test_trained_captioner_captions_through_the_pipeline(tiny_captioner_dir):
    captioner = mmdemo.pipeline("image-to-text", model=str(tiny_captioner_dir))
    images = [s.image for s in scenes.generate(5, seed=9)]
    one = captioner(images[0])
    assert isinstance(one, list) and len(one) == 1 and isinstance(one[0]["generated_text"], str)
    batched = captioner(images, num_beams=2)
    assert batched == [captioner(im, num_beams=2) for im in images]
    words = set(captioner.backend.model.config.words)
    assert all(set(r[0]["generated_text"].split()) <= words for r in batched)


def test_captioner_eval_writes_the_contract_report(tiny_captioner_dir, tmp_path):
    report = mmdemo.evaluate.main(
        [
            "--task",
            "image-to-text",
            "--model",
            str(tiny_captioner_dir),
            "--limit",
            "20",
            "--latency-samples",
            "3",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert report["task"] == "image-to-text" and report["n"] == 20
    assert {"bleu_1", "bleu_4", "cider", "exact_match"} <= set(report["metrics"])
    assert report["latency_ms"]["p50"] > 0 and (tmp_path / "r.json").exists()


def test_scene_classifier_trains_and_classifies(tmp_path):
    out = tmp_path / "cls"
    args = ["--task", "image-classification", "--preset", "tiny", "--size", "300", "--epochs", "1"]
    train.main([*args, "--device", "cpu", "--out", str(out)])
    classifier = mmdemo.pipeline("image-classification", model=str(out))
    images = [s.image for s in scenes.generate(4, seed=8, max_shapes=1)]
    results = classifier(images, top_k=3)
    assert len(results) == 4 and all(len(r) == 3 for r in results)
    assert all(x["label"] in scenes.LABELS and 0 <= x["score"] <= 1 for r in results for x in r)
    for batched, alone in zip(results, [classifier(im, top_k=3) for im in images], strict=True):
        assert [x["label"] for x in batched] == [x["label"] for x in alone]
        assert np.allclose([x["score"] for x in batched], [x["score"] for x in alone], atol=1e-5)


def test_the_native_captioner_streams_word_by_word(tiny_captioner_dir):
    captioner = mmdemo.pipeline("image-to-text", model=str(tiny_captioner_dir))
    image = scenes.generate(1, seed=11)[0].image
    parts = list(captioner.stream(image, max_new_tokens=12))
    assert parts[-1] == captioner(image, num_beams=1, max_new_tokens=12)[0]["generated_text"]
    assert [len(p.split()) for p in parts] == list(range(1, len(parts) + 1))  # one more word each time
    with pytest.raises(mmdemo.InputError, match="one image"):
        next(captioner.stream([image, image]))
