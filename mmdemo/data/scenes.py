"""Generated scenes: 1–4 shapes in easy-VQA's colours and shapes, with size and position, described by
reference captions from a small grammar, and labelled for classification. Deterministic from a seed.

Each shape sits in its own column of the 64×64 canvas (four columns, chosen at random), at a random
height, so "left of" is always well defined. Held-out evaluation uses TEST_SEED, which no training
command uses by default.

    scene = make_scene(np.random.default_rng(0))
    scene.captions[0]  # 'a small red circle to the left of a large blue triangle'
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLORS = {  # easy-VQA's eight colours
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "teal": (0, 128, 128),
    "brown": (150, 50, 50),
    "yellow": (255, 255, 0),
}
SHAPES = ("circle", "rectangle", "triangle")
SIZES = {"small": (6, 9), "large": (12, 14)}  # side of the shape's bounding box, pixels (columns are 16 wide)
CANVAS, COLUMNS = 64, 4
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
LABELS = [f"{c} {s}" for c in COLORS for s in SHAPES]  # classification: the colour and shape of a lone shape
TRAIN_SEED, TEST_SEED = 0, 1_000_003


@dataclass
class Shape:
    shape: str
    color: str
    size: str
    column: int  # 0..3, left to right

    @property
    def phrase(self) -> str:
        return f"{self.size} {self.color} {self.shape}"


@dataclass
class Scene:
    image: np.ndarray  # (64, 64, 3) uint8
    shapes: list[Shape]  # left to right
    captions: list[str]  # references; captions[0] is the canonical one models are trained on
    label: str  # "<colour> <shape>" of the leftmost shape (the scene's only one in classification sets)


def describe(shapes: list[Shape]) -> list[str]:
    """Reference captions for shapes ordered left to right; the first is canonical."""
    a = [f"a {s.phrase}" for s in shapes]
    n = len(shapes)
    if n == 1:
        return [a[0], f"one {shapes[0].phrase}", f"there is {a[0]}"]
    if n == 2:
        return [f"{a[0]} to the left of {a[1]}", f"{a[1]} to the right of {a[0]}", f"two shapes {a[0]} and {a[1]}"]
    listing = ", ".join(a[:-1]) + f" and {a[-1]}"
    backwards = ", ".join(a[::-1][:-1]) + f" and {a[0]}"
    count = COUNT_WORDS[n]
    return [
        f"{count} shapes from left to right {listing}",
        f"{count} shapes {listing}",
        f"{count} shapes from right to left {backwards}",
    ]


def make_scene(rng: np.random.Generator, min_shapes: int = 1, max_shapes: int = 4) -> Scene:
    n = int(rng.integers(min_shapes, max_shapes + 1))
    columns = sorted(rng.choice(COLUMNS, size=n, replace=False).tolist())
    shapes = [
        Shape(str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))), str(rng.choice(list(SIZES))), c) for c in columns
    ]
    background = tuple(int(v) for v in rng.integers(225, 256, size=3))
    image = Image.new("RGB", (CANVAS, CANVAS), background)
    draw = ImageDraw.Draw(image)
    width = CANVAS // COLUMNS
    for s in shapes:
        side = int(rng.integers(*SIZES[s.size], endpoint=True))
        x0 = s.column * width + 1 + int(rng.integers(0, width - 2 - side + 1))  # 1 px apart from neighbours
        y0 = int(rng.integers(0, CANVAS - side + 1))
        box = (x0, y0, x0 + side - 1, y0 + side - 1)
        if s.shape == "circle":
            draw.ellipse(box, fill=COLORS[s.color])
        elif s.shape == "rectangle":
            draw.rectangle(box, fill=COLORS[s.color])
        else:
            draw.polygon(
                [(x0 + (side - 1) / 2, y0), (x0, y0 + side - 1), (x0 + side - 1, y0 + side - 1)], fill=COLORS[s.color]
            )
    return Scene(np.asarray(image), shapes, describe(shapes), f"{shapes[0].color} {shapes[0].shape}")


def generate(size: int, seed: int, min_shapes: int = 1, max_shapes: int = 4) -> list[Scene]:
    """`size` scenes, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [make_scene(rng, min_shapes, max_shapes) for _ in range(size)]
