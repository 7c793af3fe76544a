"""The chat-VLM runner on a tiny random Idefics3 (SmolVLM's architecture) built here and loaded like a hub model.

Its batched, left-padded results must equal plain transformers usage one input at a time.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image

import mmdemo

# SmolVLM's chat template: "<|im_start|>User:<image>text<end_of_utterance>\nAssistant:"
TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>"]
SPECIAL += ["<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
WORDS = ["User", "Assistant", ":", "\n", "Describe", "What", "Is", "How", "a", "the", "image", "this", "in", "one"]
WORDS += [
    "sentence",
    "what",
    "color",
    "shape",
    "is",
    "it",
    "there",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "many",
    "?",
    ".",
]
CAPTION_PROMPT = "Describe this image in one sentence."
SIZES = [(10, 60), (60, 20), (40, 40), (8, 8)]  # (height, width): 1×2, 2×1, 2×2 tiles and a global image only
QUESTIONS = ["What color is it?", "How many?", "Is there a red circle in the image?", "What shape is this?"]


def _tokenizer():
    """A word-level fast tokenizer with the special tokens Idefics3's processor looks up."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(SPECIAL + WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"\w+|[^\w\s]|\n"), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.WordPiece()  # words joined by spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        additional_special_tokens=SPECIAL[2:],
    )


@pytest.fixture(scope="module")
def tiny_smolvlm(tmp_path_factory):
    """A folder holding a random Idefics3 model (32 px tiles, 4 image tokens each) and its processor."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tokenizer = _tokenizer()
    images = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    processor = Idefics3Processor(images, tokenizer, image_seq_len=4, chat_template=TEMPLATE)  # (32/8)² / 2²
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    text = dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, **ids)
    text.update(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    config = Idefics3Config(
        text_config=text,
        vision_config=dict(vision, image_size=32, patch_size=8),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config)
    with torch.no_grad():  # default inits are so small that every reply would be the same; widen them
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.3)
    model.generation_config.update(**ids)
    out = tmp_path_factory.mktemp("tiny-smolvlm")
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _catalog(tmp_path, monkeypatch, folder, name: str, extra: str = ""):
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[[model]]\nname = "{name}"\ntasks = ["image-to-text", "visual-question-answering"]\n'
        f'backend = "transformers"\nrunner = "chat-vlm"\npath = "{folder}"\noffline = true\n'
        f'caption_prompt = "{CAPTION_PROMPT}"\n{extra}'
    )
    monkeypatch.setenv("MMDEMO_CATALOG", str(catalog))


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]


def _reference(folder, image, text: str, max_new_tokens: int, num_beams: int = 1) -> tuple[str, float]:
    """Plain transformers, one input: chat template, processor, generate -> (the new tokens decoded, and for greedy
    search their log-probability up to and including the end token)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=prompt, images=[image], return_tensors="pt")
    options = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False)
    with torch.no_grad():
        out = model.generate(**inputs, **options, return_dict_in_generate=True, output_logits=num_beams == 1)
    new = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    eos = processor.tokenizer.eos_token_id
    end = new.index(eos) + 1 if eos in new else len(new)  # the reply and its end token
    logp = sum(float(out.logits[t][0].log_softmax(-1)[new[t]]) for t in range(end)) if num_beams == 1 else math.nan
    return processor.decode(new, skip_special_tokens=True).strip(), logp


def test_captions_match_one_at_a_time(tiny_smolvlm, tmp_path, monkeypatch):
    _catalog(tmp_path, monkeypatch, tiny_smolvlm, "tiny-smolvlm-caption")
    captioner = mmdemo.pipeline("image-to-text", model="tiny-smolvlm-caption", device="cpu")
    images = _images()
    results = captioner(images, num_beams=1, max_new_tokens=6)
    assert len(results) == len(images)
    for image, result in zip(images, results, strict=True):
        assert set(result[0]) == {"generated_text"} and len(result) == 1
        assert result[0]["generated_text"] == _reference(tiny_smolvlm, image, CAPTION_PROMPT, 6)[0]
    assert len({r[0]["generated_text"] for r in results}) > 1, "replies should depend on the image"
    assert captioner(images[0], num_beams=1, max_new_tokens=6) == results[0]
    beams = captioner(images)  # the pipeline's defaults: beam search (3 beams), up to 30 tokens
    assert [r[0]["generated_text"] for r in beams] == [
        _reference(tiny_smolvlm, im, CAPTION_PROMPT, 30, 3)[0] for im in images
    ]


