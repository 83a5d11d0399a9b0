"""Several trained checkpoints as one detector: their span and technique probabilities averaged.

An ensemble folder holds a copy of each member checkpoint under `members/` and its own
`persuasion.json`, which lists the members and carries the decoding choices (stride, thresholds,
gap, temperatures) tuned on the averaged scores. `Detector.load(folder)` loads it like any
checkpoint: `EnsembleNetwork` answers the calls the detector makes of a `PersuasionNetwork`.

It costs one forward pass per member. What averaging gives on PTC is measured in MODEL_CARD.md,
"Ensembles"; the shipped model is one network.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch
from torch import nn

from persuasion.model.network import CheckpointError, DetectorSettings, load_checkpoint, read_settings, save_settings

MEMBERS_DIR = "members"


class EnsembleNetwork(nn.Module):
    """The members side by side: hidden states are concatenated, probabilities averaged.

    Each member's probabilities are first calibrated with its own temperatures (fitted when it was
    tuned alone); the ensemble's temperatures then apply to the averages' logarithms.
    """

    def __init__(self, members: list[nn.Module], member_settings: list[DetectorSettings]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.widths = [member.encoder.config.hidden_size for member in members]
        self.member_settings = member_settings

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([member.encode(input_ids, attention_mask) for member in self.members], dim=-1)

    def tag_log_probabilities(self, hidden: torch.Tensor, attention_mask: torch.Tensor, crf: bool = False) -> torch.Tensor:
        """log of the members' mean p(O/B/I); each member decodes with or without its CRF as it was trained
        (`crf` is the ensemble's setting and is ignored)."""
        probabilities = [
            (member.tag_log_probabilities(member_hidden, attention_mask, crf=settings.span_crf)
             / settings.span_temperature).softmax(-1)
            for member, member_hidden, settings in self._members_with(hidden)]
        return torch.stack(probabilities).mean(0).clamp(min=1e-12).log()

    def technique_logits(self, hidden: torch.Tensor, span_window: torch.Tensor, span_bounds: torch.Tensor) -> torch.Tensor:
        """log of the members' mean p(technique): a softmax of these gives the mean back."""
        probabilities = [
            (member.technique_logits(member_hidden, span_window, span_bounds).float()
             / settings.technique_temperature).softmax(-1)
            for member, member_hidden, settings in self._members_with(hidden)]
        return torch.stack(probabilities).mean(0).clamp(min=1e-12).log()

    def sentence_logits(self, hidden: torch.Tensor, piece_window: torch.Tensor, piece_bounds: torch.Tensor) -> torch.Tensor:
        """logit of the mean p(sentence holds a technique) over the members that score sentences."""
        probabilities = [member.sentence_logits(member_hidden, piece_window, piece_bounds).float().sigmoid()
                         for member, member_hidden, _ in self._members_with(hidden) if member.sentence_head is not None]
        return torch.logit(torch.stack(probabilities).mean(0), eps=1e-6)

    def _members_with(self, hidden: torch.Tensor):
        """(member, its slice of the concatenated hidden states, its settings) for each member."""
        return zip(self.members, torch.split(hidden, self.widths, dim=-1), self.member_settings)


def is_ensemble(directory: str | Path) -> bool:
    return (Path(directory) / "persuasion.json").is_file() and bool(read_settings(directory).ensemble_members)


def load_ensemble(directory: Path, settings: DetectorSettings, device: str):
    """(network, tokenizer, settings) of an ensemble folder; the first member's tokenizer serves all."""
    loaded = [load_checkpoint(directory / member, device) for member in settings.ensemble_members]
    check_compatible([(directory / member, tokenizer, member_settings)
                      for member, (_, tokenizer, member_settings) in zip(settings.ensemble_members, loaded)])
    if loaded[0][2].window_tokens != settings.window_tokens:
        raise CheckpointError(f"{directory}: windows of {settings.window_tokens} tokens, its members' "
                              f"{loaded[0][2].window_tokens}")
    network = EnsembleNetwork([network for network, _, _ in loaded], [member for _, _, member in loaded])
    return network.to(device).eval(), loaded[0][1], settings


def check_compatible(members: list[tuple[Path, object, DetectorSettings]]) -> None:
    """Members must read text the same way and answer with the same labels: one tokenizer, one window
    size, one technique list. Nested ensembles are refused."""
    first_path, first_tokenizer, first = members[0]
    for path, tokenizer, settings in members:
        if settings.ensemble_members:
            raise CheckpointError(f"{path}: is an ensemble itself; list its members instead")
        if tokenizer.get_vocab() != first_tokenizer.get_vocab():
            raise CheckpointError(f"{path}: tokenises differently from {first_path}; "
                                  "an ensemble averages token scores, so its members need one tokenizer")
        if settings.window_tokens != first.window_tokens:
            raise CheckpointError(f"{path}: windows of {settings.window_tokens} tokens, {first_path}: "
                                  f"{first.window_tokens}; an ensemble reads one window plan")
        if settings.techniques != first.techniques:
            raise CheckpointError(f"{path}: its technique labels differ from {first_path}'s")


def build_ensemble(member_dirs: list[Path], output: Path) -> Path:
    """Copy the member checkpoints into `output`/members/ and write untuned ensemble settings.

    The decoding choices start from the first member's; `persuasion ensemble` then tunes them.
    """
    from transformers import AutoTokenizer

    if len(member_dirs) < 2:
        raise CheckpointError("an ensemble needs two or more member checkpoints")
    if len({directory.resolve() for directory in member_dirs}) < len(member_dirs):
        raise CheckpointError("a checkpoint is listed twice; an ensemble averages different checkpoints")
    members = []
    for directory in member_dirs:
        settings = read_settings(directory)
        tokenizer = None if settings.ensemble_members else AutoTokenizer.from_pretrained(directory)
        members.append((directory, tokenizer, settings))
    check_compatible(members)
    if output.exists():
        raise CheckpointError(f"{output}: exists already; give a new folder")
    names = [f"{MEMBERS_DIR}/{index}" for index in range(len(member_dirs))]
    for name, directory in zip(names, member_dirs):
        shutil.copytree(directory, output / name)
    first = members[0][2]
    settings = dataclasses.replace(
        # Members' technique taggers are not averaged: the ensemble decodes its averaged span tags alone.
        first, ensemble_members=names, span_temperature=1.0, technique_temperature=1.0, span_crf=False,
        technique_tagger=False, technique_tag_mix=0.0,
        sentence_head=any(member.sentence_head for _, _, member in members),
        sentence_gate=first.sentence_gate if first.sentence_head else 0.0,
        recipe={"inference_stride": first.recipe.get("inference_stride", first.window_stride),
                "members": [member.recipe for _, _, member in members]})
    save_settings(settings, output)
    return output
