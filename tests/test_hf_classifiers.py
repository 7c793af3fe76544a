"""The transformers backend's classifier and Whisper runners, on tiny randomly initialised models of the real
architectures, built here and saved like hub checkpoints. Each runs through a user catalog and mmdemo.pipeline,
batched, and must agree with plain transformers usage one input at a time."""

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image

import mmdemo
from mmdemo.errors import InputError

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["a", "photo", "of", "cat", "dog", "red", "car", "bird", ".", "hello", "world", "the"]
LABELS = ["cat", "dog", "red car", "bird"]
RATE = 16_000


def tiny_tokenizer(extra: tuple[str, ...] = (), **special: str):
    """A word-level fast tokenizer over WORDS, with the named special tokens (bos_token="<s>" ...) and `extra` ones."""
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *special.values(), *extra, *WORDS])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    if "eos_token" in special:  # CLIP pools its text at the end-of-text token: the tokenizer must add it
        ends = [t for t in (special.get("bos_token"), "$A", special["eos_token"]) if t]
        tok.post_processor = tokenizers.processors.TemplateProcessing(
            single=" ".join(ends), special_tokens=[(t, vocab[t]) for t in ends if t != "$A"]
        )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", **special
    )  # fmt: skip
    tokenizer.add_special_tokens({"additional_special_tokens": list(extra)})
    return tokenizer


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((40, 40), (30, 50), (64, 20))]


def clips() -> list[np.ndarray]:
    """Clips of different lengths (0.3 to 1 s), so batching pads or truncates them differently; peaks under 1.0,
    which mmdemo would scale down."""
    rng = np.random.default_rng(1)
    return [(0.1 * rng.standard_normal(int(s * RATE))).astype(np.float32) for s in (0.3, 1.0, 0.55)]


VIT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8
)
TEXT = dict(vocab_size=32, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)


def build_vit(folder):
    labels = {i: f"class {i}" for i in range(7)}
    transformers.ViTForImageClassification(transformers.ViTConfig(**VIT, id2label=labels)).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def build_convnext(folder):
    labels = {i: f"kind {i}" for i in range(6)}
    config = transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, id2label=labels)
    transformers.ConvNextForImageClassification(config).save_pretrained(folder)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(folder)


def build_clip(folder):
    text = dict(TEXT, max_position_embeddings=32, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    config = transformers.CLIPConfig(text_config=text, vision_config=VIT, projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(folder)
    images = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    tokenizer = tiny_tokenizer(bos_token="<s>", eos_token="</s>")
    transformers.CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)


def build_siglip(folder):
    # SigLIP's own tokenizer is sentencepiece; SiglipProcessor takes any fast tokenizer, which is all scoring needs
    text = dict(TEXT, max_position_embeddings=64, eos_token_id=2, pad_token_id=0)
    transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config=VIT)).save_pretrained(folder)
    images = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    tokenizer = tiny_tokenizer(eos_token="</s>")
    transformers.SiglipProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)


def build_ast(folder):
    labels = {i: f"sound {i}" for i in range(5)}
    config = transformers.ASTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, patch_size=16,
        num_mel_bins=16, max_length=48, frequency_stride=8, time_stride=8, id2label=labels,
    )  # fmt: skip
    transformers.ASTForAudioClassification(config).save_pretrained(folder)
    transformers.ASTFeatureExtractor(num_mel_bins=16, max_length=48).save_pretrained(folder)


def build_whisper(folder):
    """An English-only Whisper reading 1 s windows (chunk_length=1: 100 frames) with a word-level tokenizer."""
    special = {"eos_token": "<|endoftext|>", "bos_token": "<|startoftranscript|>"}
    tokenizer = tiny_tokenizer(("<|notimestamps|>",), **special)
    ids = tokenizer.convert_tokens_to_ids
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=16,
        max_source_positions=50, max_target_positions=32, pad_token_id=0, bos_token_id=ids("<|startoftranscript|>"),
        eos_token_id=ids("<|endoftext|>"), decoder_start_token_id=ids("<|startoftranscript|>"),
    )  # fmt: skip
    model = transformers.WhisperForConditionalGeneration(config)
    generation = model.generation_config
    generation.no_timestamps_token_id, generation.is_multilingual = ids("<|notimestamps|>"), False
    # as real Whisper checkpoints do: never emit prompt tokens, and not end before a first word, so the text has words
    generation.suppress_tokens = ids(["[PAD]", "[UNK]", "<|startoftranscript|>", "<|notimestamps|>"])
    generation.begin_suppress_tokens = [ids("<|endoftext|>")]
    model.save_pretrained(folder)
    features = transformers.WhisperFeatureExtractor(feature_size=16, chunk_length=1)
    transformers.WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)


