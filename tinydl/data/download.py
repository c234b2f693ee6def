"""Fetching dataset files from mirrors: checksum-verified, atomic, one mirror after another.

The cache folder is ``$TINYDL_CACHE/<name>`` when that variable is set, else
``~/.cache/tinydl/<name>``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..io.atomic import atomic_writer
from .errors import DatasetError

__all__ = ["cache_dir", "file_digest", "download_file"]

_CHUNK = 1 << 20
_USER_AGENT = "tinydl-data/0.1 (python urllib)"


def cache_dir(name: str = "") -> Path:
    """``$TINYDL_CACHE/<name>``, or ``~/.cache/tinydl/<name>`` when the variable is unset."""
    base = os.environ.get("TINYDL_CACHE") or Path.home() / ".cache" / "tinydl"
    return Path(base) / name


def _parse_checksum(spec: str) -> tuple[str, str]:
    algo, _, digest = spec.rpartition(":")
    if not algo:
        algo = {32: "md5", 64: "sha256"}.get(len(digest), "")
    if algo not in ("md5", "sha1", "sha256"):
        raise ValueError(f"download_file: checksum {spec!r} must be 'md5:<hex>' or 'sha256:<hex>'")
    return algo, digest.lower()


def file_digest(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, dest: Path, checksum: str | None, timeout: float) -> None:
    """Download ``url`` into ``dest`` atomically; the checksum is verified before the rename,
    so a bad download leaves no file."""
    import urllib.request

    algo, expected = _parse_checksum(checksum) if checksum else ("sha256", None)
    h = hashlib.new(algo)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with (
        urllib.request.urlopen(request, timeout=timeout) as resp,
        atomic_writer(dest, "download_file") as out,
    ):
        length = resp.headers.get("Content-Length")
        received = 0
        for chunk in iter(lambda: resp.read(_CHUNK), b""):
            out.write(chunk)
            h.update(chunk)
            received += len(chunk)
        # raised inside the block: atomic_writer then removes its temporary file
        if length is not None and received != int(length):
            raise DatasetError(f"incomplete download (expected {length} bytes, got {received})")
        if expected is not None and h.hexdigest() != expected:
            raise DatasetError(
                f"checksum mismatch (expected {algo} {expected}, found {h.hexdigest()})"
            )


def download_file(
    filename: str, mirrors, folder, checksum: str | None = None, timeout: float = 30.0
) -> Path:
    """Fetch ``filename`` from the first mirror that serves it with the right checksum.

    Parameters
    ----------
    filename : str
        Name appended to each mirror's base URL and used in ``folder``.
    mirrors : sequence of str
        Base URLs tried in order (``http://``, ``https://`` or ``file://``).
    folder : str or os.PathLike
        Destination folder, created if needed. The file appears there only once complete and
        verified (:func:`tinydl.io.atomic.atomic_writer`: temporary file, then one rename).
    checksum : str, optional
        ``"md5:<hex>"`` or ``"sha256:<hex>"`` of the downloaded file.

    Raises
    ------
    DatasetError
        When every mirror failed; the message gives each URL and why.
    """
    # NOTE: imported here, not at the top: urllib.request pulls in http, email and ssl (~0.1 s),
    # which ``import tinydl`` should not pay for.
    import http.client
    import urllib.error

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / filename
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            _fetch(url, dest, checksum, timeout)
            return dest
        except urllib.error.HTTPError as exc:
            failures.append(f"  {url}: HTTP error {exc.code} ({exc.reason})")
        except urllib.error.URLError as exc:
            failures.append(f"  {url}: {exc.reason}")
        except (http.client.HTTPException, OSError, DatasetError) as exc:
            failures.append(f"  {url}: {type(exc).__name__}: {exc}")
    if not failures:
        failures.append("  (no mirrors given)")
    raise DatasetError(
        f"download_file: could not fetch {filename} into {folder}:\n"
        + "\n".join(failures)
        + "\nCheck the network connection, or copy the file into that folder yourself."
    )
