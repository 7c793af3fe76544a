"""Our own models, built tiny in code: every fusion × question encoder, and checkpoint round trips."""

import json
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmdemo.models import PRESETS, VQAConfig, VQAModel
from mmdemo.models.checkpoint import load_checkpoint, save_checkpoint
from mmdemo.models.fusion import FUSIONS
from mmdemo.models.text import build_tokenizer, encode_batch

ANSWERS = ["circle", "red", "yes", "no", "blue"]
QUESTIONS = ["what shape is it?", "is the shape red?", "what color?", "is there a blue circle in the image?", "what"]


def tiny_model(fusion: str, rnn: str, seed: int = 0) -> VQAModel:
    torch.manual_seed(seed)
    config = VQAConfig(**PRESETS["tiny"], image_size=32, fusion=fusion, rnn=rnn, vocab_size=24, answers=ANSWERS)
    return VQAModel(config)


def inputs(n_images: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (B, 32, 32, 3) and right-padded ids (Q, T) for the five QUESTIONS."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_images, 32, 32, 3), generator=gen, dtype=torch.uint8)
    ids, _ = encode_batch(build_tokenizer(QUESTIONS), QUESTIONS)
    return images, torch.tensor(ids)


ALL = [(fusion, rnn) for fusion in FUSIONS for rnn in ("gru", "lstm")]


def test_every_fusion_is_covered():
    assert {"concat", "sum", "product", "attention"} <= set(FUSIONS)


@pytest.mark.parametrize(("fusion", "rnn"), ALL)
def test_forward_shape_and_finite(fusion, rnn):
    model = tiny_model(fusion, rnn).eval()
    images, ids = inputs(n_images=5)
    logits = model(images, ids)
    assert logits.shape == (5, len(ANSWERS))
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert logits.std() > 0  # not a constant output


@pytest.mark.parametrize(("fusion", "rnn"), ALL)
def test_backward_reaches_every_parameter(fusion, rnn):
    model = tiny_model(fusion, rnn).train()
    images, ids = inputs(n_images=5)
    loss = torch.nn.functional.cross_entropy(model(images, ids), torch.tensor([0, 1, 2, 3, 4]))
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


@pytest.mark.parametrize(("fusion", "rnn"), ALL)
def test_image_index_equals_repeating_images(fusion, rnn):
    model = tiny_model(fusion, rnn).eval()
    images, ids = inputs(n_images=3)
    image_index = torch.tensor([0, 2, 2, 1, 0])  # five questions about three images
    with torch.no_grad():
        shared = model(images, ids, image_index)
        repeated = model(images[image_index], ids)
    assert shared.shape == (5, len(ANSWERS))
    torch.testing.assert_close(shared, repeated, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("fusion", "rnn"), ALL)
def test_padding_does_not_change_a_question(fusion, rnn):
    """A question alone (no padding) and in a batch with a longer one (right-padded) reads the same."""
    model = tiny_model(fusion, rnn).eval()
    images, ids = inputs(n_images=5)
    short = 2  # "is the shape red?" is shorter than the longest question
    width = int((ids[short] != 0).sum())
    assert width < ids.shape[1]
    with torch.no_grad():
        alone = model(images[short : short + 1], ids[short : short + 1, :width])
        batched = model(images, ids)[short : short + 1]
    torch.testing.assert_close(alone, batched, rtol=1e-5, atol=1e-5)


def test_questions_change_the_answer():
    model = tiny_model("attention", "gru").eval()
    images, ids = inputs(n_images=1)
    with torch.no_grad():
        logits = model(images.expand(len(QUESTIONS), -1, -1, -1), ids)
    assert not torch.allclose(logits[0], logits[1])


@pytest.mark.parametrize(
    ("fusion", "rnn"), [("attention", "gru"), ("concat", "lstm"), ("product", "gru"), ("sum", "lstm")]
)
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, fusion, rnn):
    model = tiny_model(fusion, rnn, seed=3).eval()
    tokenizer = build_tokenizer(QUESTIONS)
    out = save_checkpoint(model, tmp_path / "ckpt", tokenizer, {"training": {"epochs": 1}})
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    meta = json.loads((out / "config.json").read_text())
    assert meta["architecture"] == "mmdemo-vqa" and meta["training"] == {"epochs": 1}
    assert meta["config"]["fusion"] == fusion and meta["config"]["answers"] == ANSWERS

    loaded, loaded_tokenizer, loaded_meta = load_checkpoint(out)
    assert not loaded.training
    assert loaded_meta == meta
    assert json.loads(json.dumps(asdict(loaded.config))) == json.loads(json.dumps(asdict(model.config)))
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    images, ids = inputs()
    ids = torch.tensor(encode_batch(loaded_tokenizer, QUESTIONS)[0])
    with torch.no_grad():
        assert torch.equal(
            model(images, ids, torch.tensor([0, 1, 2, 0, 1])), loaded(images, ids, torch.tensor([0, 1, 2, 0, 1]))
        )


