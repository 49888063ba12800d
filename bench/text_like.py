"""Text-like bytes from a seeded generator: words of skewed frequency in lines, as lz4 finds in logs and documents.

Each call draws fresh words, so no two files share a run of text that a chunker could
deduplicate; what lz4 gains comes from within each file, as with real text.
"""

from __future__ import annotations

import random
import sys
from array import array
from dataclasses import dataclass

LETTERS = "etaoinshrdlucmfwypvbgkjqxz"
# Roughly how often each letter above starts or fills an English word, in percent.
LETTER_WEIGHTS = (12, 9, 8, 8, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1)
VOCABULARY_SIZE = 5_000
SHORTEST_WORD = 2
LONGEST_WORD = 10
# Each of the 65,536 slots holds a word and what follows it; a two-byte random index picks a slot.
SLOT_COUNT = 1 << 16
SEPARATORS = (" ",) * 40 + (", ",) * 3 + (".\n",) * 2 + ("\n",)
# Slots drawn beyond the expected count, so that one draw nearly always fills a file.
EXTRA_SLOTS = 256


@dataclass(frozen=True)
class TextSource:
    """Word slots drawn once from the seed; `text` strings them together in a seeded order."""

    slots: tuple[bytes, ...]
    mean_slot_length: float

    def text(self, generator: random.Random, size: int) -> bytes:
        pieces: list[bytes] = []
        written = 0
        while written < size:
            slot_count = int((size - written) / self.mean_slot_length) + EXTRA_SLOTS
            indexes = array("H", generator.randbytes(2 * slot_count))
            if sys.byteorder == "big":
                indexes.byteswap()
            piece = b"".join(map(self.slots.__getitem__, indexes))
            pieces.append(piece)
            written += len(piece)
        return b"".join(pieces)[:size]


def text_source(generator: random.Random) -> TextSource:
    """A vocabulary whose words are used with Zipf's frequencies, as in natural language."""
    vocabulary = [
        "".join(generator.choices(LETTERS, weights=LETTER_WEIGHTS, k=generator.randint(SHORTEST_WORD, LONGEST_WORD)))
        for _ in range(VOCABULARY_SIZE)
    ]
    frequencies = [1 / rank for rank in range(1, VOCABULARY_SIZE + 1)]
    words = generator.choices(vocabulary, weights=frequencies, k=SLOT_COUNT)
    slots = tuple((word + generator.choice(SEPARATORS)).encode("ascii") for word in words)
    return TextSource(slots=slots, mean_slot_length=sum(map(len, slots)) / len(slots))
