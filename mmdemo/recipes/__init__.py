"""Recipes: how each task's own models are trained and evaluated, one module per task.

Each recipe module has `train(argv) -> dict` and `evaluate(argv) -> dict`; `mmdemo train` and
`mmdemo eval` pick the module from the `--task` argument.
"""

import argparse
import importlib

RECIPES = {  # task id -> recipe module
    "visual-question-answering": "mmdemo.recipes.vqa",
    "audio-classification": "mmdemo.recipes.sounds",
    "image-to-text": "mmdemo.recipes.captions",
    "image-classification": "mmdemo.recipes.scene_classes",
}
DEFAULT_TASK = "visual-question-answering"


def recipe_for(argv: list[str] | None):
    """The recipe module named by `--task` in argv (default: visual-question-answering)."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--task", default=DEFAULT_TASK)
    task = peek.parse_known_args(argv)[0].task
    if task not in RECIPES:
        raise ValueError(f"no training recipe for task {task!r}; recipes exist for: {', '.join(RECIPES)}")
    return importlib.import_module(RECIPES[task])
