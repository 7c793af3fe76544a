"""Generated sounds, the audio classifier built tiny in code, its recipe end to end, the audio-classification
pipeline, and the shipped model (assets/models/sounds) on held-out clips."""

import json

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_user_message

import mmdemo
from mmdemo import evaluate, train
from mmdemo.audio import SAMPLE_RATE, load_audio, mel_filterbank
from mmdemo.data import sounds
from mmdemo.models.audio_classifier import PRESETS, AudioClassifier, AudioClassifierConfig
from mmdemo.models.checkpoint import load_checkpoint, save_checkpoint

TASK = "audio-classification"
SHIPPED = ROOT / "assets" / "models" / "sounds"
EXAMPLES = ROOT / "assets" / "examples" / "sounds"
TARGET = 0.98


def tiny_model(seed: int = 0) -> AudioClassifier:
    torch.manual_seed(seed)
    return AudioClassifier(AudioClassifierConfig(**PRESETS["tiny"], labels=list(sounds.CLASSES)))


@pytest.fixture(scope="module")
def tiny_sounds(tmp_path_factory):
    """A tiny audio-classifier checkpoint trained for one epoch on 100 clips, through `mmdemo train`."""
    out = tmp_path_factory.mktemp("tiny-sounds")
    args = ["--task", TASK, "--dataset", "sounds", "--preset", "tiny", "--size", "100", "--epochs", "1"]
    report = train.main([*args, "--batch-size", "25", "--out", str(out), "--device", "cpu"])
    assert report["epochs"] == 1 and 0 <= report["train_accuracy"] <= 1
    return out


@pytest.fixture(scope="module")
def classifier(tiny_sounds):
    return mmdemo.pipeline(TASK, model=str(tiny_sounds), device="cpu")


# ---------------------------------------------------------------- the generator


def test_same_seed_same_clips_any_size_any_order():
    a, b = sounds.generate(20, seed=0), sounds.generate(30, seed=0)
    np.testing.assert_array_equal(a.audio, b.audio[:20])
    assert a.labels == b.labels[:20]
    picked = sounds.clips([17, 3], seed=0)
    np.testing.assert_array_equal(picked.audio, a.audio[[17, 3]])
    np.testing.assert_array_equal(sounds.generate(5, seed=0, start=15).audio, a.audio[15:])


def test_different_seeds_share_no_clip():
    train_clips, test_clips = sounds.generate(20, seed=0).audio, sounds.generate(20, seed=sounds.TEST_SEED).audio
    assert not np.isclose(train_clips[:, None], test_clips[None]).all(axis=-1).any()
    assert not np.array_equal(sounds.generate(10, seed=1).audio, train_clips[:10])


def test_classes_are_balanced_and_labelled():
    data = sounds.generate(200, seed=3)
    assert len(sounds.CLASSES) >= 8 and len(set(sounds.CLASSES)) == len(sounds.CLASSES)
    assert np.bincount(data.label_ids).tolist() == [20] * len(sounds.CLASSES)
    assert data.labels == [sounds.CLASSES[i] for i in data.label_ids]


def test_clips_are_16khz_float_in_range_and_vary():
    data = sounds.generate(40, seed=5)
    assert sounds.SAMPLE_RATE == SAMPLE_RATE == 16_000
    assert data.audio.shape == (40, int(sounds.CLIP_SECONDS * SAMPLE_RATE)) and data.audio.dtype == np.float32
    assert np.isfinite(data.audio).all() and np.abs(data.audio).max() <= 1.0
    peaks = np.abs(data.audio).max(axis=1)
    assert peaks.min() > 0.01 and peaks.max() / peaks.min() > 3  # random loudness, never silence


