"""The web app: ``POST /predict``, ``GET /health`` and ``GET /`` (the drawing page).

This is the only module of tinydl that imports Starlette and uvicorn (the ``serve`` extra:
``pip install "tinydl[serve]"``), and only when an app is built or served. Decoding, preparing
and the model run in Starlette's thread pool, off the event loop.
"""

from __future__ import annotations

import importlib.util
from importlib import resources

from ..data.folder import WORK_SIDE
from .inputs import MAX_BYTES, BadInput, pixels_from_json
from .predictor import Predictor

__all__ = ["build_app", "serve"]

_INSTALL = 'pip install "tinydl[serve]"'


def _require_web() -> None:
    missing = [
        name
        for name, module in (
            ("starlette", "starlette"),
            ("uvicorn", "uvicorn"),
            ("python-multipart", "python_multipart"),
        )
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise ImportError(f"serving needs {', '.join(missing)}; install it with {_INSTALL}")


async def _read_body(request, limit: int) -> bytes:
    """The body, refused by its Content-Length before reading, and while streaming (chunked
    uploads have none) as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadInput(f"bad Content-Length {declared!r}")
        if int(declared) > limit:
            raise BadInput(f"the body has {int(declared):,} bytes; the limit is {limit:,}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadInput(f"the body is over the limit of {limit:,} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _form_file(request, body: bytes) -> bytes:
    """The bytes of the multipart field ``file``, parsed from the already read ``body``."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(request.scope, replay).form(max_files=1, max_fields=8) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadInput("the multipart form has no file in a field named 'file'")
        return await upload.read()


def build_app(
    model, meta: dict, *, max_bytes: int = MAX_BYTES, max_side: int = WORK_SIDE, max_batch: int = 64
):
    """A Starlette app serving ``model`` (eval mode) with the ``meta`` of ``load_run``.

    ``POST /predict`` takes an image as the multipart field ``file``, as the raw body, or as
    JSON ``{"pixels": [[...]]}`` (see ``pixels_from_json``), prepares it as ``tinydl predict``
    does and answers ``{"top3": [{"class", "name", "probability"}, ...]}``; with
    ``?input=1`` also ``"input"``, the 28x28 image the model saw (rows of floats in [0, 1]).
    Bodies over ``max_bytes`` get 413; images are reduced to ``max_side`` while decoded.
    Every refusal is a 4xx with ``{"error": "<one line>"}``."""
    _require_web()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    predictor = Predictor(model, meta, max_batch=max_batch)
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    def answer(source, with_input: bool) -> dict:
        image = predictor.prepare(source, max_side)
        result = {"top3": predictor.predict(image)}
        if with_input:
            result["input"] = [[round(float(v), 4) for v in row] for row in image]
        return result

    async def predict(request):
        body = await _read_body(request, max_bytes)
        if not body:
            raise BadInput(
                "the body is empty: send an image (raw, or as the multipart field 'file') "
                'or JSON {"pixels": [[...]]}'
            )
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            source = await _form_file(request, body)
            if not source:
                raise BadInput("the uploaded file is empty")
        elif kind == "application/json":
            source = pixels_from_json(body)
        else:
            source = body
        with_input = request.query_params.get("input", "").lower() in ("1", "true", "yes")
        return JSONResponse(await run_in_threadpool(answer, source, with_input))

    async def health(request):
        batcher = predictor.batcher
        return JSONResponse(
            {
                "status": "ok",
                "model": meta.get("model"),
                "classes": predictor.names,
                "preprocess": meta.get("preprocess", "digit"),
                "served": {"images": batcher.items, "batches": batcher.batches},
            }
        )

    async def index(request):
        return HTMLResponse(page)

    async def refused(request, exc: BadInput):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def http_error(request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    async def server_error(request, exc: Exception):
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/health", health),
            Route("/predict", predict, methods=["POST"]),
        ],
        exception_handlers={BadInput: refused, HTTPException: http_error, 500: server_error},
    )
    app.state.predictor = predictor
    return app


def serve(run, host: str = "127.0.0.1", port: int = 8000, **options) -> int:
    """Serve a run folder or checkpoint (or the ``(model, meta)`` of ``load_run``) with uvicorn
    until Ctrl-C; ``options`` go to ``build_app``."""
    from ..recipes.classifier import load_run

    _require_web()
    import uvicorn

    model, meta = run if isinstance(run, tuple) else load_run(run)
    app = build_app(model, meta, **options)
    print(f"tinydl serve: {meta.get('model')} on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    # NOTE: no access log: one line per request would cost more than the prediction
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0
