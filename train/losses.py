"""What training minimises: the gold loss over tags, technique spans and per-token techniques, and, when
distilling (`persuasion distil`, train/distil.py), the distance from a teacher's outputs."""

from __future__ import annotations

from typing import NamedTuple

import torch

from persuasion.train.features import IGNORE


class NetworkOutputs(NamedTuple):
    tag_loss: torch.Tensor  # the span tagging loss against the gold tags
    tag_logits: torch.Tensor  # (windows, tokens, 3)
    technique_logits: torch.Tensor  # (spans, techniques), one row per gold technique span of the batch
    token_technique_logits: torch.Tensor | None  # (windows, tokens, techniques), where the network has a tagger


class TrainingNetwork(torch.nn.Module):
    """The network plus its span-tagging loss.

    Where the network has a per-token technique tagger, its logits come out for a per-token
    technique loss: telling the encoder which technique covers each token (a single loaded word
    and a whole doubtful sentence are both just "I" to the span tagger) is the multi-granularity
    signal of the SemEval-2020 SI winner. B/I tokens weigh `span_weight` times an O token.
    """

    def __init__(self, network, span_weight: float = 1.0):
        super().__init__()
        self.network = network
        self.token_loss = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, span_weight, span_weight]),
                                                    ignore_index=IGNORE)

    def forward(self, input_ids, attention_mask, tags, span_window, span_bounds) -> NetworkOutputs:
        hidden = self.network.encode(input_ids, attention_mask)
        token_technique_logits = (self.network.token_technique_logits(hidden)
                                  if self.network.token_technique_head is not None else None)
        tag_logits = self.network.tag_logits(hidden).float()
        return NetworkOutputs(self.tag_loss(tag_logits, tags), tag_logits,
                              self.network.technique_logits(hidden, span_window, span_bounds), token_technique_logits)

    def tag_loss(self, tag_logits, tags):
        if not (tags != IGNORE).any():  # a batch of texts without span tags (memes): technique loss only
            return tag_logits.sum() * 0.0
        return self.token_loss(tag_logits.reshape(-1, tag_logits.shape[-1]), tags.reshape(-1))


def training_loss(network: TrainingNetwork, batch: dict, class_weights, technique_loss_weight: float,
                  technique_tagging_weight: float = 0.0, distil_mix: float = 0.0, distil_temperature: float = 1.0):
    """The gold loss (see gold_loss); when distilling, mixed with the distillation loss as
    (1 - distil_mix) * gold + distil_mix * distillation."""
    outputs = network(batch["input_ids"], batch["attention_mask"], batch["tags"], batch["span_window"],
                      batch["span_bounds"])
    loss = gold_loss(outputs, batch, class_weights, technique_loss_weight, technique_tagging_weight)
    if distil_mix == 0:  # plain training: the gold loss, bit for bit
        return loss
    return (1 - distil_mix) * loss + distil_mix * distillation_loss(
        outputs, batch, distil_temperature, technique_loss_weight, technique_tagging_weight)


def gold_loss(outputs: NetworkOutputs, batch: dict, class_weights, technique_loss_weight: float,
              technique_tagging_weight: float = 0.0):
    """Tagging loss over tokens plus class-weighted soft-target loss over the gold spans, plus, with a
    technique tagger, a per-token, per-technique binary loss."""
    loss, technique_logits, token_technique_logits = (outputs.tag_loss, outputs.technique_logits,
                                                      outputs.token_technique_logits)
    tagged = batch["tags"] != IGNORE
    if len(technique_logits):
        weighted_targets = batch["span_targets"] * class_weights
        technique_loss = -(weighted_targets * technique_logits.float().log_softmax(-1)).sum() / weighted_targets.sum()
        loss = loss + technique_loss_weight * technique_loss
    if token_technique_logits is not None and tagged.any():
        bits = torch.arange(token_technique_logits.shape[-1], device=token_technique_logits.device)
        targets = ((batch["token_techniques"][..., None] >> bits) & 1).float()
        per_token = torch.nn.functional.binary_cross_entropy_with_logits(
            token_technique_logits.float(), targets, reduction="none").sum(-1)
        loss = loss + technique_tagging_weight * per_token[tagged].mean()
    return loss


def distillation_loss(outputs: NetworkOutputs, batch: dict, temperature: float, technique_loss_weight: float,
                      technique_tagging_weight: float = 0.0):
    """How far the student's temperature-softened outputs are from the teacher's, times T² so the gradients
    keep their size across temperatures (Hinton et al., 2015): KL on the O/B/I tags of every taught token,
    binary cross-entropy against sigmoid(teacher logit / T) per token and technique (as a KL), KL on each gold
    span's technique distribution. The parts weigh as in the gold loss; a batch without teacher targets adds 0."""
    loss = outputs.tag_logits.sum() * 0.0
    if "teacher_taught" not in batch:
        return loss
    kl = torch.nn.functional.kl_div
    taught = batch["teacher_taught"]
    if taught.any():
        student = (outputs.tag_logits.float()[taught] / temperature).log_softmax(-1)
        teacher = (batch["teacher_tag_log_probabilities"][taught] / temperature).log_softmax(-1)
        loss = loss + kl(student, teacher, reduction="batchmean", log_target=True)
        if outputs.token_technique_logits is not None and "teacher_token_technique_logits" in batch:
            teacher = batch["teacher_token_technique_logits"][taught] / temperature
            binary = torch.nn.functional.binary_cross_entropy_with_logits
            # Less the teacher's own entropy, which no student can lower: 0 where the two agree.
            per_token = (binary(outputs.token_technique_logits.float()[taught] / temperature, teacher.sigmoid(),
                                reduction="none") - binary(teacher, teacher.sigmoid(), reduction="none")).sum(-1)
            loss = loss + technique_tagging_weight * per_token.mean()
    known = batch["teacher_span_known"]
    if known.any():
        student = (outputs.technique_logits.float()[known] / temperature).log_softmax(-1)
        teacher = (batch["teacher_span_log_probabilities"][known] / temperature).log_softmax(-1)
        loss = loss + technique_loss_weight * kl(student, teacher, reduction="batchmean", log_target=True)
    return temperature ** 2 * loss