def test_tone_and_chirp_pitches_behave():
    """A tone keeps one pitch; a rising chirp's pitch rises and a falling one's falls."""
    data = sounds.generate(30, seed=7)
    for audio, label in zip(data.audio, data.labels, strict=True):
        if label not in ("tone", "rising-chirp", "falling-chirp"):
            continue
        frames = np.abs(np.fft.rfft(audio[: len(audio) // 512 * 512].reshape(-1, 512) * np.hanning(512)))
        loud = frames.max(1) > 0.3 * frames.max()  # frames inside the event
        pitch = frames[loud].argmax(1)
        change = np.median(pitch[-3:]) - np.median(pitch[:3])
        assert {"tone": abs(change) <= 1, "rising-chirp": change > 3, "falling-chirp": change < -3}[label], label


def test_example_files_are_one_per_class(tmp_path):
    paths = sounds.write_examples(tmp_path, seed=sounds.EXAMPLES_SEED)
    assert sorted(p.stem for p in paths) == sorted(sounds.CLASSES)
    assert "seed" in (tmp_path / "README.md").read_text()
    x = load_audio(paths[0])
    assert len(x) == int(sounds.CLIP_SECONDS * SAMPLE_RATE)


# ---------------------------------------------------------------- the model


def test_mel_filterbank_matches_librosa():
    """Fingerprint of librosa.filters.mel(sr=16000, n_fft=512, n_mels=48) (librosa 0.11, Slaney default)."""
    fb = mel_filterbank(16000, 512, 48, 0.0, 8000.0)
    assert fb.shape == (48, 257) and fb.dtype == np.float32
    assert fb.sum() == pytest.approx(1.5358507633209229, rel=1e-6)
    assert (fb.astype(np.float64) ** 2).sum() == pytest.approx(0.010019565001130104, rel=1e-6)
    np.testing.assert_allclose(fb[[0, 20, 47]].max(1), [0.0159962587, 0.0104278149, 0.0020607195], rtol=1e-6)
    assert fb.argmax(1)[[0, 19, 30, 47]].tolist() == [2, 41, 82, 240]


@pytest.mark.parametrize("seconds", [0.1, 0.7, 2.0])
def test_forward_shape_finite_any_length(seconds):
    model = tiny_model().eval()
    x = torch.from_numpy(sounds.generate(3, seed=1).audio[:, : int(seconds * SAMPLE_RATE)].copy())
    features = model.log_mel(x)
    assert features.shape[:3] == (3, 1, model.config.n_mels) and features.shape[3] >= model.min_frames
    assert features.min() >= -1 and features.max() == pytest.approx(1.0)
    logits = model(x)
    assert logits.shape == (3, len(sounds.CLASSES)) and torch.isfinite(logits).all() and logits.std() > 0


def test_backward_reaches_every_parameter():
    model = tiny_model().train()
    data = sounds.generate(10, seed=2)
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(data.audio)), torch.from_numpy(data.label_ids))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_features_ignore_loudness():
    model = tiny_model().eval()
    x = torch.from_numpy(sounds.generate(4, seed=4).audio)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(0.05 * x), atol=1e-4, rtol=1e-4)


def test_checkpoint_round_trip_carries_the_front_end(tmp_path):
    model = tiny_model(seed=3).eval()
    save_checkpoint(model, tmp_path, extra={"note": "test"})
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["architecture"] == "mmdemo-audio-classifier" and meta["note"] == "test"
    assert meta["config"]["labels"] == list(sounds.CLASSES) and meta["config"]["sample_rate"] == SAMPLE_RATE
    loaded, tokenizer, _ = load_checkpoint(tmp_path)
    assert tokenizer is None
    torch.testing.assert_close(loaded.mel_filters, model.mel_filters)
    x = torch.from_numpy(sounds.generate(3, seed=6).audio)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


# ---------------------------------------------------------------- recipe and pipeline


def test_training_writes_a_checkpoint_the_pipeline_serves(tiny_sounds, classifier):
    assert {p.name for p in tiny_sounds.iterdir()} == {"config.json", "model.safetensors"}
    meta = json.loads((tiny_sounds / "config.json").read_text())
    assert meta["training"]["size"] == 100 and meta["training"]["seed"] == 0
    result = classifier(str(EXAMPLES / "siren.wav"), top_k=3)
    assert len(result) == 3 and all(r["label"] in sounds.CLASSES for r in result)
    assert all(isinstance(r["score"], float) for r in result)
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    assert len(classifier((SAMPLE_RATE, sounds.clip(9, 0)), top_k=50)) == len(sounds.CLASSES)


def test_training_refuses_the_held_out_seed(tmp_path):
    with pytest.raises(ValueError, match="held out"):
        train.main(["--task", TASK, "--preset", "tiny", "--size", "10", "--seed", str(sounds.TEST_SEED)])


