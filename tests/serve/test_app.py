"""The API as a client meets it (Starlette's TestClient): every input kind predicts as
``tinydl predict`` does, and every bad input is a 4xx with a reason, after which the server
still answers."""

import asyncio
import json
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")
pytest.importorskip("python_multipart", reason="the serve extra (python-multipart) is missing")

from starlette.testclient import TestClient  # noqa: E402

from tests.serve.strokes import DIGITS, png, render  # noqa: E402
from tinydl.recipes.classifier import predict_files, prepare_image  # noqa: E402
from tinydl.serve import MAX_BYTES, build_app  # noqa: E402


@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(build_app(*tiny_model), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def drawings(tmp_path_factory):
    """Three drawn digits as PNG files: (path, uint8 pixels)."""
    folder = tmp_path_factory.mktemp("drawings")
    out = []
    for d in (2, 4, 7):
        pixels = render(DIGITS[d])
        path = folder / f"{d}.png"
        path.write_bytes(png(pixels))
        out.append((path, pixels))
    return out


def _expected(run, path):
    return [
        {"class": c, "name": name, "probability": q}
        for c, name, q in predict_files(run, [str(path)])[0]
    ]


def _same(got, expected):
    assert [t["class"] for t in got] == [t["class"] for t in expected]
    assert [t["name"] for t in got] == [t["name"] for t in expected]
    np.testing.assert_allclose(
        [t["probability"] for t in got], [t["probability"] for t in expected], atol=1e-6
    )


def _requests(path, pixels):
    data = path.read_bytes()
    return {
        "multipart": dict(files={"file": ("digit.png", data, "image/png")}),
        "raw": dict(content=data, headers={"content-type": "image/png"}),
        "raw-untyped": dict(content=data),
        "json-255": dict(json={"pixels": pixels.tolist()}),
        "json-01": dict(json={"pixels": (pixels / 255.0).tolist()}),
    }


@pytest.mark.parametrize("kind", ["multipart", "raw", "raw-untyped", "json-255", "json-01"])
def test_every_input_kind_predicts_as_tinydl_predict(client, tiny_model, drawings, kind):
    for path, pixels in drawings:
        r = client.post("/predict", **_requests(path, pixels)[kind])
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"top3"}  # the prepared input only on request
        _same(body["top3"], _expected(tiny_model, path))


def test_the_prepared_input_comes_on_request(client, tiny_model, drawings):
    path, _ = drawings[0]
    r = client.post("/predict?input=1", content=path.read_bytes())
    assert r.status_code == 200, r.text
    seen = np.array(r.json()["input"])
    assert seen.shape == (28, 28)
    np.testing.assert_allclose(seen, prepare_image(tiny_model[1], path), atol=5e-5)


def test_health_names_the_model_and_counts_what_it_served(tiny_model, drawings):
    with TestClient(build_app(*tiny_model)) as fresh:
        assert fresh.get("/health").json()["served"] == {"images": 0, "batches": 0}
        for path, _ in drawings:
            assert fresh.post("/predict", content=path.read_bytes()).status_code == 200
        body = fresh.get("/health").json()
    assert body == {
        "status": "ok",
        "model": "lenet",
        "classes": [str(i) for i in range(10)],
        "preprocess": "digit",
        "served": {"images": 3, "batches": 3},  # one at a time: a batch each
    }


