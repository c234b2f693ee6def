"""Serve a trained classifier over HTTP, with a page to draw digits on: ``tinydl serve RUN``.

``build_app(model, meta)`` is the Starlette app for any ``(model, meta)`` of ``load_run``;
``serve(run, host, port)`` runs it with uvicorn. Needs ``pip install "tinydl[serve]"``.
"""

from .app import build_app, serve
from .batching import Batcher
from .inputs import MAX_BYTES, BadInput, pixels_from_json

__all__ = ["build_app", "serve", "Batcher", "BadInput", "pixels_from_json", "MAX_BYTES"]