def test_batched_equals_one_at_a_time(classifier):
    data = sounds.generate(6, seed=11)
    clips = [
        (SAMPLE_RATE, data.audio[0]),
        {"array": data.audio[1][:20_000], "sampling_rate": SAMPLE_RATE},
        str(EXAMPLES / "chord.wav"),
        (44100, (np.resize(data.audio[2], 44100) * 32767).astype(np.int16)),
        (SAMPLE_RATE, data.audio[3]),
        (8000, data.audio[4][::2].copy()),
    ]
    batched = classifier(clips, top_k=3)
    assert len(batched) == len(clips)
    for clip, together in zip(clips, batched, strict=True):
        alone = classifier(clip, top_k=3)
        assert [r["label"] for r in alone] == [r["label"] for r in together]
        np.testing.assert_allclose([r["score"] for r in alone], [r["score"] for r in together], atol=1e-5)
    assert classifier([], top_k=3) == []


def test_bad_inputs_are_refused_before_any_model_call(classifier, monkeypatch, tmp_path):
    calls = []

    class Spy:
        def validate(self, item):
            pass

        def __call__(self, items, **params):
            calls.append(items)
            return [[] for _ in items]

    monkeypatch.setattr(classifier, "backend", Spy())
    (tmp_path / "photo.wav").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    good = (SAMPLE_RATE, sounds.clip(0, 1))
    for bad, words in [
        ((SAMPLE_RATE, np.zeros(16000, np.int16)), "silent"),
        (str(tmp_path / "photo.wav"), "not audio"),
        ((0, sounds.clip(0, 1)), "sampling rate"),
        ((SAMPLE_RATE, np.full(16000, np.nan, np.float32)), "NaN"),
    ]:
        with pytest.raises(mmdemo.InputError) as e:
            classifier([good, bad])
        assert str(e.value).startswith("Input 2: ") and words in str(e.value)
        assert_user_message(str(e.value), str(tmp_path))
    assert calls == []
    for top_k in (0, -1, 2.5, True, "3"):
        with pytest.raises(mmdemo.InputError, match="top_k"):
            classifier(good, top_k=top_k)


def test_runner_resamples_clips_at_other_rates(classifier):
    x8k = sounds.clip(0, 7)[::2].copy()  # 8 kHz
    at_8k = classifier.backend([{"audio": x8k, "sampling_rate": 8000}], top_k=1)
    assert at_8k[0][0]["label"] in sounds.CLASSES
    with pytest.raises(mmdemo.InputError, match="too short"):
        classifier.backend.validate({"audio": np.zeros(100, np.float32), "sampling_rate": SAMPLE_RATE})


def test_evaluate_writes_the_contract_report(tiny_sounds, tmp_path):
    path = tmp_path / "eval.json"
    args = ["--task", TASK, "--dataset", "sounds", "--split", "test", "--size", "20", "--model", str(tiny_sounds)]
    report = evaluate.main([*args, "--latency-samples", "3", "--json", str(path), "--device", "cpu"])
    assert json.loads(path.read_text()) == report
    assert report["task"] == TASK and report["dataset"] == "sounds" and report["split"] == "test" and report["n"] == 20
    assert 0 <= report["metrics"]["accuracy"] <= 1 and 0 <= report["metrics"]["macro_f1"] <= 1
    assert report["metrics"]["seed"] == sounds.TEST_SEED
    assert report["latency_ms"]["p50"] > 0 and report["latency_ms"]["p95"] >= report["latency_ms"]["p50"]


# ---------------------------------------------------------------- the shipped model


def test_catalog_default_is_the_shipped_model():
    (info,) = [m for m in mmdemo.list_models(TASK) if TASK in m.default_for]
    assert info.name == "mmdemo-sounds" and info.offline and info.backend == "native"


def test_shipped_model_on_held_out_clips_and_the_examples():
    assert (SHIPPED / "model.safetensors").is_file(), f"the shipped checkpoint is missing: {SHIPPED}"
    assert (SHIPPED / "model.safetensors").stat().st_size < 5_000_000
    classifier = mmdemo.pipeline(TASK)  # the task's default
    assert classifier.info.name == "mmdemo-sounds"
    data = sounds.generate(400, seed=sounds.TEST_SEED)
    predictions = [r[0]["label"] for r in classifier([(SAMPLE_RATE, a) for a in data.audio], top_k=1)]
    wrong = [(t, p) for t, p in zip(data.labels, predictions, strict=True) if t != p]
    accuracy = 1 - len(wrong) / len(data)
    assert accuracy >= TARGET, f"accuracy {accuracy:.4f} < {TARGET}: {wrong[:10]}"
    for path in sorted(EXAMPLES.glob("*.wav")):
        assert classifier(str(path), top_k=1)[0]["label"] == path.stem
