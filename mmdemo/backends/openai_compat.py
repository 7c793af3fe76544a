"""Chat VLMs served by an OpenAI-compatible server (vLLM, SGLang, TGI ...), through the official `openai` SDK.

The server holds the model; each input is one chat request whose user turn holds the image (a data URL) and a text
part: the question, or a caption prompt. Results have the local chat-VLM runner's shapes. Catalog entry:

    backend = "openai"
    base_url = "http://localhost:8000/v1"        # `vllm serve Qwen/Qwen2-VL-2B-Instruct` listens here
    served_model = "Qwen/Qwen2-VL-2B-Instruct"   # the model's name on the server (GET /v1/models lists them)
    api_key_env = "VLLM_API_KEY"                 # optional: the environment variable holding the server's key
    timeout = 60                                 # optional: seconds to wait for an answer (or the next streamed piece)
    max_retries = 1                              # optional: retries on connection errors, 408, 429 and 5xx answers
    max_concurrency = 32                         # optional: requests in flight at once per model
    logprobs = true                              # optional: VQA scores from token log-probabilities (false: null)
    caption_prompt = "Describe this image in one sentence."   # as the chat-vlm runner's
    question_prompt = "{question}"

A batch's inputs go to the server all at once, one request each from a thread pool: the server batches them itself
(continuous batching). Replies are greedy (temperature 0); beam search is not asked for. Server failures become
ModelErrors that say what happened, never with the API key in them.
"""

import base64
import io
import math
import os
import re
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager

from mmdemo.errors import ModelError
from mmdemo.registry import ModelInfo

CAPTION_PROMPT = "Describe this image in one sentence."  # the chat-vlm runner's defaults
QUESTION_PROMPT = "{question}"
TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0  # a host that does not answer at all is reported quickly
MAX_RETRIES = 1
MAX_CONCURRENCY = 32
PNG_MAX_PIXELS = 512 * 512  # smaller images go lossless; larger ones (photos) as JPEG, several times smaller
JPEG_QUALITY = 90
REQUIRED = {"base_url": "the server's address, e.g. http://localhost:8000/v1", "served_model": "the model's name there"}
NO_KEY = "EMPTY"  # what vLLM's docs send to a server without a key (the SDK insists on one)


def data_url(image) -> str:
    """A PIL image as a `data:` URL: PNG up to PNG_MAX_PIXELS, JPEG above."""
    buffer = io.BytesIO()
    if image.width * image.height <= PNG_MAX_PIXELS:
        image.save(buffer, "PNG")
        kind = "png"
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


