"""Tokenising a whole document once, cutting it into overlapping fixed-size windows, and its sentences.

Training and inference share these functions so a window and a sentence mean the same thing in both.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import torch

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


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


def batch_windows(token_ids_per_window: list[list[int]], tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] window [SEP], right-padded: (input_ids, attention_mask)."""
    width = max(len(ids) for ids in token_ids_per_window) + 2
    input_ids = torch.full((len(token_ids_per_window), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(token_ids_per_window):
        full = [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]
        input_ids[row, : len(full)] = torch.tensor(full, dtype=torch.long)
        attention_mask[row, : len(full)] = 1
    return input_ids, attention_mask


def sentence_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank sentence: split at line breaks and after . ! ?"""
    bounds, position = [], 0
    for match in SENTENCE_END.finditer(text):
        if text[position: match.start()].strip():
            bounds.append((position, match.start()))
        position = match.end()
    if text[position:].strip():
        bounds.append((position, len(text)))
    return bounds


def token_sentences(document: TokenizedDocument, bounds: list[tuple[int, int]]) -> list[int]:
    """For each token, the index in `bounds` of the sentence that holds its first character (-1: none)."""
    starts = [start for start, _ in bounds]
    sentences = []
    for token_start in document.starts:
        index = bisect.bisect_right(starts, token_start) - 1
        sentences.append(index if index >= 0 and token_start < bounds[index][1] else -1)
    return sentences


def sentence_pieces(sentences: list[int]) -> list[tuple[int, int, int]]:
    """(sentence, first token, last token inclusive) for each run of tokens of one sentence, in order.

    Given the tokens of a window, a sentence cut by the window's border yields the piece the window sees.
    """
    pieces = []
    for token, sentence in enumerate(sentences):
        if sentence < 0:
            continue
        if pieces and pieces[-1][0] == sentence and pieces[-1][2] == token - 1:
            pieces[-1] = (sentence, pieces[-1][1], token)
        else:
            pieces.append((sentence, token, token))
    return pieces
