"""Tokenising a whole document once, cutting it into overlapping fixed-size windows, and its sentences.

Training and inference share these functions so a window and a sentence mean the same thing in both.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Where a text may be cut to tokenize it in pieces: before a space or line break that follows a visible
# character. Every tokenizer splits words there, and the whitespace run that follows stays whole.
PIECE_CUT = re.compile(r"(?<=\S)[ \n]")


@dataclass
class TokenizedDocument:
    token_ids: list[int]
    offsets: list[tuple[int, int]]  # character offsets of each token in the original string

    def __post_init__(self):
        self.starts = [start for start, _ in self.offsets]
        self.ends = [end for _, end in self.offsets]

    def tokens_overlapping(self, start: int, end: int) -> tuple[int, int] | None:
        """First and last token (inclusive) whose characters overlap [start, end), or None."""
        first = bisect.bisect_right(self.ends, start)
        last = bisect.bisect_left(self.starts, end) - 1
        return (first, last) if first < len(self.offsets) and last >= first else None


def tokenize_document(tokenizer, text: str) -> TokenizedDocument:
    """Word pieces of the whole text (no truncation), each with its exact character offsets."""
    if not text:
        return TokenizedDocument([], [])
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                         verbose=False)
    kept = [(token_id, (start, end)) for token_id, (start, end) in
            zip(encoding["input_ids"], encoding["offset_mapping"]) if end > start]
    return TokenizedDocument([token_id for token_id, _ in kept], [offset for _, offset in kept])


def tokenize_in_pieces(tokenizer, text: str, characters: int) -> Iterator[TokenizedDocument]:
    """tokenize_document(text) a piece of about `characters` characters at a time (PIECE_CUT says where a
    piece ends), offsets into the whole text: joined, the pieces are the whole text's tokens."""
    start = 0
    while start < len(text):
        cut = PIECE_CUT.search(text, start + characters) if start + characters < len(text) else None
        end = cut.start() if cut else len(text)
        piece = tokenize_document(tokenizer, text[start:end])
        yield TokenizedDocument(piece.token_ids, [(first + start, last + start) for first, last in piece.offsets])
        start = end


def plan_windows(num_tokens: int, content_tokens: int, stride: int, first_start: int = 0) -> list[tuple[int, int]]:
    """Token ranges [start, end) that cover every token; the last window is aligned to the end."""
    if num_tokens == 0:
        return []
    if num_tokens <= content_tokens:
        return [(0, num_tokens)]
    windows = []
    if first_start > 0:
        windows.append((0, min(first_start, content_tokens)))
    start = first_start
    while start + content_tokens < num_tokens:
        windows.append((start, start + content_tokens))
        start += stride
    windows.append((num_tokens - content_tokens, num_tokens))
    return windows


@dataclass(frozen=True)
class WindowFraming:
    """How the tokenizer frames one sequence ([CLS] … [SEP] for BERT, <s> … </s> for MPNet) and pads it."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    pad_id: int

    @classmethod
    def of(cls, tokenizer) -> "WindowFraming":
        sample = "a b"
        framed = tokenizer(sample, add_special_tokens=True)["input_ids"]
        content = tokenizer(sample, add_special_tokens=False)["input_ids"]
        starts = [i for i in range(len(framed) - len(content) + 1) if framed[i: i + len(content)] == content]
        if not starts or starts[0] == 0 or tokenizer.pad_token_id is None:
            # The technique head reads the first framing token as the window's summary.
            raise ValueError(f"{type(tokenizer).__name__}: windows need a tokenizer that adds a leading special "
                             "token and has a padding token")
        start = starts[0]
        return cls(tuple(framed[:start]), tuple(framed[start + len(content):]), tokenizer.pad_token_id)

    @property
    def offset(self) -> int:
        """Position of a window's first content token."""
        return len(self.prefix)

    @property
    def extra_tokens(self) -> int:
        return len(self.prefix) + len(self.suffix)


def batch_windows(token_ids_per_window: list[list[int]], framing: WindowFraming) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window framed as the tokenizer frames one sequence, right-padded: (input_ids, attention_mask)."""
    width = max(len(ids) for ids in token_ids_per_window) + framing.extra_tokens
    input_ids = torch.full((len(token_ids_per_window), width), framing.pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(token_ids_per_window):
        full = [*framing.prefix, *ids, *framing.suffix]
        input_ids[row, : len(full)] = torch.tensor(full, dtype=torch.long)
        attention_mask[row, : len(full)] = 1
    return input_ids, attention_mask


def sentence_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank sentence: split at line breaks and after . ! ?"""
    return list(iter_sentence_bounds(text))


def iter_sentence_bounds(text: str) -> Iterator[tuple[int, int]]:
    position = 0
    for match in SENTENCE_END.finditer(text):
        if text[position: match.start()].strip():
            yield position, match.start()
        position = match.end()
    if text[position:].strip():
        yield position, len(text)
