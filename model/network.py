"""The network: one Hugging Face encoder with a span (BIO) head and a technique head.

A checkpoint directory is a normal Hugging Face model directory (config.json of the encoder,
model.safetensors holding encoder and head weights, tokenizer files) plus `persuasion.json`,
which carries the label map, decision thresholds, calibration temperatures and window sizes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel

from persuasion.errors import PersuasionError
from persuasion.model.crf import TagTransitions
from persuasion.taxonomy import TECHNIQUES

TAGS = ("O", "B", "I")
OUTSIDE, BEGIN, INSIDE = range(3)
LENGTH_BUCKETS = 16  # span length in tokens, bucketed by log2


class CheckpointError(PersuasionError):
    """A checkpoint directory is missing a file or does not describe a persuasion model."""


@dataclass
class DetectorSettings:
    """Everything besides weights that inference needs; saved as `persuasion.json`."""

    techniques: list[str] = field(default_factory=lambda: list(TECHNIQUES))
    window_tokens: int = 128  # including [CLS] and [SEP]
    window_stride: int = 96  # content tokens between window starts at inference
    span_threshold: float = 0.5  # p(token inside a span) a span must reach somewhere
    span_extension_margin: float = 0.0  # a span grows over tokens down to span_threshold less this (0: off)
    span_min_score: float = 0.0  # a detected span's mean p(inside) must reach this
    span_gap_tokens: int = 0  # runs this few tokens apart on one line join into one span
    technique_thresholds: dict[str, float] = field(default_factory=dict)  # extra labels in the full pipeline
    span_temperature: float = 1.0
    technique_temperature: float = 1.0
    repetition_rule: bool = False  # mark spans whose normalised text recurs in the article as Repetition
    repetition_boost: float = 1.0  # p(Repetition) multiplier for a span whose words recur in the document
    sentence_head: bool = False  # the network also scores whether each sentence holds a technique
    sentence_gate: float = 0.0  # token score = p(inside) * p(sentence holds a technique) ** gate (0: off)
    span_crf: bool = False  # the span tagger's tags are marginals of a CRF over each window (model/crf.py)
    technique_tagger: bool = False  # the network keeps its per-token technique tagger (trained with a tagging loss)
    technique_tag_mix: float = 0.0  # token score = (1 - mix) * p(inside) + mix * p(token in any technique's span)
    base_model: str = ""
    recipe: dict = field(default_factory=dict)
    ensemble_members: list[str] = field(default_factory=list)  # member checkpoint folders, relative (model/ensemble.py)

    @classmethod
    def from_dict(cls, values: dict) -> "DetectorSettings":
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in values.items() if key in known})


class PersuasionNetwork(nn.Module):
    """Encoder + token tagger (O/B/I, optionally with a CRF) + span-in-context technique classifier
    (+ optional sentence scorer and per-token technique tagger)."""

    def __init__(self, encoder: nn.Module, num_techniques: int, dropout: float = 0.1, sentence_head: bool = False,
                 span_crf: bool = False, technique_tagger: bool = False):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.tag_head = nn.Linear(hidden, len(TAGS))
        self.tag_transitions = TagTransitions(len(TAGS)) if span_crf else None
        self.length_embedding = nn.Embedding(LENGTH_BUCKETS, 32)
        # A span is its mean-pooled tokens, its first and last token and the window's [CLS].
        self.technique_head = nn.Sequential(
            nn.Linear(4 * hidden + 32, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_techniques),
        )
        # Whether a sentence holds any technique, from its mean-pooled tokens: the sentence level of
        # the multi-granularity network (Da San Martino et al., 2019); its score can gate the token scores.
        self.sentence_head = nn.Linear(hidden, 1) if sentence_head else None
        # Which techniques' spans cover each token: trained as an extra signal for the encoder (train/loop.py),
        # and at inference a second estimate of p(token inside a span), mixed in by a weight tuned on validation.
        self.token_technique_head = nn.Linear(hidden, num_techniques) if technique_tagger else None

    @classmethod
    def from_encoder_name(cls, name_or_path: str, num_techniques: int, dropout: float = 0.1,
                          sentence_head: bool = False, span_crf: bool = False,
                          technique_tagger: bool = False) -> "PersuasionNetwork":
        return cls(AutoModel.from_pretrained(name_or_path), num_techniques, dropout, sentence_head, span_crf,
                   technique_tagger)

    @classmethod
    def from_encoder_config(cls, config, num_techniques: int, dropout: float = 0.1,
                            sentence_head: bool = False, span_crf: bool = False,
                            technique_tagger: bool = False) -> "PersuasionNetwork":
        return cls(AutoModel.from_config(config), num_techniques, dropout, sentence_head, span_crf, technique_tagger)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, span_window: torch.Tensor,
                span_bounds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: (tag logits per token, technique logits per listed span)."""
        hidden = self.encode(input_ids, attention_mask)
        return self.tag_logits(hidden), self.technique_logits(hidden, span_window, span_bounds)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def tag_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.tag_head(self.dropout(hidden))

    def tag_log_probabilities(self, hidden: torch.Tensor, attention_mask: torch.Tensor, crf: bool) -> torch.Tensor:
        """log p(O/B/I) per window position: the softmax of the tag logits, or with `crf` the CRF's marginals
        over the window's text tokens (rows of [CLS], [SEP] and padding are then meaningless)."""
        logits = self.tag_logits(hidden).float()
        if not crf:
            return logits.log_softmax(-1)
        return self.tag_transitions.log_marginals(logits, text_token_mask(attention_mask))

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

    def sentence_logits(self, hidden: torch.Tensor, piece_window: torch.Tensor, piece_bounds: torch.Tensor) -> torch.Tensor:
        """One logit per sentence piece (window index, first token, last token inclusive) in `hidden`."""
        if piece_window.numel() == 0:
            return hidden.new_zeros((0,))
        _, mean = _pool_spans(hidden, piece_window, piece_bounds)
        return self.sentence_head(self.dropout(mean)).squeeze(-1)

    def token_technique_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """One logit per token and technique: whether a span of that technique covers the token."""
        return self.token_technique_head(self.dropout(hidden))


