"""Visual question answering runners for the transformers backend: BLIP (generates the answer) and ViLT
(classifies over its answer vocabulary). Both return [{"answer": str, "score": float | None}, ...] best first."""

import torch
from transformers import BlipForQuestionAnswering, ViltForQuestionAnswering

from mmdemo.backends.hf.captioning import HFRunner, to_model

ANSWER_TOKENS = 20  # longest generated answer, in tokens (VQA answers are a few words)


class BlipVQA(HFRunner):
    """Generates one answer per question, greedily; its score is the answer's probability under the model.

    Questions of the same length in tokens share a generate call. Padding would change answers: transformers'
    BlipForQuestionAnswering.generate lets the decoder attend to every question position, padding included.
    """

    model_cls = BlipForQuestionAnswering

    @torch.inference_mode()
    def __call__(self, items: list[dict], top_k: int = 5) -> list[list[dict]]:
        tokenizer = self.processor.tokenizer
        by_length: dict[int, list[int]] = {}
        for n, it in enumerate(items):
            by_length.setdefault(len(tokenizer(it["question"])["input_ids"]), []).append(n)
        results: list = [None] * len(items)
        for rows in by_length.values():
            images, questions = [items[r]["image"] for r in rows], [items[r]["question"] for r in rows]
            batch = self.processor(images=images, text=questions, return_tensors="pt")
            out = self.model.generate(
                **to_model(batch, self.model),
                max_new_tokens=ANSWER_TOKENS,
                num_beams=1,
                do_sample=False,
                return_dict_in_generate=True,
                output_logits=True,
            )
            answers = self.processor.batch_decode(out.sequences, skip_special_tokens=True)
            for r, answer, score in zip(rows, answers, self._probabilities(out).tolist(), strict=True):
                results[r] = [{"answer": answer.strip(), "score": score}]
        return results

    def _probabilities(self, out) -> torch.Tensor:
        """(B,) product of each generated token's probability, up to and including the end token."""
        tokens = out.sequences[:, 1:]  # (B, S): what follows the start token
        logits = torch.stack(out.logits, dim=1).float()  # (B, S, V)
        logp = logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)  # (B, S)
        ended = tokens == self.model.config.text_config.sep_token_id
        after_end = (ended.long().cumsum(1) - ended.long()) > 0  # padding after an answer's end token
        return logp.masked_fill(after_end, 0.0).sum(1).exp()


class ViltVQA(HFRunner):
    """Scores every answer in config.id2label independently (sigmoid, as ViLT was trained on VQA soft scores)."""

    model_cls = ViltForQuestionAnswering

    @torch.inference_mode()
    def __call__(self, items: list[dict], top_k: int = 5) -> list[list[dict]]:
        # images of different sizes are padded to the largest; pixel_mask keeps the padding out of attention
        batch = self.processor(
            images=[it["image"] for it in items],
            text=[it["question"] for it in items],
            padding=True,
            truncation=True,
            max_length=self.model.config.max_position_embeddings,
            return_tensors="pt",
        )
        logits = self.model(**to_model(batch, self.model)).logits.float()  # (B, answers)
        labels = self.model.config.id2label
        scores, index = logits.sigmoid().topk(min(top_k, len(labels)))
        return [
            [{"answer": labels[i], "score": s} for s, i in zip(row_s, row_i, strict=True)]
            for row_s, row_i in zip(scores.tolist(), index.tolist(), strict=True)
        ]
