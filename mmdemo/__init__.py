"""mmdemo: an interactive demo for multimodal models.

    import mmdemo
    mmdemo.list_models("visual-question-answering")
    vqa = mmdemo.pipeline("visual-question-answering")
    vqa("photo.png", "what color is the shape?")

`import mmdemo` stays light: torch is imported only when a model is loaded.
"""

from mmdemo.errors import InputError, ModelError
from mmdemo.pipelines import pipeline, unload
from mmdemo.registry import TASKS, ModelInfo, list_models

__all__ = ["TASKS", "InputError", "ModelError", "ModelInfo", "list_models", "pipeline", "unload"]
__version__ = "0.1.0"
