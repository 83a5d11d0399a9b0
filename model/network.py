"""The network: one Hugging Face encoder with a span (O/B/I) tagger, a span-in-context technique
classifier and, optionally, a per-token technique tagger."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel

TAGS = ("O", "B", "I")
LENGTH_BUCKETS = 16  # span length in tokens, bucketed by log2


class PersuasionNetwork(nn.Module):
    def __init__(self, encoder: nn.Module, num_techniques: int, dropout: float = 0.1, technique_tagger: bool = False):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.tag_head = nn.Linear(hidden, len(TAGS))
        self.length_embedding = nn.Embedding(LENGTH_BUCKETS, 32)
        # A span is its mean-pooled tokens, its first and last token and the window's first (framing) token.
        self.technique_head = nn.Sequential(
            nn.Linear(4 * hidden + 32, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_techniques),
        )
        # Which techniques' spans cover each token: trained as an extra signal for the encoder (train/losses.py);
        # at inference a second estimate of p(token inside a span), mixed in by a weight tuned on validation, and
        # spans of one technique where a run of tokens reaches a tuned threshold (Decoding.tagger_span_threshold).
        self.token_technique_head = nn.Linear(hidden, num_techniques) if technique_tagger else None

    @classmethod
    def from_encoder_name(cls, name_or_path: str, num_techniques: int, dropout: float = 0.1,
                          technique_tagger: bool = False) -> "PersuasionNetwork":
        return cls(AutoModel.from_pretrained(name_or_path), num_techniques, dropout, technique_tagger)

    @classmethod
    def from_encoder_config(cls, config, num_techniques: int, dropout: float = 0.1,
                            technique_tagger: bool = False) -> "PersuasionNetwork":
        return cls(AutoModel.from_config(config), num_techniques, dropout, technique_tagger)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states in fp32, whatever it computes in (a bf16 encoder feeds fp32 heads)."""
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()

    def tag_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.tag_head(self.dropout(hidden))

    def tag_log_probabilities(self, hidden: torch.Tensor) -> torch.Tensor:
        """log p(O/B/I) per window position."""
        return self.tag_logits(hidden).float().log_softmax(-1)

    def technique_logits(self, hidden: torch.Tensor, span_window: torch.Tensor, span_bounds: torch.Tensor) -> torch.Tensor:
        """Logits for spans given as (window index, first token, last token inclusive) in `hidden`."""
        if span_window.numel() == 0:
            return hidden.new_zeros((0, self.technique_head[-1].out_features))
        span_hidden, mean = _pool_spans(hidden, span_window, span_bounds)
        first, last = span_bounds[:, 0], span_bounds[:, 1]
        rows = torch.arange(len(span_window), device=hidden.device)
        length = (last - first + 1).clamp(min=1).float().log2().long().clamp(max=LENGTH_BUCKETS - 1)
        features = torch.cat(
            [mean, span_hidden[rows, first], span_hidden[rows, last], span_hidden[:, 0], self.length_embedding(length)],
            dim=-1,
        )
        return self.technique_head(self.dropout(features))

    def token_technique_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """One logit per token and technique: whether a span of that technique covers the token."""
        return self.token_technique_head(self.dropout(hidden))


def _pool_spans(hidden: torch.Tensor, span_window: torch.Tensor, span_bounds: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(each span's window states, the mean of the states of its tokens) for inclusive token bounds."""
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    first, last = span_bounds[:, 0], span_bounds[:, 1]
    inside = (positions[None, :] >= first[:, None]) & (positions[None, :] <= last[:, None])
    span_hidden = hidden[span_window]  # (spans, tokens, hidden)
    mean = (span_hidden * inside[..., None]).sum(1) / inside.sum(1, keepdim=True).clamp(min=1)
    return span_hidden, mean
