"""Distillation's teacher: what a trained model says about the training texts, for `persuasion distil`
(train/distil_command.py) and any recipe that names a teacher.

The teacher (a checkpoint folder, any tokenizer) reads every training text once, in overlapping windows
at its own inference stride, and its outputs are cached on disk: per teacher token, log p(O/B/I) and the
per-token technique logits (where it has that tagger); per gold technique span, its technique
log-probabilities. The student's tokens take the outputs of the teacher token that covers their first
character, so a student window cut anywhere slices its targets. Training is then `persuasion train`'s
loop with the loss `(1 - distil_mix) * gold + distil_mix * distillation` (train/losses.py), and the result
is a normal checkpoint folder, tuned on validation like any run.

Only the training split is scored: never the validation articles the run holds out, never dev.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from persuasion.corpus import Article
from persuasion.errors import PersuasionError
from persuasion.train.features import EncodedArticle, TeacherTargets
from persuasion.train.recipe import Recipe

CACHE_FORMAT = "1"  # raise when what the cache holds, or how it is computed, changes
DEFAULT_CACHE_DIR = "teacher"  # inside the run folder
TEACHER_BATCH = 32  # windows per forward pass of the teacher

log = logging.getLogger(__name__)


# What the teacher says, per text


@dataclass
class TextOutputs:
    """The teacher's outputs for one text: per teacher token, and per gold technique fragment."""

    token_offsets: torch.Tensor  # (tokens, 2) int32: each teacher token's characters [start, end)
    tag_log_probabilities: torch.Tensor  # (tokens, 3) float16
    token_technique_logits: torch.Tensor | None  # (tokens, techniques) float16
    span_bounds: torch.Tensor  # (fragments, 2) int32: each gold technique fragment's characters
    span_log_probabilities: torch.Tensor  # (fragments, techniques) float16


def technique_fragments(article: Article) -> list[tuple[int, int]]:
    """The character ranges of the article's gold technique spans, each once, sorted (as encode_article)."""
    return sorted({(span.start, span.end) for span in article.spans if span.technique is not None})


def context_margins(start: int, end: int, num_tokens: int) -> torch.Tensor:
    """For each token of window [start, end), how many tokens of context the window gives it on its shorter
    side; a window border at the text's own start or end cuts no context off."""
    positions = torch.arange(start, end)
    before = positions - start if start > 0 else torch.full_like(positions, num_tokens)
    after = end - 1 - positions if end < num_tokens else torch.full_like(positions, num_tokens)
    return torch.minimum(before, after)


