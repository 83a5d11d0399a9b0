"""The network's stages; each returns arrays, and decoding (model/decoding.py) is numpy on them.

1. `scored_windows`: windows of token ids in, per window its span tagger's log p(O/B/I), the technique
   tagger's p(each technique's span covers the token) and the encoder's states out, a batch per forward
   pass. It is the one loop that runs the encoder at inference: `Detector.score` gives it the windows of a
   list of texts, `detect_streamed` those of one long text as its tokens arrive (model/streaming.py), a
   distillation teacher those of the training texts (train/distil.py).
2. `classify_spans`: spans of a scored document in, the technique head's logits out, each span read in the
   window that sees it best. Which spans depends on the decoding (thresholds decide where spans are), so
   `Detector.classify_candidates` classifies those a decoding finds; the logits are cached by (start, end).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

from persuasion.model.decoding import DocumentScores, WindowScores
from persuasion.model.network import PersuasionNetwork
from persuasion.model.windows import WindowFraming, batch_windows

Key = TypeVar("Key")
SPAN_CHUNK = 256  # spans per pass of the technique head: bounds its per-span copies of window states


def scored_windows(network: PersuasionNetwork, framing: WindowFraming,
                   windows: Iterable[tuple[Key, int, int, list[int]]], batch_size: int, device: str,
                   before_each_pass: Callable[[], None] | None = None) -> Iterator[list[tuple[Key, WindowScores]]]:
    """Windows given as (key, first token, one past the last, their content token ids), taken from `windows`
    only as each batch fills and scored batch_size to a forward pass: each batch as (key, scores) in order.
    before_each_pass(), when given, runs before every forward pass (a server stops a long call there)."""
    batch = []
    for window in windows:
        batch.append(window)
        if len(batch) == batch_size:
            if before_each_pass is not None:
                before_each_pass()
            yield score_batch(network, framing, batch, device)
            batch = []
    if batch:
        if before_each_pass is not None:
            before_each_pass()
        yield score_batch(network, framing, batch, device)


@torch.inference_mode()
def score_batch(network: PersuasionNetwork, framing: WindowFraming, batch: list[tuple[Key, int, int, list[int]]],
                device: str) -> list[tuple[Key, WindowScores]]:
    input_ids, attention_mask = batch_windows([ids for *_, ids in batch], framing)
    hidden = network.encode(input_ids.to(device), attention_mask.to(device))
    log_probabilities = network.tag_log_probabilities(hidden).cpu().numpy()
    tagger = network.token_technique_head is not None
    p_techniques = network.token_technique_logits(hidden).float().sigmoid().cpu().numpy() if tagger else None
    states = hidden.cpu().numpy()
    content = framing.offset
    return [(key, WindowScores(start, end, log_probabilities[row, content: content + len(ids)],
                               states[row, : len(ids) + framing.extra_tokens],
                               p_techniques[row, content: content + len(ids)] if tagger else None))
            for row, (key, start, end, ids) in enumerate(batch)]


@torch.inference_mode()
def classify_spans(network: PersuasionNetwork, framing: WindowFraming, scores: DocumentScores,
                   spans: Iterable[tuple[int, int]], device: str) -> None:
    """Add to scores.span_logits the technique head's logits for each (start, end) it does not hold yet, read
    from the window that sees the span best (None for a span with no token: only whitespace or unknown
    characters)."""
    windows = scores.windows
    window_ends = [window.token_end for window in windows]  # increasing, as windows are planned in order
    chosen: dict[int, int] = {}  # window index in the document -> row in the stacked states
    classified, span_rows, bounds = [], [], []
    for span in dict.fromkeys(spans):
        if span in scores.span_logits:
            continue
        tokens = scores.document.tokens_overlapping(*span)
        if tokens is None or not windows:
            scores.span_logits[span] = None
            continue
        # Only windows that overlap the span compete; they are contiguous in planning order.
        first_candidate = bisect.bisect_right(window_ends, tokens[0])
        best = first_candidate
        for candidate in range(first_candidate, len(windows)):
            if windows[candidate].token_start > tokens[1]:
                break
            if centrality(windows[candidate], tokens) > centrality(windows[best], tokens):
                best = candidate
        window = windows[best]
        classified.append(span)
        span_rows.append(chosen.setdefault(best, len(chosen)))
        offset = framing.offset - window.token_start
        bounds.append((max(tokens[0], window.token_start) + offset, min(tokens[1], window.token_end - 1) + offset))
    if not classified:
        return
    stacked = [windows[index].states for index in chosen]  # dicts keep insertion order = row order
    states = torch.zeros((len(stacked), max(len(rows) for rows in stacked), stacked[0].shape[1]), device=device)
    for row, window_states in enumerate(stacked):
        states[row, : len(window_states)] = torch.from_numpy(window_states)
    span_rows_tensor = torch.tensor(span_rows, dtype=torch.long, device=device)
    bounds_tensor = torch.tensor(bounds, dtype=torch.long, device=device)
    for first in range(0, len(classified), SPAN_CHUNK):
        logits = network.technique_logits(states, span_rows_tensor[first: first + SPAN_CHUNK],
                                          bounds_tensor[first: first + SPAN_CHUNK]).float().cpu().numpy()
        scores.span_logits.update(zip(classified[first: first + SPAN_CHUNK], logits))


def centrality(window: WindowScores, tokens: tuple[int, int]) -> tuple[int, int]:
    """Prefer the window that holds the whole span with the most context on its nearer side."""
    covered = min(tokens[1] + 1, window.token_end) - max(tokens[0], window.token_start)
    margin = min(tokens[0] - window.token_start, window.token_end - 1 - tokens[1])
    return covered, margin
