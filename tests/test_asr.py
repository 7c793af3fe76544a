"""Offline speech recognition: real speech made by espeak-ng, transcribed by the bundled Whisper tiny.en on CPU.

These tests need Debian's espeak-ng (`apt-get install -y espeak-ng`, as .ci/run does); without it they fail
rather than skip, so that CI cannot pass without hearing speech.
"""

import dataclasses
import json
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, VQA, read_wav, write_wav

import mmdemo
from mmdemo.audio import load_audio
from mmdemo.backends import load_backend, whisper_ct2
from mmdemo.registry import find_model

ASR = "automatic-speech-recognition"
OFFLINE_ASR = "whisper-tiny-en-offline"  # the bundled model (the default only where the hub is off)
QUESTIONS = ["what color is the circle", "is there a red shape", "what shape is in the image"]
SENTENCE = "the weather is nice today"


def words(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: 'What color is it?' -> 'what color is it'."""
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def asr():
    return mmdemo.pipeline(ASR, model=OFFLINE_ASR, device="cpu")


@pytest.fixture(scope="module")
def heard(speak, asr) -> dict[str, str]:
    """What the model hears in each spoken file, one call a file: {text spoken: transcript}."""
    return {text: asr(str(speak(text)))["text"] for text in [*QUESTIONS, SENTENCE]}


def test_the_default_is_the_offline_whisper():
    info = find_model(ASR, OFFLINE_ASR)
    assert (info.name, info.backend, info.offline) == ("whisper-tiny-en-offline", "faster-whisper", True)
    assert info.license.startswith("MIT")
    assert set(info.extra["sha256"]) == {"config.json", "model.bin", "tokenizer.json", "vocabulary.txt"}


@pytest.mark.parametrize("text", [*QUESTIONS, SENTENCE])
def test_speech_is_transcribed_word_for_word(heard, text):
    assert words(heard[text]) == text, heard[text]


@pytest.mark.parametrize(
    ("question", "image", "answer"),
    [("what color is the circle", "5.png", "brown"), ("what shape is in the image", "5.png", "circle")],
)
def test_a_spoken_question_is_answered(heard, question, image, answer):
    """Spoken question -> text -> the VQA model's answer about an example image (5.png: a brown circle)."""
    vqa = mmdemo.pipeline(VQA)
    assert vqa(EXAMPLES / image, heard[question], top_k=1)[0]["answer"] == answer


def test_results_are_plain_and_a_list_gives_a_list_in_order(speak, asr, heard):
    texts = [QUESTIONS[1], SENTENCE, QUESTIONS[0]]
    results = asr([str(speak(t)) for t in texts])
    assert results == [{"text": heard[t]} for t in texts]
    assert type(results[0]["text"]) is str
    assert json.loads(json.dumps(results)) == results
    assert asr([]) == []


def test_array_inputs_hear_what_the_file_holds(speak, asr, heard):
    """Gradio's (rate, int16 array) and Hugging Face's {"array", "sampling_rate"} give the file's transcript."""
    rate, samples = read_wav(speak(QUESTIONS[1]))
    assert rate != 16_000  # espeak-ng speaks at 22.05 kHz: the pipeline resamples
    assert asr((rate, samples)) == {"text": heard[QUESTIONS[1]]}
    assert asr({"array": samples.astype(np.float32) / 2**15, "sampling_rate": rate}) == {"text": heard[QUESTIONS[1]]}


def test_a_44k1_stereo_recording_is_transcribed(speak, asr, tmp_path):
    """What a browser microphone sends: 44.1 kHz 16-bit WAV, here in stereo with one channel quieter."""
    import soxr

    rate, samples = read_wav(speak(QUESTIONS[0]))
    mono = soxr.resample(samples.astype(np.float32) / 2**15, rate, 44_100)
    stereo = np.round(np.stack([mono, 0.6 * mono], axis=1) * 2**15).clip(-(2**15), 2**15 - 1)
    path = write_wav(tmp_path / "stereo.wav", 44_100, stereo.astype(np.int16))
    assert words(asr(str(path))["text"]) == QUESTIONS[0]


def test_silence_is_refused_and_noise_gives_no_text(asr):
    with pytest.raises(mmdemo.InputError, match="silent"):
        asr((16_000, np.zeros(32_000, np.int16)))
    with pytest.raises(mmdemo.InputError, match="too long"):
        asr((16_000, np.full(31 * 16_000, 1000, np.int16)))
    # Whisper would hear "you" in noise; the model's no-speech probability (0.95 here) drops it
    noise = np.random.default_rng(0).normal(0, 0.1, 32_000).astype(np.float32)
    assert asr({"array": noise, "sampling_rate": 16_000}) == {"text": ""}


def test_a_bad_input_in_a_list_is_named(asr, speak):
    with pytest.raises(mmdemo.InputError, match="Input 2: .*silent"):
        asr([str(speak(SENTENCE)), (16_000, np.zeros(16_000, np.int16))])


def test_loading_and_transcribing_never_touch_the_network(speak, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access: {args}")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    backend = load_backend(find_model(ASR, OFFLINE_ASR), "cpu")  # a fresh load, not the pipeline's cached one
    rate, samples = read_wav(speak(SENTENCE))
    (result,) = backend([{"audio": load_audio((rate, samples))}])
    assert words(result["text"]) == SENTENCE


def test_a_changed_model_file_is_refused_before_loading():
    info = find_model(ASR, OFFLINE_ASR)
    pins = info.extra["sha256"]
    changed = dataclasses.replace(info, extra={"sha256": {**pins, "model.bin": "0" * 64}})
    with pytest.raises(RuntimeError, match=r"model\.bin does not match its pinned sha256.*reinstall"):
        whisper_ct2.load(changed, "cpu")
    unpinned = dataclasses.replace(info, extra={"sha256": {k: v for k, v in pins.items() if k != "tokenizer.json"}})
    with pytest.raises(ValueError, match="no sha256 pinned .*tokenizer.json.*929c5252"):
        whisper_ct2.load(unpinned, "cpu")


def test_import_mmdemo_leaves_the_speech_runtime_unloaded():
    code = (
        "import sys, mmdemo; mmdemo.list_models(); "
        "print(sorted({'faster_whisper', 'ctranslate2', 'onnxruntime', 'huggingface_hub'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_transcript_streams_segment_by_segment(speak, asr, heard):
    assert asr.streams
    parts = list(asr.stream(str(speak(SENTENCE))))
    assert parts and parts[-1] == heard[SENTENCE]
    assert list(asr.stream(str(speak(QUESTIONS[0]))))[-1] == heard[QUESTIONS[0]]