@torch.inference_mode()
def score_texts(network, tokenizer, settings, articles: list[Article], device: str = "cpu") -> list[TextOutputs]:
    """The teacher network's outputs for each text, read in overlapping windows at its inference stride.

    A token covered by several windows takes the outputs of the window where it has the most context on
    its shorter side: the teacher's best-informed reading of it, and a real distribution, which an
    average of log-probabilities is not. Each gold fragment is classified in the window that holds it
    with the most context (clipped at the window's end where it is longer than a window).
    """
    from persuasion.model.scoring import scored_windows
    from persuasion.model.windows import WindowFraming, plan_windows, tokenize_document

    framing = WindowFraming.of(tokenizer)
    content = settings.window_tokens - framing.extra_tokens
    tagger = network.token_technique_head is not None
    num_techniques = len(settings.techniques)
    network = network.to(device).eval()
    documents = [tokenize_document(tokenizer, article.text) for article in articles]
    jobs = []  # (text index, start, end)
    spans_of_job: dict[int, list[tuple[int, int, int]]] = {}  # job -> (fragment index, first, last)
    fragments = [technique_fragments(article) for article in articles]
    for index, document in enumerate(documents):
        num_tokens = len(document.token_ids)
        windows = plan_windows(num_tokens, content, settings.window_stride)
        first_job = len(jobs)
        jobs += [(index, start, end) for start, end in windows]
        for fragment, (char_start, char_end) in enumerate(fragments[index]):
            tokens = document.tokens_overlapping(char_start, char_end)
            if tokens is None:
                continue
            first, last = tokens
            # A span's context is that of its first token before it and of its last token after it.
            holding = [(int(context_margins(start, end, num_tokens)[[first - start, min(last, end - 1) - start]].min()),
                        job) for job, (start, end) in enumerate(windows, first_job) if start <= first < end]
            job = max(holding)[1]
            spans_of_job.setdefault(job, []).append((fragment, first, min(last, jobs[job][2] - 1)))

    best = [torch.full((len(d.token_ids),), -1, dtype=torch.long) for d in documents]
    tags = [torch.zeros(len(d.token_ids), 3) for d in documents]
    token_techniques = [torch.zeros(len(d.token_ids), num_techniques) for d in documents] if tagger else None
    span_log_probabilities = [torch.zeros(len(f), num_techniques) for f in fragments]
    span_found = [torch.zeros(len(f), dtype=torch.bool) for f in fragments]
    offset = framing.offset
    reported = 0
    planned = ((job, start, end, documents[index].token_ids[start:end]) for job, (index, start, end) in enumerate(jobs))
    for batch_start, batch in zip(range(0, len(jobs), TEACHER_BATCH),
                                  scored_windows(network, framing, planned, TEACHER_BATCH, device)):
        for job, window in batch:
            index, start, end = jobs[job]
            margin = context_margins(start, end, len(documents[index].token_ids))
            better = margin > best[index][start:end]
            best[index][start:end] = torch.where(better, margin, best[index][start:end])
            tags[index][start:end][better] = torch.from_numpy(window.tag_log_probabilities)[better]
            states = torch.from_numpy(window.states).to(device)[None]
            if tagger:
                logits = network.token_technique_logits(states[0, offset: offset + end - start]).float().cpu()
                token_techniques[index][start:end][better] = logits[better]
            fragments_here = spans_of_job.get(job, [])
            if fragments_here:
                bounds = [[first - start + offset, last - start + offset] for _, first, last in fragments_here]
                logits = network.technique_logits(states, torch.zeros(len(bounds), dtype=torch.long, device=device),
                                                  torch.tensor(bounds, device=device))
                for (fragment, _, _), row in zip(fragments_here, logits.float().log_softmax(-1).cpu()):
                    span_log_probabilities[index][fragment] = row
                    span_found[index][fragment] = True
        done = batch_start + len(batch)
        if done - reported >= max(1, len(jobs) // 10) or done == len(jobs):
            log.info(f"teacher: {done}/{len(jobs)} windows scored")
            reported = done

    outputs = []
    for index, document in enumerate(documents):
        found = span_found[index]
        outputs.append(TextOutputs(
            torch.tensor(document.offsets, dtype=torch.int32).reshape(-1, 2), tags[index].half(),
            token_techniques[index].half() if tagger else None,
            torch.tensor(fragments[index], dtype=torch.int32).reshape(-1, 2)[found],
            span_log_probabilities[index][found].half()))
    return outputs


# The cache: one safetensors file per teacher and group of texts


def texts_digest(articles: list[Article]) -> str:
    """sha256 of the texts, in order, with their ids and gold technique fragments."""
    digest = hashlib.sha256()
    for article in articles:
        text_hash = hashlib.sha256(article.text.encode("utf-8")).hexdigest()
        digest.update(json.dumps([article.article_id, text_hash, technique_fragments(article)]).encode() + b"\n")
    return digest.hexdigest()


def cache_key(teacher_digest: str, settings, articles: list[Article]) -> str:
    """What a cache must have been computed from to be used: the teacher's network, its windows, the texts."""
    return hashlib.sha256(json.dumps({
        "format": CACHE_FORMAT, "teacher": teacher_digest, "window_tokens": settings.window_tokens,
        "stride": settings.window_stride, "techniques": list(settings.techniques),
        "texts": texts_digest(articles)}, sort_keys=True).encode()).hexdigest()


def cache_path(recipe: Recipe, teacher_digest: str, articles: list[Article]) -> Path:
    """One file per teacher and group of texts: runs with and without the memes share the articles' file."""
    folder = Path(recipe.teacher_cache) if recipe.teacher_cache else Path(recipe.output_dir) / DEFAULT_CACHE_DIR
    return folder / f"{teacher_digest[:16]}-{texts_digest(articles)[:8]}.safetensors"


def save_outputs(path: Path, outputs: list[TextOutputs], key: str, about: dict) -> None:
    """All texts' outputs concatenated, with each text's counts to split them again; written beside and
    renamed into place, so runs sharing a cache never read half a file."""
    from safetensors.torch import save_file

    tensors = {
        "token_offsets": torch.cat([o.token_offsets for o in outputs]),
        "tag_log_probabilities": torch.cat([o.tag_log_probabilities for o in outputs]),
        "tokens_per_text": torch.tensor([len(o.token_offsets) for o in outputs], dtype=torch.int64),
        "span_bounds": torch.cat([o.span_bounds for o in outputs]),
        "span_log_probabilities": torch.cat([o.span_log_probabilities for o in outputs]),
        "spans_per_text": torch.tensor([len(o.span_bounds) for o in outputs], dtype=torch.int64),
    }
    if outputs and outputs[0].token_technique_logits is not None:
        tensors["token_technique_logits"] = torch.cat([o.token_technique_logits for o in outputs])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, partial,
              metadata={"key": key, "about": json.dumps(about)})
    partial.replace(path)


