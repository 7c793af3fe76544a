"""Tiny randomly initialised Hugging Face models of real architectures, built in code and saved to a folder.

Each builder writes a folder that `from_pretrained` reads exactly as it reads a hub snapshot (config, weights,
tokenizer, processor), so tests load it through mmdemo's own code path with no network. Sizes are the smallest the
configs allow: hidden size 32, 2 layers, 32 px images in 8 px patches.
"""

from pathlib import Path

import torch

# a WordPiece vocabulary in BERT's layout (special tokens first); BLIP's decoder also needs its "[DEC]" start token
_TEXT = (
    "a an the of on in is are it this there what which how many color shape red blue green yellow "
    "cat dog sky man woman circle square triangle yes no one two three ? ."
)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_TEXT.split()]
BLIP_WORDS = [*WORDS, "[DEC]"]
ANSWERS = ["yes", "no", "red", "blue", "green", "circle", "square", "one", "two", "three"]  # ViLT's classes
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
VISION = dict(SMALL, image_size=32, patch_size=8)


def bert_tokenizer(words: list[str] = WORDS, **kwargs):
    """A lower-casing WordPiece tokenizer over `words` (ids in list order)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(words)}, **kwargs)


def _save(model, processor, out: Path) -> Path:
    # default inits are tiny (BLIP's vision tower: std 1e-10), so outputs would not depend on the image; widen them
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.3)
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _blip_config():
    from transformers import BlipConfig

    text = dict(SMALL, vocab_size=len(BLIP_WORDS), encoder_hidden_size=32, max_position_embeddings=64)
    text.update(bos_token_id=BLIP_WORDS.index("[DEC]"), pad_token_id=0, sep_token_id=3, eos_token_id=3)
    return BlipConfig(text_config=text, vision_config=VISION, projection_dim=32, image_text_hidden_size=32)


def _blip_processor():
    from transformers import BlipImageProcessor, BlipProcessor

    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    return BlipProcessor(image_processor, bert_tokenizer(BLIP_WORDS, bos_token="[DEC]"))


def blip_caption(out: Path) -> Path:
    """A BlipForConditionalGeneration folder (the Salesforce/blip-image-captioning-* layout)."""
    from transformers import BlipForConditionalGeneration

    torch.manual_seed(0)
    return _save(BlipForConditionalGeneration(_blip_config()), _blip_processor(), out)


def blip_vqa(out: Path) -> Path:
    """A BlipForQuestionAnswering folder (the Salesforce/blip-vqa-base layout)."""
    from transformers import BlipForQuestionAnswering

    torch.manual_seed(0)
    return _save(BlipForQuestionAnswering(_blip_config()), _blip_processor(), out)


def git_caption(out: Path) -> Path:
    """A GitForCausalLM folder with a CLIP image processor (the microsoft/git-base-coco layout)."""
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    config = GitConfig(
        vision_config=dict(VISION),
        vocab_size=len(WORDS),
        max_position_embeddings=64,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
        **SMALL,
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(0)
    return _save(GitForCausalLM(config), GitProcessor(image_processor, bert_tokenizer()), out)


def vilt_vqa(out: Path) -> Path:
    """A ViltForQuestionAnswering folder over ANSWERS (the dandelin/vilt-b32-finetuned-vqa layout)."""
    from transformers import ViltConfig, ViltForQuestionAnswering, ViltImageProcessor, ViltProcessor

    config = ViltConfig(
        vocab_size=len(WORDS),
        max_position_embeddings=40,
        id2label=dict(enumerate(ANSWERS)),
        label2id={a: i for i, a in enumerate(ANSWERS)},
        **VISION,
    )
    image_processor = ViltImageProcessor(size={"shortest_edge": 32}, size_divisor=8)
    torch.manual_seed(0)
    return _save(ViltForQuestionAnswering(config), ViltProcessor(image_processor, bert_tokenizer()), out)