class OpenAIChatVLM:
    """One served model: validate/__call__/stream as every backend."""

    batches_calls = True  # concurrent calls go straight to the server, which batches them (no micro-batcher here)

    def __init__(self, info: ModelInfo):
        try:
            import openai
        except ImportError:
            raise ModelError(f"{info.name} needs the openai package: pip install openai") from None
        extra = info.extra
        missing = [f"{key} ({what})" for key, what in REQUIRED.items() if not extra.get(key)]
        if missing:
            raise ValueError(f"its catalog entry needs {' and '.join(missing)}")
        self.info = info
        self.base_url, self.served_model = str(extra["base_url"]).rstrip("/"), str(extra["served_model"])
        self.where = f"The model server at {re.sub(r'//[^/@]*@', '//', self.base_url)}"  # without any user:password@
        self.api_key = self._api_key(extra.get("api_key_env"))
        self.timeout = float(extra.get("timeout", TIMEOUT_S))
        self.connect_timeout = min(self.timeout, CONNECT_TIMEOUT_S)
        self.logprobs = bool(extra.get("logprobs", True))
        self.caption_prompt = extra.get("caption_prompt", CAPTION_PROMPT)
        self.question_prompt = extra.get("question_prompt", QUESTION_PROMPT)
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=openai.Timeout(self.timeout, connect=self.connect_timeout),
            max_retries=int(extra.get("max_retries", MAX_RETRIES)),
        )
        workers = int(extra.get("max_concurrency", MAX_CONCURRENCY))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmdemo-openai")

    def _api_key(self, env: str | None) -> str:
        """The key from the named environment variable; never OPENAI_API_KEY by default, which is not this
        server's to see."""
        if not env:
            return NO_KEY
        key = os.environ.get(env, "")
        if not key:
            raise ValueError(f"its server's API key is read from ${env}, which is not set")
        return key

    def validate(self, item: dict) -> None:
        pass

    def _messages(self, item: dict) -> list[dict]:
        text = self.question_prompt.format(question=item["question"]) if "question" in item else self.caption_prompt
        content = [{"type": "image_url", "image_url": {"url": data_url(item["image"])}}, {"type": "text", "text": text}]
        return [{"role": "user", "content": content}]

    def _request(self, item: dict, max_new_tokens: int, **options):
        return self.client.chat.completions.create(
            model=self.served_model,
            messages=self._messages(item),
            max_tokens=max_new_tokens,
            temperature=0,  # greedy, as the local runner
            **options,
        )

    def reply(self, item: dict, max_new_tokens: int, scores: bool) -> tuple[str, float | None]:
        """One input's reply, and with `scores` its probability: exp(sum of its tokens' log-probabilities), where
        the server reports them (servers leave the end token out), else None."""
        with self._errors():
            completion = self._request(item, max_new_tokens, **({"logprobs": True} if scores else {}))
            choices = getattr(completion, "choices", None)
            if not choices:
                raise ModelError(f"{self.where} sent an answer with no reply in it.")
            choice = choices[0]
            tokens = getattr(choice.logprobs, "content", None) if scores else None
            probability = math.exp(sum(t.logprob for t in tokens)) if tokens else None
            return (getattr(choice.message, "content", None) or "").strip(), probability

    def stream(self, item: dict, max_new_tokens: int = 30):
        """One image's caption, or its answer when the item has a question: the text so far after each new piece.
        Closing the iterator closes the HTTP response, which tells the server to stop."""
        with self._errors():
            response = self._request(item, max_new_tokens, stream=True)
            with response:
                text, shown, replied = "", "", False
                for chunk in response:
                    if not getattr(chunk, "choices", None):  # a usage report, say
                        continue
                    replied = True
                    text += getattr(getattr(chunk.choices[0], "delta", None), "content", None) or ""
                    if text.strip() != shown:
                        shown = text.strip()
                        yield shown
            if not replied:
                raise ModelError(f"{self.where} sent a stream with no reply in it.")

    def __call__(self, items: list[dict], max_new_tokens: int = 30, num_beams: int = 1, top_k: int = 1) -> list:
        """Captions (items without "question") or one answer per question; num_beams and top_k are unused."""
        vqa = "question" in items[0]
        futures = [self.pool.submit(self.reply, it, max_new_tokens, vqa and self.logprobs) for it in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f.exception() for f in futures if f in done and f.exception()), None)
        if failed is not None:
            for f in pending:
                f.cancel()  # those not sent yet; the call fails anyway
            raise failed
        replies = [f.result() for f in futures]
        if vqa:
            return [[{"answer": text, "score": p}] for text, p in replies]
        return [[{"generated_text": text}] for text, _ in replies]

    @contextmanager
    def _errors(self):
        """The SDK's errors as ModelErrors fit to show a user."""
        import openai

        try:
            yield
        except openai.OpenAIError as e:
            message = self._explain(e)
            if self.api_key != NO_KEY:
                message = message.replace(self.api_key, "***")
            raise ModelError(message) from e

    def _explain(self, e) -> str:
        import openai

        where = self.where
        if isinstance(e, openai.APITimeoutError) and type(e.__cause__).__name__ == "ConnectTimeout":
            return f"{where} is not reachable (no connection within {self.connect_timeout:g} s): is it running?"
        if isinstance(e, openai.APITimeoutError):
            return (
                f"{where} did not answer within {self.timeout:g} s: it may be busy or still loading the model. "
                "Try again, or raise `timeout` in the catalog entry."
            )
        if isinstance(e, openai.APIConnectionError):
            return f"{where} is not reachable: is it running? Try again once it is up."
        if isinstance(e, openai.NotFoundError):
            return self._not_found(e)
        if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
            env = self.info.extra.get("api_key_env")
            hint = f"check the key in ${env}" if env else "set `api_key_env` in the catalog entry"
            return f"{where} refused the request (HTTP {e.status_code}: {_detail(e)}); {hint}."
        if isinstance(e, openai.APIStatusError):
            return f"{where} answered HTTP {e.status_code}: {_detail(e)}"
        return f"{where} failed: {_detail(e)}"  # an error event inside a stream, an answer we could not read

    def _not_found(self, e) -> str:
        """A 404: the model is not served there (say which are), or base_url is not an OpenAI-compatible API."""
        import openai

        where = self.where
        try:
            served = [m.id for m in self.client.with_options(max_retries=0, timeout=CONNECT_TIMEOUT_S).models.list()]
        except openai.OpenAIError:
            return f"{where} answered HTTP 404 ({_detail(e)}); does `base_url` end in /v1?"
        if self.served_model not in served:
            return (
                f"{where} does not serve {self.served_model!r}; it serves: {', '.join(served) or 'nothing'}. "
                "Set `served_model` in the catalog entry to one of those."
            )
        return f"{where} answered HTTP 404: {_detail(e)}"


def _detail(e, limit: int = 300) -> str:
    """The server's own message, on one line and cut short."""
    body = getattr(e, "body", None)
    text = (body.get("message") or body.get("detail")) if isinstance(body, dict) else body
    text = " ".join(str(text or getattr(e, "message", "") or "no message").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load(info: ModelInfo, device: str | None = None) -> OpenAIChatVLM:
    """The backend for a served model; `device` is the server's business."""
    return OpenAIChatVLM(info)