def test_the_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for needle in ('id="pad"', 'id="top1"', 'id="top3"', 'id="input"', 'id="clear"', "/predict"):
        assert needle in r.text


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` grayscale pixels (a decompression bomb)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _json(text):
    return dict(content=text.encode(), headers={"content-type": "application/json"})


BAD = {
    "not an image": (dict(content=b"hello, not an image"), 400, "cannot read the image"),
    "empty body": (dict(content=b""), 400, "the body is empty"),
    "50 MB upload": (dict(content=bytes(50 * 2**20)), 413, "the limit is"),
    "bomb (30000x30000 PNG)": (dict(content=_png_header_only(30000, 30000)), 413, "too large"),
    "multipart without file": (
        dict(data={"name": "x"}, files={"other": ("a", b"1")}),
        400,
        "field named 'file'",
    ),
    "multipart non-image": (
        dict(files={"file": ("a.png", b"abc", "image/png")}),
        400,
        "cannot read the image",
    ),
    "multipart empty file": (dict(files={"file": ("a.png", b"", "image/png")}), 400, "empty"),
    "broken multipart": (
        dict(
            content=b"--x\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=x"}
        ),
        400,
        "field named 'file'",
    ),
    "invalid JSON": (_json("{"), 400, "not valid JSON"),
    "JSON list": (dict(json=[[1, 2]]), 422, '{"pixels"'),
    "JSON no pixels": (dict(json={"pix": [[1]]}), 422, '{"pixels"'),
    "pixels not a list": (dict(json={"pixels": 5}), 422, "list of rows"),
    "pixels empty": (dict(json={"pixels": []}), 422, "list of rows"),
    "pixels flat": (dict(json={"pixels": [1, 2, 3]}), 422, "list of rows"),
    "ragged rows": (dict(json={"pixels": [[1, 2], [3]]}), 422, "same, non-zero"),
    "empty rows": (dict(json={"pixels": [[], []]}), 422, "same, non-zero"),
    "3-D": (dict(json={"pixels": [[[1]]]}), 422, "must be numbers"),
    "strings": (dict(json={"pixels": [["1", "2"]]}), 422, "must be numbers"),
    "booleans": (dict(json={"pixels": [[True]]}), 422, "must be numbers"),
    "nulls": (dict(json={"pixels": [[None]]}), 422, "must be numbers"),
    "NaN": (_json('{"pixels": [[NaN, 1]]}'), 422, "finite"),
    "infinity": (_json('{"pixels": [[Infinity]]}'), 422, "finite"),
    "negative": (dict(json={"pixels": [[-1, 0]]}), 422, "[0, 1]"),
    "over 255": (dict(json={"pixels": [[256]]}), 422, "[0, 1]"),
    "too many pixels": (dict(json={"pixels": [[0] * 1025] * 1025}), 413, "pixels"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_a_4xx_with_a_reason_and_the_server_goes_on(client, drawings, name):
    request, status, needle = BAD[name]
    r = client.post("/predict", **request)
    assert r.status_code == status, r.text
    reason = r.json()["error"]
    assert needle in reason and "\n" not in reason and reason
    path, _ = drawings[0]
    assert client.post("/predict", content=path.read_bytes()).status_code == 200


def test_wrong_method_and_path_answer_json(client):
    r = client.get("/predict")
    assert r.status_code == 405 and r.json()["error"]
    r = client.get("/nothing-here")
    assert r.status_code == 404 and r.json()["error"]


def test_a_large_image_is_reduced_while_decoded(client):
    big = np.zeros((10000, 10000), np.uint8)
    big[3000:7000, 4500:5500] = 255  # a thick "1"
    r = client.post("/predict?input=1", content=png(big))
    assert r.status_code == 200, r.text
    seen = np.array(r.json()["input"])
    assert seen.max() == 1.0 and seen[:, :8].max() == 0.0  # a centred upright bar


def _asgi_post(app, length, chunks: int, chunk=2**20):
    """POST ``chunks`` chunks of ``chunk`` bytes straight to the ASGI app; (status, number of
    chunks it read). ``length`` None sends no Content-Length (as a chunked upload)."""
    headers = [(b"content-type", b"image/png")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "headers": headers,
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    read, sent = [0], []

    async def receive():
        if read[0] >= chunks:
            await asyncio.sleep(3600)  # a client that sends no more
        read[0] += 1
        return {"type": "http.request", "body": bytes(chunk), "more_body": read[0] < chunks}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], read[0]


def test_large_bodies_are_refused_before_being_read(tiny_model):
    app = build_app(*tiny_model)
    status, read = _asgi_post(app, 50 * 2**20, chunks=50)
    assert (status, read) == (413, 0)  # by its Content-Length, nothing read
    status, read = _asgi_post(app, None, chunks=50)
    assert status == 413 and read == MAX_BYTES // 2**20 + 1  # streaming stops past the limit


def test_missing_web_packages_name_the_extra(monkeypatch, tiny_model):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    with pytest.raises(
        ImportError, match=r'uvicorn; install it with pip install "tinydl\[serve\]"'
    ):
        build_app(*tiny_model)


def test_responses_are_plain_json(client, drawings):
    path, _ = drawings[1]
    r = client.post("/predict", content=path.read_bytes())
    assert json.loads(r.text) == r.json() and r.headers["content-type"] == "application/json"


def test_serve_command_refuses_a_missing_run_in_one_line(tmp_path, capsys):
    from tinydl.cli import main

    assert main(["serve", str(tmp_path / "no-run"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tinydl serve: error: no checkpoint at") and err.count("\n") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "name a RUN folder or checkpoint, or use --pretrained"),
        (["--pretrained", "vgg"], "invalid choice"),
    ],
)
def test_serve_needs_a_run_or_known_pretrained_weights(args, message, capsys):
    from tinydl.cli import main

    try:
        code = main(["serve", *args, "--port", "0"])
    except SystemExit as exc:  # argparse's own refusal of an unknown choice
        code = exc.code
    assert code != 0 and message in capsys.readouterr().err
