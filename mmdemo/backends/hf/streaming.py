"""Streaming generation: the text so far after each new piece, and a stop that really stops the model."""

import threading
from collections.abc import Iterator

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer


class _UntilSet(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.event.is_set()


def stream_generate(model, tokenizer, inputs: dict, **options) -> Iterator[str]:
    """model.generate in a worker thread, its text streamed out; closing the iterator (a user's Stop)
    ends generation at the next token and waits for the worker, so the model is free again."""
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    stop, failure = threading.Event(), []

    def work():
        try:
            with torch.inference_mode():  # inference mode is per thread
                model.generate(
                    **inputs, **options, streamer=streamer, stopping_criteria=StoppingCriteriaList([_UntilSet(stop)])
                )
        except Exception as e:  # hand it to the reader, and end its stream so it does not wait forever
            failure.append(e)
            streamer.end()

    worker = threading.Thread(target=work, name="mmdemo-generate", daemon=True)
    worker.start()
    text = ""
    try:
        for piece in streamer:
            text += piece
            yield text.strip()
    finally:
        stop.set()
        worker.join()
    if failure:
        raise failure[0]
