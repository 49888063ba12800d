"""The test data: many files of varied size, half random bytes and half text, the same for the same seed.

Every size and byte comes from one `random.Random(seed)`, drawn in a fixed order, so a run
with the same seed and size writes the same files. The data is written and synced before timing.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bench.options import DatasetSize
from bench.text_like import text_source

FILES_PER_FOLDER = 100


class Content(StrEnum):
    RANDOM = "random"
    TEXT = "text"


@dataclass(frozen=True)
class Dataset:
    root: Path
    seed: int
    file_count: int
    total_bytes: int
    text_bytes: int

    @property
    def random_bytes(self) -> int:
        return self.total_bytes - self.text_bytes


def write_dataset(root: Path, size: DatasetSize, seed: int) -> Dataset:
    """Even-numbered files hold random bytes (lz4 cannot shrink them), odd-numbered ones text-like
    words (lz4 can), in files of 0.5 to 1.5 times the mean size."""
    generator = random.Random(seed)
    sizes = file_sizes(generator, size)
    text = text_source(generator)
    text_bytes = 0
    for index, file_size in enumerate(sizes):
        folder = root / f"folder{index // FILES_PER_FOLDER:03d}"
        if index % FILES_PER_FOLDER == 0:
            folder.mkdir(parents=True)
        content = content_of(index)
        if content is Content.TEXT:
            data = text.text(generator, file_size)
            text_bytes += file_size
        else:
            data = generator.randbytes(file_size)
        (folder / f"file{index:05d}.{content}").write_bytes(data)
    os.sync()
    return Dataset(root=root, seed=seed, file_count=len(sizes), total_bytes=sum(sizes), text_bytes=text_bytes)


def content_of(index: int) -> Content:
    return Content.TEXT if index % 2 else Content.RANDOM


def file_sizes(generator: random.Random, size: DatasetSize) -> list[int]:
    """Sizes that add up to exactly size.total_bytes."""
    weights = [0.5 + generator.random() for _ in range(size.file_count)]
    scale = size.total_bytes / sum(weights)
    sizes = [int(weight * scale) for weight in weights]
    sizes[-1] += size.total_bytes - sum(sizes)
    return sizes
