"""mmdemo: an interactive demo for multimodal models.

    import mmdemo
    mmdemo.list_models("visual-question-answering")
    vqa = mmdemo.pipeline("visual-question-answering")
    vqa("photo.png", "what color is the shape?")

`import mmdemo` stays light: torch is imported only when a model is loaded.
"""

from mmdemo.errors import InputError
from mmdemo.pipelines import pipeline
from mmdemo.registry import TASKS, ModelInfo, list_models

__all__ = ["TASKS", "InputError", "ModelInfo", "list_models", "pipeline"]
__version__ = "0.1.0"
