"""Loaded models: each loaded once, kept while used, and evicted least-recently-used when the models
in memory pass a budget (env MMDEMO_MEMORY_BUDGET_GB; unset: no limit)."""

import gc
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable

from mmdemo import metrics


def model_bytes(backend) -> int:
    """Bytes of a backend's torch weights and buffers (0 for backends without a torch model)."""
    model = getattr(backend, "model", None)
    if not hasattr(model, "parameters"):
        return 0
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def free_memory() -> None:
    """Give back what dropped references held, on the GPU too."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def keep_freed_memory() -> None:
    """For a serving process: glibc gives freed blocks above a moving threshold back to the OS, and a model's next
    batch maps and zeroes them again: over 100 page faults per VQA answer at batch 64, 15–30 % of its throughput
    here. Keep blocks of up to 32 MB, and up to 256 MB of free heap, for reuse (as jemalloc and tcmalloc do). Only
    where the C library has mallopt (glibc); elsewhere nothing."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 * 2**20)
    mallopt(m_trim_threshold, 256 * 2**20)


def budget_bytes() -> float | None:
    value = os.environ.get("MMDEMO_MEMORY_BUDGET_GB")
    return float(value) * 2**30 if value else None


class ModelCache:
    def __init__(self):
        self._models: OrderedDict[tuple, object] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, load: Callable[[], object]):
        """The backend for key, loaded on first use; others are evicted if the budget is passed."""
        with self._lock:  # one load per model, however many requests arrive at once
            if key not in self._models:
                with metrics.model_load(key[0]):
                    self._models[key] = load()
                self._sizes[key] = model_bytes(self._models[key])
                self._evict(keep=key)
            self._models.move_to_end(key)
            return self._models[key]

    def _evict(self, keep: tuple) -> None:
        budget = budget_bytes()
        while budget is not None and sum(self._sizes.values()) > budget and len(self._models) > 1:
            oldest = next(k for k in self._models if k != keep)
            self._drop(oldest)

    def _drop(self, key: tuple) -> None:
        del self._models[key], self._sizes[key]
        metrics.MODELS_LOADED.dec()
        free_memory()

    def loaded(self) -> list[tuple]:
        with self._lock:
            return list(self._models)

    def unload(self, name: str | None = None) -> list[str]:
        """Forget one model (by catalog name) or all of them; returns the names unloaded."""
        with self._lock:
            keys = [k for k in self._models if name is None or k[0] == name]
            for key in keys:
                self._drop(key)
            return [k[0] for k in keys]
