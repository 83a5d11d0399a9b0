"""A linear-chain CRF over the O/B/I tags: scores for tag transitions on top of the tagger's per-token scores.

The SemEval-2020 SI systems that decoded with a CRF got well-formed spans (no I after O) and
tags that agree with their neighbours. Training maximises the likelihood of the whole gold tag
sequence of a window. Inference reads the CRF's per-token marginals, p(tag | window), from the
forward-backward algorithm rather than the single Viterbi path, so the detector's tuned threshold
still trades precision for recall as with a softmax tagger.

A mask marks the tokens of a window that carry tags ([CLS], [SEP] and padding do not); it need
not be a prefix: untagged positions are stepped over.
"""

from __future__ import annotations

import torch
from torch import nn


class TagTransitions(nn.Module):
    def __init__(self, num_tags: int):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(num_tags))  # score of a window's first tagged token having a tag
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [previous tag, next tag]
        self.end = nn.Parameter(torch.zeros(num_tags))

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log p(tags | window) for each window: (windows, tokens, tags), (windows, tokens), (windows, tokens).

        A window without tagged tokens has likelihood 1 (log 0).
        """
        emissions = emissions.float()
        tags = tags.clamp(min=0)  # untagged positions hold an ignore index; they are masked out below
        positions = torch.arange(emissions.shape[1], device=emissions.device).expand_as(tags)
        # For each position, the latest tagged position up to it (-1: none yet).
        latest = torch.where(mask, positions, torch.full_like(positions, -1)).cummax(dim=1).values
        previous = torch.cat([torch.full_like(latest[:, :1], -1), latest[:, :-1]], dim=1)
        previous_tag = tags.gather(1, previous.clamp(min=0))
        step = torch.where(previous >= 0, self.transitions[previous_tag, tags], self.start[tags])
        step = step + emissions.gather(2, tags[..., None]).squeeze(-1)
        score = (step * mask).sum(dim=1)
        last = latest[:, -1]
        score = score + torch.where(last >= 0, self.end[tags.gather(1, last.clamp(min=0)[:, None]).squeeze(1)],
                                    torch.zeros_like(score))
        return score - self._log_partition(self._forward_scores(emissions, mask), mask)

    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log p(token has tag | window), (windows, tokens, tags); rows of untagged positions are meaningless."""
        emissions = emissions.float()
        forward = self._forward_scores(emissions, mask)
        backward = self._backward_scores(emissions, mask)
        return forward + backward - self._log_partition(forward, mask)[:, None, None]

    def _forward_scores(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Log-sum of the scores of every tag path from the window's start to each (token, tag), its emission included."""
        scores = []
        alpha = self.start.expand(emissions.shape[0], -1)
        started = torch.zeros_like(mask[:, 0])
        for position in range(emissions.shape[1]):
            here = mask[:, position]
            arriving = torch.logsumexp(alpha[:, :, None] + self.transitions[None], dim=1)
            step = torch.where(started[:, None], arriving, self.start[None]) + emissions[:, position]
            alpha = torch.where(here[:, None], step, alpha)
            started = started | here
            scores.append(alpha)
        return torch.stack(scores, dim=1)

    def _backward_scores(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Log-sum of the scores of every tag path from each (token, tag) to the window's end, emissions after it."""
        scores = [None] * emissions.shape[1]
        beta = self.end.expand(emissions.shape[0], -1)
        following = torch.zeros_like(beta)  # emission + beta of the next tagged token, once `seen`
        seen = torch.zeros_like(mask[:, 0])
        for position in reversed(range(emissions.shape[1])):
            here = mask[:, position]
            leaving = torch.logsumexp(self.transitions[None] + following[:, None, :], dim=2)
            beta = torch.where(here[:, None], torch.where(seen[:, None], leaving, self.end[None]), beta)
            scores[position] = beta
            following = torch.where(here[:, None], emissions[:, position] + beta, following)
            seen = seen | here
        return torch.stack(scores, dim=1)

    def _log_partition(self, forward: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Log-sum of the scores of all tag paths, from the forward scores; 0 for a window without tagged tokens."""
        alpha = forward[:, -1]
        started = mask.any(dim=1)
        return torch.where(started, torch.logsumexp(alpha + self.end[None], dim=1), torch.zeros_like(alpha[:, 0]))
