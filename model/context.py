"""The context classifier: a second technique classifier that reads each span again, marked with brackets
inside the text around it, as the SemEval-2020 technique-classification leaders did.

The detector's own technique head reads a span in the window the span tagger scored, often near that
window's edge; this one sees every span centred in its own context (`context_tokens`), with "[" and "]"
around it, so its encoder attends to the span knowing where it is. A small encoder (MiniLM) is enough: its
probabilities are mixed with the head's by a weight tuned on validation (`Decoding.context_mix`).

It lives in a checkpoint's `context/` folder (a Hugging Face model folder plus `context.json`); a checkpoint
without one classifies with its head alone. `persuasion train-context` (train/context.py) trains it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from persuasion.errors import reject_unknown_keys
from persuasion.model.checkpoint import load_weights, save_weights
from persuasion.model.windows import WindowFraming, tokenize_document

CONTEXT_DIR = "context"  # inside a checkpoint folder
CONTEXT_SETTINGS_FILE = "context.json"
MARKERS = ("[", "]")  # around the span; ordinary tokens of every tokenizer, so no vocabulary grows
# Characters read on each side of a span to find its context tokens: more than context_tokens can hold, so the
# context is cut by tokens, and a span in a text of any length costs the same.
MARGIN_CHARACTERS = 1500
BATCH_SPANS = 64  # marked spans per forward pass at inference


@dataclass(frozen=True)
class ContextSettings:
    techniques: tuple[str, ...]
    context_tokens: int = 160  # per marked span: framing tokens, markers, the span and its context
    base_model: str = ""
    recipe: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict, source: str = CONTEXT_SETTINGS_FILE) -> "ContextSettings":
        reject_unknown_keys(cls, values, source, "context setting")
        settings = cls(**values)
        return ContextSettings(tuple(settings.techniques), settings.context_tokens, settings.base_model, settings.recipe)

    def to_dict(self) -> dict:
        return asdict(self) | {"techniques": list(self.techniques)}


class ContextNetwork(nn.Module):
    """An encoder and a head over the framing token, the mean of the span's tokens and the opening marker."""

    def __init__(self, encoder: nn.Module, num_techniques: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_techniques))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, markers: torch.Tensor) -> torch.Tensor:
        """Technique logits; markers holds each row's (opening, closing) marker positions."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        inside = (positions[None, :] > markers[:, :1]) & (positions[None, :] < markers[:, 1:])
        mean = (hidden * inside[..., None]).sum(1) / inside.sum(1, keepdim=True).clamp(min=1)
        opening = hidden[torch.arange(len(hidden), device=hidden.device), markers[:, 0]]
        return self.head(torch.cat([hidden[:, 0], mean, opening], dim=-1))


@dataclass(frozen=True)
class MarkedSpan:
    token_ids: list[int]  # framed: the tokenizer's framing tokens, context, markers and span
    markers: tuple[int, int]  # positions of the opening and closing marker


class SpanMarker:
    """Turns (text, start, end) into the token ids the context classifier reads, the same in training and at
    inference."""

    def __init__(self, tokenizer, context_tokens: int):
        self.tokenizer = tokenizer
        self.framing = WindowFraming.of(tokenizer)
        self.opening, self.closing = (tokenizer(marker, add_special_tokens=False)["input_ids"][-1] for marker in MARKERS)
        self.room = context_tokens - self.framing.extra_tokens - 2  # for the span and its context

    def mark(self, text: str, start: int, end: int) -> MarkedSpan | None:
        """The span text[start:end] centred in its context, or None if it holds no token (only whitespace)."""
        low, high = max(0, start - MARGIN_CHARACTERS), min(len(text), end + MARGIN_CHARACTERS)
        piece = tokenize_document(self.tokenizer, text[low:high])
        tokens = piece.tokens_overlapping(start - low, end - low)
        if tokens is None:
            return None
        first, last = tokens
        ids = piece.token_ids
        span = ids[first: last + 1][: self.room]  # a span longer than the room keeps its beginning
        context = self.room - len(span)
        # Half the context on each side, what one side lacks going to the other.
        before = min(first, max(context // 2, context - (len(ids) - last - 1)))
        after = min(len(ids) - last - 1, context - before)
        framed = [*self.framing.prefix, *ids[first - before: first], self.opening, *span, self.closing,
                  *ids[last + 1: last + 1 + after], *self.framing.suffix]
        opening = len(self.framing.prefix) + before
        return MarkedSpan(framed, (opening, opening + len(span) + 1))

    def batch(self, marked: list[MarkedSpan]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask, markers), right-padded."""
        width = max(len(span.token_ids) for span in marked)
        input_ids = torch.full((len(marked), width), self.framing.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, span in enumerate(marked):
            input_ids[row, : len(span.token_ids)] = torch.tensor(span.token_ids, dtype=torch.long)
            attention_mask[row, : len(span.token_ids)] = 1
        return input_ids, attention_mask, torch.tensor([span.markers for span in marked], dtype=torch.long)


class ContextClassifier:
    """A trained context classifier: spans of a text in, technique logits out."""

    def __init__(self, network: ContextNetwork, tokenizer, settings: ContextSettings, device: str = "cpu"):
        self.network = network.to(device).eval()
        self.settings = settings
        self.marker = SpanMarker(tokenizer, settings.context_tokens)
        self.device = device

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> "ContextClassifier":
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        directory = Path(directory)
        settings = ContextSettings.from_dict(json.loads((directory / CONTEXT_SETTINGS_FILE).read_text()),
                                             source=str(directory / CONTEXT_SETTINGS_FILE))
        network = ContextNetwork(AutoModel.from_config(AutoConfig.from_pretrained(directory)), len(settings.techniques))
        network.load_state_dict(load_weights(directory))
        return cls(network.float(), AutoTokenizer.from_pretrained(directory), settings, device)

    def save(self, directory: str | Path) -> Path:
        """A folder `ContextClassifier.load` reads back: fp16 weights, tokenizer, encoder config, context.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.network.encoder.config.save_pretrained(directory)
        self.marker.tokenizer.save_pretrained(directory)
        save_weights(self.network, directory)
        (directory / CONTEXT_SETTINGS_FILE).write_text(json.dumps(self.settings.to_dict(), indent=2) + "\n")
        return directory

    @torch.inference_mode()
    def logits(self, text: str, spans: list[tuple[int, int]]) -> list[np.ndarray | None]:
        """Technique logits for each (start, end) of the text; None for a span with no token."""
        marked = [self.marker.mark(text, start, end) for start, end in spans]
        readable = sorted((row for row, span in enumerate(marked) if span is not None),
                          key=lambda row: len(marked[row].token_ids))  # similar lengths pad little
        answers: list[np.ndarray | None] = [None] * len(spans)
        for first in range(0, len(readable), BATCH_SPANS):
            rows = readable[first: first + BATCH_SPANS]
            input_ids, attention_mask, markers = self.marker.batch([marked[row] for row in rows])
            logits = self.network(input_ids.to(self.device), attention_mask.to(self.device), markers.to(self.device))
            for row, row_logits in zip(rows, logits.float().cpu().numpy()):
                answers[row] = row_logits
        return answers