def cached_about(path: Path, key: str) -> dict | None:
    """What the cache at `path` says about itself, if it was computed for `key`; else None."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as cache:
            metadata = cache.metadata() or {}
    except Exception:  # a damaged file is only a miss: it is computed again
        return None
    return json.loads(metadata["about"]) if metadata.get("key") == key else None


def load_outputs(path: Path) -> list[TextOutputs]:
    from safetensors.torch import load_file

    tensors = load_file(path)
    tokens = tensors["tokens_per_text"].tolist()
    spans = tensors["spans_per_text"].tolist()
    techniques = tensors.get("token_technique_logits")
    return [TextOutputs(*parts) for parts in zip(
        tensors["token_offsets"].split(tokens), tensors["tag_log_probabilities"].split(tokens),
        techniques.split(tokens) if techniques is not None else [None] * len(tokens),
        tensors["span_bounds"].split(spans), tensors["span_log_probabilities"].split(spans))]


def teacher_outputs(recipe: Recipe, articles: list[Article], techniques: list[str]) -> tuple[list[TextOutputs], dict]:
    """The teacher's outputs for the texts, from the cache where it matches, else scored and cached:
    (outputs, a report of which teacher, which cache and how long scoring took)."""
    from persuasion.model.checkpoint import load_network, network_digest, read_settings, resolve_model

    teacher = resolve_model(recipe.teacher)
    settings, _ = read_settings(teacher)
    if list(settings.techniques) != list(techniques):
        raise PersuasionError(f"teacher {teacher}: classifies other techniques than the student; give a "
                              "checkpoint trained on the same technique list")
    digest = network_digest(teacher)
    key, path = cache_key(digest, settings, articles), cache_path(recipe, digest, articles)
    about = cached_about(path, key)
    if about is not None:
        log.info(f"teacher outputs for {len(articles)} texts loaded from {path} "
                 f"(scoring them took {about['scoring_minutes']} minutes, apart from training)")
        return load_outputs(path), about | {"cache": str(path), "loaded_from_cache": True}
    started = time.time()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    network, tokenizer, _ = load_network(teacher)
    log.info(f"teacher {teacher} scores {len(articles)} texts on {device}, once (cached in {path})")
    outputs = score_texts(network, tokenizer, settings, articles, device)
    about = {"checkpoint": recipe.teacher, "digest": digest, "window_tokens": settings.window_tokens,
             "stride": settings.window_stride, "texts": len(articles),
             "teacher_tokens": sum(len(o.token_offsets) for o in outputs),
             "scoring_minutes": round((time.time() - started) / 60, 2), "scored_on": device}
    save_outputs(path, outputs, key, about)
    log.info(f"teacher scoring took {about['scoring_minutes']} minutes (not counted in training time); "
             f"{path.stat().st_size / 1e6:.1f} MB cached in {path}")
    return outputs, about | {"cache": str(path), "loaded_from_cache": False}


# From teacher tokens to student tokens


def covering_tokens(teacher_offsets: torch.Tensor, student_offsets: list[tuple[int, int]]) -> torch.Tensor:
    """For each student token, the teacher token whose characters hold the student token's first character,
    or -1 where none does (the teacher's tokenizer dropped that character)."""
    firsts = torch.tensor([start for start, _ in student_offsets], dtype=torch.int64)
    if len(teacher_offsets) == 0:
        return torch.full_like(firsts, -1)
    starts, ends = teacher_offsets[:, 0].to(torch.int64).contiguous(), teacher_offsets[:, 1].to(torch.int64)
    index = torch.searchsorted(starts, firsts, right=True) - 1
    covered = (index >= 0) & (firsts < ends[index.clamp(min=0)])
    return torch.where(covered, index, torch.full_like(index, -1))


def student_targets(outputs: TextOutputs, encoded: EncodedArticle, num_techniques: int) -> TeacherTargets:
    """The teacher's outputs for one text, on the student's tokens and gold technique spans."""
    index = covering_tokens(outputs.token_offsets, encoded.document.offsets)
    covered = index >= 0
    source = index.clamp(min=0)

    def per_token(values: torch.Tensor) -> torch.Tensor:
        taken = values[source] if len(values) else values.new_zeros((len(index), values.shape[-1]))
        return taken * covered[:, None]

    by_fragment = {tuple(bounds): row
                   for bounds, row in zip(outputs.span_bounds.tolist(), outputs.span_log_probabilities)}
    known = torch.tensor([span.fragment in by_fragment for span in encoded.technique_spans], dtype=torch.bool)
    span_rows = [by_fragment.get(span.fragment, torch.zeros(num_techniques, dtype=torch.float16))
                 for span in encoded.technique_spans]
    return TeacherTargets(
        per_token(outputs.tag_log_probabilities),
        per_token(outputs.token_technique_logits) if outputs.token_technique_logits is not None else None,
        covered,
        torch.stack(span_rows) if span_rows else torch.zeros(0, num_techniques, dtype=torch.float16),
        known)


def attach_teacher_targets(recipe: Recipe, groups: list[list[Article]], encoded: list[EncodedArticle],
                           techniques: list[str]) -> dict:
    """Give each encoded training text (the groups' texts, in order) the teacher's targets; returns the
    teacher report that validation.json records.

    Each group of texts (the training articles; the memes) is cached in a file of its own, so a run that adds
    a group to another's texts scores only that group."""
    outputs, reports = [], []
    for texts in groups:
        group_outputs, report = teacher_outputs(recipe, texts, techniques)
        outputs += group_outputs
        reports.append(report)
    for text_outputs, encoded_article in zip(outputs, encoded, strict=True):
        encoded_article.teacher = student_targets(text_outputs, encoded_article, len(techniques))
    covered = sum(int(e.teacher.covered.sum()) for e in encoded)
    tokens = sum(len(e.teacher.covered) for e in encoded)
    log.info(f"teacher targets on {covered} of {tokens} student tokens; "
             f"{sum(int(e.teacher.span_known.sum()) for e in encoded)} gold spans with a teacher distribution")
    return {**{key: reports[0][key] for key in ("checkpoint", "digest", "window_tokens", "stride")},
            "scored_on": ", ".join(sorted({report["scored_on"] for report in reports})),
            "texts": sum(report["texts"] for report in reports),
            "teacher_tokens": sum(report["teacher_tokens"] for report in reports),
            "scoring_minutes": round(sum(report["scoring_minutes"] for report in reports), 2),
            "caches": [report["cache"] for report in reports],
            "loaded_from_cache": all(report["loaded_from_cache"] for report in reports)}