def test_checkpoint_loads_strictly(tmp_path):
    model = tiny_model("attention", "gru")
    out = save_checkpoint(model, tmp_path / "ckpt", build_tokenizer(QUESTIONS))
    weights = out / "model.safetensors"
    state = load_file(str(weights))

    missing = {k: v for k, v in state.items() if k != "decoder.net.0.weight"}
    assert len(missing) == len(state) - 1
    save_file(missing, str(weights))
    with pytest.raises(RuntimeError, match="Missing key"):
        load_checkpoint(out)

    save_file({**state, "decoder.extra.weight": torch.zeros(2)}, str(weights))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_checkpoint(out)

    wrong_shape = {
        k: (torch.zeros(v.shape[0] + 1, *v.shape[1:]) if k.endswith("decoder.net.3.bias") else v)
        for k, v in state.items()
    }
    save_file(wrong_shape, str(weights))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_checkpoint(out)

    save_file(state, str(weights))
    load_checkpoint(out)  # and the intact file still loads


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_the_inference_form_computes_the_same_function(fusion):
    """for_inference folds batch norms, moves ReLUs after max pooling and goes channels-last: same logits in fp32."""
    import copy

    from mmdemo.models.checkpoint import for_inference

    model = tiny_model(fusion, "gru")
    with torch.no_grad():  # batch norms with statistics of their own, so that folding them matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    model.eval()
    fast = for_inference(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    images, ids = inputs(n_images=5)
    with torch.no_grad():
        torch.testing.assert_close(fast(images, ids), model(images, ids), rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in fast.modules())  # MaxPool2x2 in their place


def test_max_pool_2x2_equals_max_pool2d_on_odd_sizes_and_both_layouts():
    from mmdemo.models.encoders import MaxPool2x2

    x = torch.randn(3, 4, 9, 7)
    x[0, 0, 0, 0] = float("nan")  # NaN wins, as in max_pool2d
    for layout in (torch.contiguous_format, torch.channels_last):
        y = x.contiguous(memory_format=layout)
        torch.testing.assert_close(MaxPool2x2()(y), torch.nn.functional.max_pool2d(y, 2), equal_nan=True)


def test_bf16_inference_keeps_the_small_layers_in_fp32_and_the_answers():
    """With dtype bf16 only the CNN is cast: the GRU, fusion and classifier stay fp32, and so do the logits."""
    import copy

    from mmdemo.models.checkpoint import for_inference

    model = tiny_model("product", "gru").eval()
    fast = for_inference(copy.deepcopy(model), torch.bfloat16)
    assert {p.dtype for p in fast.image_encoder.parameters()} == {torch.bfloat16}
    others = [p for name, p in fast.named_parameters() if not name.startswith("image_encoder.")]
    assert others and {p.dtype for p in others} == {torch.float32}
    images, ids = inputs(n_images=5)
    with torch.no_grad():
        fast_logits, logits = fast(images, ids), model(images, ids)
    assert fast_logits.dtype == torch.float32
    torch.testing.assert_close(fast_logits, logits, rtol=0.05, atol=0.05)