BUILDERS = {
    "image-classifier-vit": ("image-classification", "image-classifier", build_vit),
    "image-classifier-convnext": ("image-classification", "image-classifier", build_convnext),
    "clip-zero-shot": ("zero-shot-image-classification", "clip-zero-shot", build_clip),
    "siglip-zero-shot": ("zero-shot-image-classification", "siglip-zero-shot", build_siglip),
    "audio-classifier": ("audio-classification", "audio-classifier", build_ast),
    "whisper": ("automatic-speech-recognition", "whisper", build_whisper),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    """Every tiny model saved to a folder, and a user catalog naming them: returns name -> folder."""
    root = tmp_path_factory.mktemp("hf-tiny")
    entries, folders = [], {}
    for name, (task, runner, build) in BUILDERS.items():
        torch.manual_seed(0)
        folders[name] = str(root / name)
        build(folders[name])
        entries.append(
            f'[[model]]\nname = "test-hf-{name}"\ntasks = ["{task}"]\nbackend = "transformers"\n'
            f'runner = "{runner}"\npath = {json.dumps(folders[name])}\noffline = true\ndtype = "float32"\n'
        )
    (root / "catalog.toml").write_text("\n".join(entries))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMDEMO_CATALOG", str(root / "catalog.toml"))
        yield folders


def run(name: str, *args, **kwargs):
    task = BUILDERS[name][0]
    return mmdemo.pipeline(task, model=f"test-hf-{name}", device="cpu")(*args, **kwargs)


def assert_same_ranking(got: list[dict], want: list[dict]) -> None:
    assert [r["label"] for r in got] == [r["label"] for r in want]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-4)
    assert all(type(r["score"]) is float and type(r["label"]) is str for r in got)


@pytest.mark.parametrize("name", ["image-classifier-vit", "image-classifier-convnext"])
def test_image_classifier_matches_transformers(tiny, name):
    reference = transformers.pipeline("image-classification", model=tiny[name], device="cpu")
    got = run(name, images(), top_k=3)
    assert len(got) == 3
    for result, image in zip(got, images(), strict=True):
        assert len(result) == 3
        assert_same_ranking(result, reference(image, top_k=3))
    assert len(run(name, images()[0], top_k=100)) == len(reference.model.config.id2label)
    default = run(name, images()[0])
    assert len(default) == 5
    assert_same_ranking(default[:3], got[0])


@pytest.mark.parametrize("name", ["clip-zero-shot", "siglip-zero-shot"])
def test_zero_shot_matches_transformers(tiny, name):
    reference = transformers.pipeline("zero-shot-image-classification", model=tiny[name], device="cpu")
    got = run(name, images(), candidate_labels=LABELS)
    assert len(got) == 3
    for result, image in zip(got, images(), strict=True):
        want = reference(image, candidate_labels=LABELS, hypothesis_template="a photo of {}.")
        assert_same_ranking(result, want)
    top = run(name, images()[0], candidate_labels=LABELS, top_k=2)
    assert_same_ranking(top, got[0][:2])
    if name == "clip-zero-shot":
        assert sum(r["score"] for r in got[0]) == pytest.approx(1.0, abs=1e-5)  # softmax over the labels


@pytest.mark.parametrize(
    "labels",
    [[], "", ["cat", ""], ["cat", "  "], ["cat", "cat"], ["x"] * 101, ["cat", 3], ["a" * 101], None],
)
def test_zero_shot_refuses_bad_labels(tiny, labels):
    if isinstance(labels, list) and len(labels) == 101:
        labels = [f"label {i}" for i in range(101)]
    with pytest.raises(InputError):
        run("clip-zero-shot", images()[0], candidate_labels=labels)


def test_audio_classifier_matches_transformers(tiny):
    extractor = transformers.ASTFeatureExtractor.from_pretrained(tiny["audio-classifier"])
    model = transformers.ASTForAudioClassification.from_pretrained(tiny["audio-classifier"]).eval()
    got = run("audio-classifier", [{"array": c, "sampling_rate": RATE} for c in clips()], top_k=3)
    for result, clip in zip(got, clips(), strict=True):
        with torch.inference_mode():
            logits = model(**extractor(clip, sampling_rate=RATE, return_tensors="pt")).logits[0]
        scores, index = logits.softmax(-1).topk(3)
        want = [
            {"label": model.config.id2label[i], "score": s}
            for s, i in zip(scores.tolist(), index.tolist(), strict=True)
        ]
        assert_same_ranking(result, want)
    single = run("audio-classifier", (RATE, clips()[0]), top_k=1)
    assert_same_ranking(single, got[0][:1])


def test_whisper_matches_transformers(tiny):
    processor = transformers.WhisperProcessor.from_pretrained(tiny["whisper"])
    model = transformers.WhisperForConditionalGeneration.from_pretrained(tiny["whisper"]).eval()
    got = run("whisper", [{"array": c, "sampling_rate": RATE} for c in clips()])
    assert len(got) == 3
    for result, clip in zip(got, clips(), strict=True):
        features = processor(clip, sampling_rate=RATE, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(features, num_beams=1, do_sample=False, max_new_tokens=16)
        assert result == {"text": processor.batch_decode(ids, skip_special_tokens=True)[0].strip()}
        assert result["text"]  # the tiny model says words (see build_whisper), so the comparison means something
    assert run("whisper", (RATE, clips()[1])) == got[1]


def test_whisper_streams_its_transcript(tiny):
    asr = mmdemo.pipeline("automatic-speech-recognition", model="test-hf-whisper", device="cpu")
    assert asr.streams
    clip = {"array": clips()[0], "sampling_rate": RATE}
    parts = list(asr.stream(clip))
    assert len(parts) > 1
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(parts))
    assert parts[-1] == asr(clip)["text"]
    with pytest.raises(InputError, match="one clip"):
        list(asr.stream([clip, clip]))
