"""The recommended hub models with their real weights, on the example photos and sounds.

Marked `slow`: they download about 3 GB, so they run only with MMDEMO_SLOW=1 where the hub is reachable
(`MMDEMO_SLOW=1 python -m pytest tests/test_hf_real.py`), and skip otherwise.
"""

import pytest
from conftest import ROOT

import mmdemo

pytestmark = pytest.mark.slow
PHOTOS = ROOT / "assets" / "examples" / "photos"


def test_blip_captions_a_photo():
    text = mmdemo.pipeline("image-to-text", model="blip-image-captioning-base")(str(PHOTOS / "coffee.jpg"))
    assert any(word in text[0]["generated_text"] for word in ("coffee", "cup", "espresso"))


def test_blip_and_vilt_answer_about_a_photo():
    for name in ("blip-vqa-base", "vilt-b32-finetuned-vqa"):
        answers = mmdemo.pipeline("visual-question-answering", model=name)(
            str(PHOTOS / "cat.jpg"), "what animal is this?"
        )
        assert answers[0]["answer"] in {"cat", "cats", "kitten"}, (name, answers)


def test_vit_classifies_a_photo():
    labels = mmdemo.pipeline("image-classification", model="vit-base-patch16-224")(str(PHOTOS / "coffee.jpg"))
    assert "espresso" in labels[0]["label"]


def test_siglip_and_clip_pick_the_right_label():
    labels = ["a photo of a cat", "a photo of a dog", "a photo of a rocket"]
    for name in ("siglip-base-patch16-224", "clip-vit-base-patch32"):
        result = mmdemo.pipeline("zero-shot-image-classification", model=name)(
            str(PHOTOS / "cat.jpg"), candidate_labels=labels
        )
        assert result[0]["label"] == "a photo of a cat", (name, result)


def test_ast_hears_a_siren():
    labels = mmdemo.pipeline("audio-classification", model="ast-audioset")(
        str(ROOT / "assets" / "examples" / "sounds" / "siren.wav")
    )
    assert any("siren" in r["label"].lower() for r in labels), labels


def test_whisper_base_transcribes_speech(speak):
    text = mmdemo.pipeline("automatic-speech-recognition", model="whisper-base")(str(speak("what color is the circle")))
    assert "color is the circle" in text["text"].lower()


@pytest.mark.parametrize("name", ["blip-image-captioning-base", "blip-image-captioning-large"])
def test_bf16_captions_agree_with_fp32(name):
    """Entries with cpu_bf16 run in bf16 on CPUs that have it: their captions of the example photos must agree with
    fp32's (the same caption for at least 4 of the 5 photos)."""
    import dataclasses

    from mmdemo.backends import load_backend
    from mmdemo.inputs import load_image
    from mmdemo.registry import find_model

    info = find_model("image-to-text", name)
    items = [{"image": load_image(p)} for p in sorted(PHOTOS.glob("*.jpg"))]
    captions = {
        dtype: [r[0]["generated_text"] for r in load_backend(dataclasses.replace(info, dtype=dtype), "cpu")(items)]
        for dtype in ("float32", "bfloat16")
    }
    same = sum(a == b for a, b in zip(captions["float32"], captions["bfloat16"], strict=True))
    assert same >= 4, captions
