"""Downloads, offline: a small HTTP server on 127.0.0.1 serves files this test builds."""

import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

from tinydl.data import MNIST, DatasetError, cache_dir, download_file, write_idx

SPLIT_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on a free port; yields the base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def mirrors(server):
    """Three mirrors: 'missing' (404), 'corrupt' (bad bytes), 'good'; plus the good checksums."""
    root, url = server
    rng = np.random.default_rng(0)
    arrays = {
        SPLIT_FILES[0]: rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        SPLIT_FILES[1]: rng.integers(0, 10, 7, dtype=np.uint8),
    }
    (root / "missing").mkdir()
    checksums = {}
    for sub in ("good", "corrupt"):
        (root / sub).mkdir()
        for name, array in arrays.items():
            path = write_idx(root / sub / name, array)
            if sub == "good":
                checksums[name] = "md5:" + hashlib.md5(path.read_bytes()).hexdigest()
            else:
                path.write_bytes(path.read_bytes()[:-1] + b"!")
    bases = [f"{url}/{sub}/" for sub in ("missing", "corrupt", "good")]
    return bases, checksums, arrays


def _files(folder):
    """Every name in ``folder``: a download's temporary file would show here."""
    return sorted(p.name for p in folder.iterdir())


def test_download_falls_through_to_the_good_mirror(tmp_path, mirrors):
    bases, checksums, _ = mirrors
    name = SPLIT_FILES[0]
    dest = tmp_path / "dest"
    path = download_file(name, bases, dest, checksum=checksums[name])
    assert path == dest / name
    assert "md5:" + hashlib.md5(path.read_bytes()).hexdigest() == checksums[name]
    assert _files(dest) == [name]


def test_download_verifies_sha256_too(tmp_path, mirrors):
    bases, _, _ = mirrors
    good = tmp_path / "www" / "good" / SPLIT_FILES[1]
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    path = download_file(SPLIT_FILES[1], bases[1:], tmp_path / "d", checksum=f"sha256:{digest}")
    assert path.read_bytes() == good.read_bytes()


def test_every_mirror_failing_raises_and_leaves_nothing(tmp_path, mirrors):
    bases, checksums, _ = mirrors
    name = SPLIT_FILES[0]
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError) as info:
        download_file(name, bases[:2], dest, checksum=checksums[name])
    message = str(info.value)
    assert bases[0] + name in message and "HTTP error 404" in message
    assert bases[1] + name in message and "checksum mismatch" in message
    assert _files(dest) == []


def test_refused_connection_is_reported(tmp_path):
    with pytest.raises(DatasetError, match="could not fetch"):
        download_file("x.gz", ["http://127.0.0.1:9/"], tmp_path, timeout=2)


def test_mnist_download_into_the_cache(tmp_path, mirrors, monkeypatch):
    bases, checksums, arrays = mirrors
    monkeypatch.delenv("TINYDL_DATA", raising=False)
    monkeypatch.setenv("TINYDL_CACHE", str(tmp_path / "cache"))
    assert cache_dir("mnist") == tmp_path / "cache" / "mnist"
    ds = MNIST(train=True, download=True, mirrors=bases, checksums=checksums)
    assert ds.root == tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in ds.root.iterdir()) == sorted(SPLIT_FILES)
    np.testing.assert_array_equal(ds.data, arrays[SPLIT_FILES[0]])
    np.testing.assert_array_equal(ds.targets, arrays[SPLIT_FILES[1]])
    assert ds.targets.dtype == np.int64
    # found again in the cache, with no download asked for
    assert len(MNIST(train=True)) == 7


def test_mnist_download_into_root(tmp_path, mirrors, monkeypatch):
    bases, checksums, _ = mirrors
    monkeypatch.delenv("TINYDL_DATA", raising=False)
    monkeypatch.setenv("TINYDL_CACHE", str(tmp_path / "cache"))
    ds = MNIST(root=tmp_path / "mine", download=True, mirrors=bases, checksums=checksums)
    assert ds.root == tmp_path / "mine" and len(ds) == 7
    assert not (tmp_path / "cache").exists()


def test_mnist_default_checksums_reject_other_files(tmp_path, mirrors, monkeypatch):
    bases, _, _ = mirrors
    monkeypatch.delenv("TINYDL_DATA", raising=False)
    monkeypatch.setenv("TINYDL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        MNIST(download=True, mirrors=bases[2:])  # the published MD5s do not match test files
