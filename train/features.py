"""Training examples: articles cut into tightly packed windows with token tags and span targets, and, when
distilling, the teacher's outputs for the same tokens and spans (train/distil.py computes them)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from persuasion.corpus import Article
from persuasion.model.decoding import BEGIN, INSIDE, OUTSIDE
from persuasion.model.windows import TokenizedDocument, WindowFraming, batch_windows, plan_windows, tokenize_document

IGNORE = -100


@dataclass
class TechniqueSpan:
    first_token: int
    last_token: int  # inclusive
    target: list[float]  # distribution over techniques: a span annotated twice splits its mass
    fragment: tuple[int, int] = (0, 0)  # its characters [start, end): what a teacher's span targets are keyed by


@dataclass
class TeacherTargets:
    """A teacher network's outputs for one text or window, per token of the student's tokenizer and per gold
    technique span; rows a teacher had nothing for are zeros with their mask False."""

    tag_log_probabilities: torch.Tensor  # (tokens, 3): log p(O/B/I)
    token_technique_logits: torch.Tensor | None  # (tokens, techniques); None when the teacher has no tagger
    covered: torch.Tensor  # (tokens,) bool: a teacher token covers the token's first character
    span_log_probabilities: torch.Tensor  # (technique spans, techniques), in the order of the spans
    span_known: torch.Tensor  # (technique spans,) bool

    def window(self, start: int, end: int, spans: list[int]) -> "TeacherTargets":
        """The targets of tokens [start, end) and of the technique spans at those indices."""
        return TeacherTargets(self.tag_log_probabilities[start:end],
                              None if self.token_technique_logits is None else self.token_technique_logits[start:end],
                              self.covered[start:end], self.span_log_probabilities[spans], self.span_known[spans])


@dataclass
class EncodedArticle:
    article_id: str
    document: TokenizedDocument
    tags: list[int]  # O/B/I per token
    technique_spans: list[TechniqueSpan]
    token_techniques: list[int]  # per token, a bit mask of the techniques whose spans cover it
    teacher: TeacherTargets | None = None  # when distilling and the teacher labelled this text


@dataclass
class Window:
    token_ids: list[int]
    tags: list[int]
    token_techniques: list[int]
    spans: list[tuple[int, int, list[float]]]  # (first, last) relative to the window's content
    teacher: TeacherTargets | None = None


def propaganda_regions(spans) -> list[tuple[int, int]]:
    """The stretches of text training tags as propaganda, sorted: overlapping and touching spans join.

    Touching spans join here, unlike in the official scorer's merge (eval.metrics.merge_overlapping_spans):
    the shipped recipe was trained on these tags.
    """
    regions: list[list[int]] = []
    for start, end in sorted((s[0], s[1]) for s in spans):
        if regions and start <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], end)
        else:
            regions.append([start, end])
    return [(start, end) for start, end in regions]


def encode_article(article: Article, tokenizer, techniques: list[str], span_tags: bool = True) -> EncodedArticle:
    """Token tags and technique targets; span_tags=False leaves the tags out of the loss (IGNORE)."""
    document = tokenize_document(tokenizer, article.text)
    # The SI gold joined into regions on purpose: a token is either in propaganda or not.
    tags = [OUTSIDE] * len(document.token_ids)
    for start, end in propaganda_regions(article.si_gold()):
        tokens = document.tokens_overlapping(start, end)
        if tokens is None:
            continue
        tags[tokens[0]] = BEGIN
        for token in range(tokens[0] + 1, tokens[1] + 1):
            tags[token] = INSIDE

    # The same fragment may carry two techniques: one example whose target splits between them.
    by_fragment: dict[tuple[int, int], list[str]] = {}
    for span in article.spans:
        if span.technique is not None:
            by_fragment.setdefault((span.start, span.end), []).append(span.technique)
    technique_spans = []
    token_techniques = [0] * len(document.token_ids)
    for (start, end), names in sorted(by_fragment.items()):
        tokens = document.tokens_overlapping(start, end)
        if tokens is None:
            continue
        target = [0.0] * len(techniques)
        for name in names:
            target[techniques.index(name)] += 1.0 / len(names)
            for token in range(tokens[0], tokens[1] + 1):
                token_techniques[token] |= 1 << techniques.index(name)
        technique_spans.append(TechniqueSpan(tokens[0], tokens[1], target, (start, end)))
    if not span_tags:
        tags = [IGNORE] * len(document.token_ids)
    return EncodedArticle(article.article_id, document, tags, technique_spans, token_techniques)


def cut_windows(article: EncodedArticle, content_tokens: int, rng: random.Random) -> list[Window]:
    """Non-overlapping windows on a grid shifted at random, so each epoch sees other borders.

    A technique span goes to the window holding its first token, clipped at the window's end.
    """
    num_tokens = len(article.document.token_ids)
    first_start = rng.randrange(content_tokens) if num_tokens > content_tokens else 0
    windows = []
    for start, end in plan_windows(num_tokens, content_tokens, content_tokens, first_start):
        inside = [index for index, span in enumerate(article.technique_spans) if start <= span.first_token < end]
        spans = [(span.first_token - start, min(span.last_token, end - 1) - start, span.target)
                 for span in (article.technique_spans[index] for index in inside)]
        teacher = article.teacher.window(start, end, inside) if article.teacher is not None else None
        windows.append(Window(article.document.token_ids[start:end], article.tags[start:end],
                              article.token_techniques[start:end], spans, teacher))
    return windows


def collate(windows: list[Window], framing: WindowFraming, num_techniques: int) -> dict[str, torch.Tensor]:
    input_ids, attention_mask = batch_windows([window.token_ids for window in windows], framing)
    offset = framing.offset
    tags = torch.full_like(input_ids, IGNORE)
    token_techniques = torch.zeros_like(input_ids)  # bit masks; framing tokens and padding stay 0
    span_window, span_bounds, span_targets = [], [], []
    for row, window in enumerate(windows):
        tags[row, offset: offset + len(window.tags)] = torch.tensor(window.tags)
        token_techniques[row, offset: offset + len(window.token_techniques)] = torch.tensor(window.token_techniques)
        for first, last, target in window.spans:
            span_window.append(row)
            span_bounds.append([first + offset, last + offset])
            span_targets.append(target)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "tags": tags,
        "token_techniques": token_techniques,
        "span_window": torch.tensor(span_window, dtype=torch.long),
        "span_bounds": torch.tensor(span_bounds, dtype=torch.long).reshape(-1, 2),
        "span_targets": torch.tensor(span_targets, dtype=torch.float).reshape(len(span_targets), num_techniques),
    }
    if any(window.teacher is not None for window in windows):
        batch |= collate_teacher(windows, offset, input_ids.shape[1], num_techniques)
    return batch


def collate_teacher(windows: list[Window], offset: int, width: int, num_techniques: int) -> dict[str, torch.Tensor]:
    """The teacher's targets at the batch's positions (spans in the order collate lists them); a window
    without a teacher, framing tokens and padding are masked out."""
    teachers = [window.teacher for window in windows]
    tagger = any(teacher is not None and teacher.token_technique_logits is not None for teacher in teachers)
    tag_log_probabilities = torch.zeros(len(windows), width, 3)
    token_technique_logits = torch.zeros(len(windows), width, num_techniques) if tagger else None
    taught = torch.zeros(len(windows), width, dtype=torch.bool)
    span_log_probabilities, span_known = [], []
    for row, (window, teacher) in enumerate(zip(windows, teachers)):
        if teacher is None:
            span_log_probabilities.append(torch.zeros(len(window.spans), num_techniques))
            span_known.append(torch.zeros(len(window.spans), dtype=torch.bool))
            continue
        positions = slice(offset, offset + len(window.token_ids))
        tag_log_probabilities[row, positions] = teacher.tag_log_probabilities.float()
        taught[row, positions] = teacher.covered
        if tagger and teacher.token_technique_logits is not None:
            token_technique_logits[row, positions] = teacher.token_technique_logits.float()
        span_log_probabilities.append(teacher.span_log_probabilities.float())
        span_known.append(teacher.span_known)
    batch = {"teacher_tag_log_probabilities": tag_log_probabilities, "teacher_taught": taught,
             "teacher_span_log_probabilities": torch.cat(span_log_probabilities).reshape(-1, num_techniques),
             "teacher_span_known": torch.cat(span_known)}
    if tagger:
        batch["teacher_token_technique_logits"] = token_technique_logits
    return batch
