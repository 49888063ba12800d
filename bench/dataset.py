"""Incompressible test data: many files of varied size, written and synced before timing."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from bench.options import DatasetSize

FILES_PER_FOLDER = 100
SIZE_SEED = 8


@dataclass(frozen=True)
class Dataset:
    root: Path
    file_count: int
    total_bytes: int


def write_dataset(root: Path, size: DatasetSize) -> Dataset:
    """Random bytes (so lz4 cannot shrink them) in files of 0.5 to 1.5 times the mean size."""
    sizes = file_sizes(size)
    for index, file_size in enumerate(sizes):
        folder = root / f"folder{index // FILES_PER_FOLDER:03d}"
        if index % FILES_PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"file{index:05d}.bin").write_bytes(os.urandom(file_size))
    os.sync()
    return Dataset(root=root, file_count=len(sizes), total_bytes=sum(sizes))


def file_sizes(size: DatasetSize) -> list[int]:
    """Sizes that add up to exactly size.total_bytes."""
    chooser = random.Random(SIZE_SEED)
    weights = [0.5 + chooser.random() for _ in range(size.file_count)]
    scale = size.total_bytes / sum(weights)
    sizes = [int(weight * scale) for weight in weights]
    sizes[-1] += size.total_bytes - sum(sizes)
    return sizes
