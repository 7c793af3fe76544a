"""Dynamic batching across concurrent callers: one worker per model runs one batch at a time, made of every request
that arrived while the previous batch ran (up to `max_batch` inputs), after waiting at most `max_wait_s` for more.

    batcher = MicroBatcher(backend)            # backend(items, **params) -> one result per item
    batcher(items, top_k=5)                    # blocks; batched with other threads' calls of the same params

A lone caller is served at once (the wait applies only while other requests are still arriving); under load the
model sees batches as large as the load allows, which is where its throughput comes from. Calls with different
params never share a batch. A failing batch fails each of its callers with the same exception.
"""

import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future

from mmdemo import metrics

MAX_BATCH = int(os.environ.get("MMDEMO_MAX_BATCH", "64"))  # inputs per model call
MAX_WAIT_S = float(os.environ.get("MMDEMO_BATCH_WAIT_MS", "2")) / 1000  # the longest a request waits for company
IDLE_S = 30.0  # a worker with nothing to do for this long ends (a new call starts another)


class MicroBatcher:
    def __init__(
        self, fn: Callable[..., list], max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_S, name: str = "other"
    ):
        self.fn = weakref.ref(fn)  # weak: an unloaded model is freed at once, whatever its batcher does
        label = metrics.model_label(name)  # the model's name, in mmdemo.metrics
        self.queued, self.sizes = metrics.BATCH_QUEUE_DEPTH.labels(label), metrics.BATCH_SIZE.labels(label)
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.worker: threading.Thread | None = None
        self.batch_sizes: list[int] = []  # the inputs of each model call (for tests and benchmarks), newest last
        self.crowded = False  # the last batch held several requests: wait for company while forming the next

    def __call__(self, items: list, prepare: Callable[[list], list] | None = None, **params) -> list:
        """The results for `items`, batched with other callers'. `prepare(items)`, when given, makes them ready for
        the model in the worker, just before their batch runs (raising fails this call only)."""
        if not items:
            return []
        future: Future = Future()
        self.queued.inc()
        self.requests.put((_key(params), items, params, future, prepare))
        self._ensure_worker()
        return future.result()

    def _ensure_worker(self) -> None:
        with self.lock:
            if self.worker is None or not self.worker.is_alive():
                self.worker = threading.Thread(target=self._work, name="mmdemo-batcher", daemon=True)
                self.worker.start()

    def _work(self) -> None:
        waiting: list = []  # requests taken from the queue whose params differ from the batch being formed
        while True:
            if not waiting:
                try:
                    waiting.append(self._take(timeout=IDLE_S))
                except queue.Empty:
                    with self.lock:  # nothing came: end, unless a caller just put a request (it sees us alive)
                        if self.requests.empty():
                            self.worker = None
                            return
                    continue
            batch, waiting = self._form(waiting)
            self._run(batch)

    def _take(self, timeout: float) -> tuple:
        """The next request, waiting at most `timeout` seconds (0: only one already there), or queue.Empty."""
        request = self.requests.get(timeout=timeout) if timeout > 0 else self.requests.get_nowait()
        self.queued.dec()
        return request

    def _form(self, waiting: list) -> tuple[list, list]:
        """The first waiting request and every compatible one that arrives within the wait, up to max_batch inputs;
        returns (batch, requests left waiting)."""
        key = waiting[0][0]
        batch = [r for r in waiting if r[0] == key]
        rest = [r for r in waiting if r[0] != key]
        size = sum(len(r[1]) for r in batch)
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_batch:
            try:
                request = self._take(timeout=0)  # whatever has arrived
            except queue.Empty:
                timeout = deadline - time.perf_counter()
                if not (self.crowded or len(batch) > 1) or timeout <= 0:
                    break  # a lone caller goes at once; company is waited for only under load
                try:
                    request = self._take(timeout=timeout)
                except queue.Empty:
                    break
            if request[0] == key and size + len(request[1]) <= self.max_batch:
                batch.append(request)
                size += len(request[1])
            else:
                rest.append(request)
        return batch, rest

    def _run(self, batch: list) -> None:
        batch = [request for request in map(_prepared, batch) if request is not None]
        if not batch:
            return
        items = [item for _, request_items, _, _, _ in batch for item in request_items]
        self.batch_sizes = [*self.batch_sizes[-999:], len(items)]
        self.sizes.observe(len(items))
        self.crowded = len(batch) > 1
        try:
            fn = self.fn()
            if fn is None:
                raise RuntimeError("the model was unloaded; please try again")
            results = fn(items, **batch[0][2])
            del fn
        except BaseException as e:  # every caller of this batch gets the failure
            for *_, future, _ in batch:
                future.set_exception(e)
            return
        start = 0
        for _, request_items, _, future, _ in batch:
            future.set_result(results[start : start + len(request_items)])
            start += len(request_items)


def _prepared(request: tuple) -> tuple | None:
    """The request with its items made ready by its `prepare`; None (its caller told why) if that failed."""
    key, items, params, future, prepare = request
    if prepare is None:
        return request
    try:
        return key, prepare(items), params, future, None
    except BaseException as e:
        future.set_exception(e)
        return None


def _key(params: dict) -> tuple:
    """Params as a hashable key: calls batch together only when every param is equal."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))