def test_answers_match_one_at_a_time(tiny_smolvlm, tmp_path, monkeypatch):
    _catalog(tmp_path, monkeypatch, tiny_smolvlm, "tiny-smolvlm-vqa")
    vqa = mmdemo.pipeline("visual-question-answering", model="tiny-smolvlm-vqa", device="cpu")
    images = _images()
    results = vqa(images, QUESTIONS)
    assert len(results) == len(images)
    for image, question, result in zip(images, QUESTIONS, results, strict=True):
        (answer,) = result
        assert set(answer) == {"answer", "score"}
        assert isinstance(answer["answer"], str) and isinstance(answer["score"], float)
        text, logp = _reference(tiny_smolvlm, image, question, 30)
        assert answer["answer"] == text
        assert 0.0 < answer["score"] <= 1.0
        assert math.log(answer["score"]) == pytest.approx(logp, abs=1e-3)  # random models give tiny probabilities
    (single,) = vqa(images[1], QUESTIONS[1], top_k=3)  # a generative model gives one answer whatever top_k
    assert single["answer"] == results[1][0]["answer"]
    assert math.log(single["score"]) == pytest.approx(math.log(results[1][0]["score"]), abs=1e-3)


def test_a_missing_package_is_named_before_loading(tiny_smolvlm, tmp_path, monkeypatch):
    _catalog(tmp_path, monkeypatch, tiny_smolvlm, "tiny-smolvlm-needs", 'requires = ["mmdemo_no_such_package"]\n')
    with pytest.raises(mmdemo.ModelError, match="pip install mmdemo_no_such_package"):
        mmdemo.pipeline("image-to-text", model="tiny-smolvlm-needs", device="cpu")


def test_streamed_caption_is_the_greedy_caption(tiny_smolvlm, tmp_path, monkeypatch):
    _catalog(tmp_path, monkeypatch, tiny_smolvlm, "tiny-smolvlm-stream")
    captioner = mmdemo.pipeline("image-to-text", model="tiny-smolvlm-stream", device="cpu")
    image = _images()[0]
    parts = list(captioner.stream(image, max_new_tokens=6))
    assert parts[-1] == captioner(image, num_beams=1, max_new_tokens=6)[0]["generated_text"]


def test_streamed_answer_is_the_generated_answer(tiny_smolvlm, tmp_path, monkeypatch):
    _catalog(tmp_path, monkeypatch, tiny_smolvlm, "tiny-smolvlm-stream-vqa")
    vqa = mmdemo.pipeline("visual-question-answering", model="tiny-smolvlm-stream-vqa", device="cpu")
    assert vqa.streams
    image = _images()[1]
    parts = list(vqa.stream(image, QUESTIONS[1]))  # the defaults: greedy, up to 30 tokens
    assert len(parts) > 1  # it came in pieces, each extending the text before it
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(parts))
    assert parts[-1] == vqa(image, QUESTIONS[1])[0]["answer"] == _reference(tiny_smolvlm, image, QUESTIONS[1], 30)[0]


def test_the_ask_tab_streams_a_chat_vlm_answer(tiny_smolvlm, tmp_path, monkeypatch):
    from mmdemo import ui

    _catalog(tmp_path, monkeypatch, tiny_smolvlm, "tiny-smolvlm-ui")
    path = tmp_path / "image.png"
    _images()[1].save(path)
    shown = list(ui.answer(str(path), QUESTIONS[1], "tiny-smolvlm-ui"))
    assert len(shown) > 2 and all(info == "writing…" for _, info in shown[:-1])
    text, info = shown[-1]
    assert (
        text == mmdemo.pipeline("visual-question-answering", model="tiny-smolvlm-ui")(path, QUESTIONS[1])[0]["answer"]
    )
    assert "tiny-smolvlm-ui" in info and " ms" in info
