"""Small chat vision-language models (SmolVLM/Idefics3, Qwen2-VL ...) through `AutoModelForImageTextToText`.

One runner serves both image-to-text and visual-question-answering: each image goes in one user turn with a
text turn, formatted by the processor's own chat template. Catalog `extra` settings:

    caption_prompt = "Describe this image in one sentence."   # the text turn for image-to-text
    question_prompt = "{question}"                             # the text turn for a question
    requires = ["torchvision"]                                 # packages the model's processor imports

Batches are generated together with left padding (so every prompt ends where generation starts); only the new
tokens are decoded.
"""

import importlib.util

import torch

from mmdemo.backends.hf.loading import load_model, load_processor
from mmdemo.backends.hf.streaming import stream_generate
from mmdemo.errors import ModelError
from mmdemo.registry import ModelInfo

CAPTION_PROMPT = "Describe this image in one sentence."
QUESTION_PROMPT = "{question}"


class ChatVLM:
    """A chat VLM and its processor, loaded once; validate/__call__ as every backend."""

    def __init__(self, info: ModelInfo, device: str | None = None):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        missing = [p for p in info.extra.get("requires", []) if importlib.util.find_spec(p) is None]
        if missing:  # say so before a download, rather than fail inside the processor with an obscure error
            raise ModelError(f"{info.name} needs {', '.join(missing)}: pip install {' '.join(missing)}")
        self.info = info
        self.model, self.device = load_model(AutoModelForImageTextToText, info, device)
        self.processor = load_processor(AutoProcessor, info)
        self.processor.tokenizer.padding_side = "left"  # generation continues every prompt from its last token
        self.caption_prompt = info.extra.get("caption_prompt", CAPTION_PROMPT)
        self.question_prompt = info.extra.get("question_prompt", QUESTION_PROMPT)

    def validate(self, item: dict) -> None:
        pass

    def prompt(self, text: str) -> str:
        """One user turn holding an image and `text`, ready for the assistant's reply."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    @torch.inference_mode()
    def generate(self, items: list[dict], texts: list[str], scores: bool = False, **options):
        """Replies to (image, text) pairs, batched; with `scores`, also each reply's probability."""
        prompts, images = [self.prompt(t) for t in texts], [it["image"] for it in items]
        inputs = self.processor(text=prompts, images=images, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device, dtype=self.model.dtype)  # dtype casts only the floating inputs (pixels)
        out = self.model.generate(**inputs, **options, return_dict_in_generate=True, output_scores=scores)
        new = out.sequences[:, inputs["input_ids"].shape[1] :]  # (B, T) the reply tokens, padded after their end
        replies = [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]
        return (replies, self._probabilities(out, new)) if scores else replies

    def _probabilities(self, out, new: torch.Tensor) -> list[float]:
        """Greedy replies' probabilities: exp(sum of their tokens' log-probabilities), first end token included."""
        logp = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)  # (B, T)
        eos = self.model.generation_config.eos_token_id
        eos = torch.tensor(eos if isinstance(eos, list) else [eos], device=new.device)
        is_eos = torch.isin(new, eos)
        ended = is_eos.int().cumsum(1)  # 0 before the first end token, 1 from it on, more after further ones
        keep = (ended == 0) | ((ended == 1) & is_eos)  # padding after the end is not part of the reply
        return logp.float().masked_fill(~keep, 0).sum(1).exp().tolist()

    def stream(self, item: dict, max_new_tokens: int = 30):
        """One image's greedy caption, or its answer when the item has a question: the text so far after each token."""
        text = self.question_prompt.format(question=item["question"]) if "question" in item else self.caption_prompt
        inputs = self.processor(text=[self.prompt(text)], images=[item["image"]], return_tensors="pt")
        inputs = inputs.to(self.device, dtype=self.model.dtype)
        yield from stream_generate(
            self.model, self.processor.tokenizer, dict(inputs), max_new_tokens=max_new_tokens, do_sample=False
        )

    def __call__(self, items: list[dict], num_beams: int = 1, max_new_tokens: int = 30, top_k: int = 1) -> list:
        """Captions (items without "question") or one generated answer per question; top_k is unused."""
        options = {"do_sample": False, "max_new_tokens": max_new_tokens}
        if "question" not in items[0]:
            texts = self.generate(items, [self.caption_prompt] * len(items), num_beams=num_beams, **options)
            return [[{"generated_text": t}] for t in texts]
        questions = [self.question_prompt.format(question=it["question"]) for it in items]
        texts, probs = self.generate(items, questions, scores=True, **options)  # greedy: a sequence probability
        return [[{"answer": t, "score": p}] for t, p in zip(texts, probs, strict=True)]
