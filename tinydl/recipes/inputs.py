"""What ``tinydl predict`` reads: image files, folders walked recursively, and globs; a folder
laid out as one sub-folder per class of the run (an ImageFolder) gives each image its label."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from ..data.folder import IMAGE_SUFFIXES

__all__ = ["find_images"]


def _walk(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, str(p.relative_to(folder)))
        for p in Path(folder).rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _labelled(folder: str, classes: list[str]) -> bool:
    """An ImageFolder of the run's classes: only sub-folders, each named after a class."""
    subs = [p for p in Path(folder).iterdir() if not p.name.startswith(".")]
    return bool(subs) and all(p.is_dir() and p.name in classes for p in subs)


def find_images(inputs, classes: list[str]) -> tuple[list[str], list[int | None]]:
    """The image paths of ``inputs`` (files as given, folders walked, globs expanded) and for
    each its class index when it lies in an ImageFolder of ``classes``, else ``None``."""
    paths, labels = [], []
    for item in map(str, inputs):
        if os.path.isfile(item):
            paths.append(item)
            labels.append(None)
            continue
        matches = [item] if os.path.isdir(item) else sorted(glob.glob(item, recursive=True))
        found = 0
        for match in matches:
            if os.path.isfile(match):
                if Path(match).suffix.lower() in IMAGE_SUFFIXES:
                    paths.append(match)
                    labels.append(None)
                    found += 1
                continue
            walked = _walk(match)
            index = {c: i for i, c in enumerate(classes)} if _labelled(match, classes) else {}
            paths += walked
            labels += [index.get(Path(p).relative_to(match).parts[0]) for p in walked]
            found += len(walked)
        if not found:
            kind = "folder" if os.path.isdir(item) else "image file"
            suffixes = ", ".join(IMAGE_SUFFIXES)
            if os.path.isdir(item) or matches:
                raise FileNotFoundError(f"no images ({suffixes}) in {item}")
            raise FileNotFoundError(f"no {kind} at {item}")
    return paths, labels
