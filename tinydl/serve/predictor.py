"""The model behind the server: one image in, the top-3 classes out, batched across requests."""

from __future__ import annotations

import threading

import numpy as np

from ..digits import top_k
from ..errors import ImageTooLargeError
from ..recipes.classifier import class_names, prepare_image
from .batching import Batcher
from .inputs import BadInput

__all__ = ["Predictor"]


class Predictor:
    """``prepare`` turns an upload into the 28x28 input the model sees (as ``tinydl predict``
    does); ``predict`` gives its top-``k`` as ``{"class", "name", "probability"}`` dicts.

    ``max_preparing`` bounds how many images are decoded at once (a large image may take up to
    ``tinydl.data.folder.MAX_DECODED_BYTES`` while it is decoded)."""

    def __init__(self, model, meta: dict, *, k: int = 3, max_batch: int = 64, max_preparing=4):
        self.model, self.meta, self.k = model.eval(), meta, k
        self.names = class_names(meta)
        self.batcher = Batcher(self._forward, max_batch)
        self._preparing = threading.BoundedSemaphore(max_preparing)

    def prepare(self, source, max_side: int) -> np.ndarray:
        """An encoded image (bytes) or a float ``(H, W)`` array in [0, 1] -> float32 28x28."""
        with self._preparing:
            try:
                return prepare_image(self.meta, source, name="uploaded image", max_side=max_side)
            except ImageTooLargeError as exc:
                raise BadInput(str(exc), 413) from None
            except ValueError as exc:  # not an image, or one prepare_digit cannot take
                raise BadInput(str(exc)) from None

    def _forward(self, images: list) -> list:
        return top_k(self.model, np.stack(images), self.meta["mean"], self.meta["std"], self.k)

    def predict(self, image: np.ndarray) -> list[dict]:
        return [
            {"class": c, "name": self.names[c], "probability": q} for c, q in self.batcher(image)
        ]