def text_token_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """The window positions that hold text: attended, and neither [CLS] (first) nor [SEP] (last attended)."""
    mask = attention_mask.bool().clone()
    mask[:, 0] = False
    last = attention_mask.long().sum(dim=1) - 1
    mask[torch.arange(len(mask), device=mask.device), last.clamp(min=0)] = False
    return mask


def _pool_spans(hidden: torch.Tensor, span_window: torch.Tensor, span_bounds: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(each span's window states, the mean of the states of its tokens) for inclusive token bounds."""
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    first, last = span_bounds[:, 0], span_bounds[:, 1]
    inside = (positions[None, :] >= first[:, None]) & (positions[None, :] <= last[:, None])
    span_hidden = hidden[span_window]  # (spans, tokens, hidden)
    mean = (span_hidden * inside[..., None]).sum(1) / inside.sum(1, keepdim=True).clamp(min=1)
    return span_hidden, mean

def save_checkpoint(network: PersuasionNetwork, tokenizer, settings: DetectorSettings, directory: str | Path,
                    half: bool = True) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    network.encoder.config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    state = {
        name: (tensor.half() if half and tensor.is_floating_point() else tensor).contiguous()
        for name, tensor in network.state_dict().items()
    }
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    save_settings(settings, directory)
    return directory


def save_settings(settings: DetectorSettings, directory: str | Path) -> None:
    """Write `persuasion.json` alone: re-tuning a checkpoint changes its settings, never its weights."""
    (Path(directory) / "persuasion.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")


def read_settings(directory: str | Path) -> DetectorSettings:
    """A checkpoint's `persuasion.json`; a one-line error where there is none."""
    path = Path(directory) / "persuasion.json"
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a persuasion checkpoint (missing persuasion.json)")
    return DetectorSettings.from_dict(json.loads(path.read_text()))


def load_checkpoint(directory: str | Path, device: str = "cpu"):
    """Return (network, tokenizer, settings) from a directory written by `save_checkpoint`."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    settings = read_settings(directory)
    if settings.ensemble_members:
        from persuasion.model.ensemble import load_ensemble

        return load_ensemble(directory, settings, device)
    for required in ("config.json", "model.safetensors"):
        if not (directory / required).is_file():
            raise CheckpointError(f"{directory}: not a persuasion checkpoint (missing {required})")
    config = AutoConfig.from_pretrained(directory)
    network = PersuasionNetwork.from_encoder_config(config, len(settings.techniques),
                                                     sentence_head=settings.sentence_head, span_crf=settings.span_crf,
                                                     technique_tagger=settings.technique_tagger)
    state = {name: tensor.float() if tensor.is_floating_point() else tensor
             for name, tensor in load_file(directory / "model.safetensors").items()}
    network.load_state_dict(state)
    network.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return network, tokenizer, settings
