"""Decoding and the inference stride, fitted on the validation split only.

`persuasion train` ends by tuning its checkpoint. `persuasion tune CHECKPOINT --data PTC_DIR` tunes a
trained checkpoint again, on the validation articles its run held out, after decoding gained a
choice; it rewrites the checkpoint's persuasion.json and validation report, never its weights.

Every search scores the validation articles once per stride (`score_articles`: their windows, and the
technique logits of their gold spans) and tries `Decoding` values on those scores (`dataclasses.replace`);
the span search needs no technique logits, so the network classifies only the spans of the decoding it
chooses (`Detector.classify_candidates`). Nothing changes a live detector.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from persuasion.corpus import Article, span_gold, technique_gold
from persuasion.eval.metrics import flc_scores, si_scores, tc_scores
from persuasion.model.checkpoint import (SELECTION, read_validation_report, selection_score, split_articles,
                                         write_settings, write_validation_report)
from persuasion.model.detector import Detector
from persuasion.train.logs import ProgressLog
from persuasion.train.calibration import fit_calibration
from persuasion.model.decoding import Decoding, DocumentScores, WordCounts, classify_occurrences, span_candidates
from persuasion.model.decoding import head_probabilities, repetition_weight, tagger_probabilities, technique_spans

SPAN_THRESHOLDS = np.round(np.arange(0.20, 0.81, 0.025), 3)
TEMPERATURES = np.round(np.arange(0.5, 3.01, 0.05), 3)
SPAN_GAPS = (0, 1, 2, 3, 4, 6, 8, 10, 12)  # tokens
# Repetition is weighed by how often a fragment occurs in its article: the training articles' odds ratios by
# occurrence count (`repetition_odds_ratios`) raised to a strength tuned on validation, as the network has already
# seen some of that evidence itself (0: only a fragment that occurs once is ruled out).
REPETITION_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
REPETITION_COUNTS = 5  # occurrence counts told apart: 1, 2, 3, 4, and 5 or more times
SPAN_EXTENSION_MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2)  # how far below the span threshold a span may grow
TECHNIQUE_TAG_MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)  # weight of the technique tagger's p(inside) in the token score
# (join_across_sentences, trim_function_words): how spans are cut, as Decoding has them
SPAN_SHAPES = ((True, False), (True, True), (False, False), (False, True))
FULL_TASK_TRIALS = 40  # span decodings with the best SI F1 that are also scored on FLC F1
CONTEXT_MIXES = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0)  # the context classifier's share of p(technique)
# The technique tagger's share of p(technique), mixed in after the context classifier's.
TAGGER_TECHNIQUE_MIXES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75)
# Tuning runs the network in fp32 whatever the hardware's `auto` is: a checkpoint tunes to the same choices on
# every machine, and bf16 gives the same spans within its rounding (model/precision.py).
TUNING_PRECISION = "fp32"
SECOND_TECHNIQUE_THRESHOLDS = (0.0, 0.5, 0.4, 0.3, 0.25, 0.2)  # p(technique) giving a span a second one (0: none)
TAGGER_SPAN_THRESHOLDS = (None, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25)  # tagger p(technique) making a span (None: none)

log = logging.getLogger(__name__)


def hardware(device: str) -> str:
    """Where a checkpoint was tuned (and trained), for its validation report: scores differ slightly between
    GPU and CPU arithmetic, so the report says which one produced them."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    if device == "cpu":
        return f"CPU, {torch.get_num_threads()} threads"
    return device


def validation_scores(detector, articles: list[Article]) -> dict:
    """SI F1 at the best threshold and margin, TC micro-F1 on gold spans and FLC F1 of that decoding: what
    training selects on.

    The technique tagger's mix, the span gap and the span shape are fitted once, by the tuning that ends
    training: searching them at every epoch would multiply the decoding done there.
    """
    scores = score_articles(detector, articles)
    decoding, si = best_span_threshold(scores, articles, detector.decoding, margins=SPAN_EXTENSION_MARGINS)
    tc = tc_scores(classify_gold_spans(scores, articles, decoding), technique_gold(articles))
    result = {"si_f1": si["f1"], "si_threshold": decoding.span_threshold,
              "span_extension_margin": decoding.span_extension_margin,
              "tc_micro_f1": tc["micro_f1"], "tc_macro_f1": tc["macro_f1"],
              "flc_f1": flc_f1(detector, scores, articles, decoding)}
    return result | {"selection": selection_score(result)}


def score_articles(detector, articles: list[Article]) -> list[DocumentScores]:
    """The network's stages over the articles: their windows, and the technique logits of their gold spans
    (what TC on gold spans and the technique temperature read)."""
    return [detector.classify_candidates(scores, spans=[(span.start, span.end) for span in article.spans])
            for article, scores in zip(articles, detector.score_windows([article.text for article in articles]))]


def decoded_spans(detector, scores: list[DocumentScores], articles: list[Article], decoding: Decoding
                  ) -> dict[str, list[tuple[int, int, str]]]:
    """A decoding's spans of each article, each with its technique, as `detect` returns them (the network
    classifies the spans it has not seen yet)."""
    predicted = {}
    for article, document in zip(articles, scores):
        detector.classify_candidates(document, [decoding])
        predicted[article.article_id] = [(s.start, s.end, s.technique) for s in technique_spans(document, decoding)]
    return predicted


def flc_f1(detector, scores: list[DocumentScores], articles: list[Article], decoding: Decoding) -> float:
    """Validation FLC F1 of a decoding: its spans, each with its technique."""
    return flc_scores(decoded_spans(detector, scores, articles, decoding), technique_gold(articles))["f1"]


def span_trials(scores: list[DocumentScores], articles: list[Article], decoding: Decoding,
                gaps: tuple[int, ...] | None = None, margins: tuple[float, ...] | None = None
                ) -> list[tuple[dict, Decoding]]:
    """(SI scores, decoding) for every span threshold and, where given, span gap and extension margin (each
    kept as `decoding` has it where not given), best validation SI F1 first."""
    gold = span_gold(articles)
    trials = []
    for gap in gaps if gaps is not None else (decoding.span_gap_tokens,):
        for extension in SPAN_THRESHOLDS:
            # Runs down to the extension threshold, decoded once; each margin keeps those whose peak reaches it.
            lowest = replace(decoding, span_gap_tokens=int(gap), span_threshold=float(extension),
                             span_extension_margin=0.0)
            candidates = {a.article_id: span_candidates(document, lowest) for a, document in zip(articles, scores)}
            for margin in margins if margins is not None else (decoding.span_extension_margin,):
                threshold = round(float(extension) + margin, 3)
                predicted = {article_id: [(s, e) for s, e, _, peak in spans if peak >= threshold]
                             for article_id, spans in candidates.items()}
                trials.append((si_scores(predicted, gold),
                               replace(lowest, span_threshold=threshold, span_extension_margin=float(margin))))
    return sorted(trials, key=lambda trial: -trial[0]["f1"])  # stable: ties keep the search order


def best_span_threshold(scores: list[DocumentScores], articles: list[Article], decoding: Decoding,
                        gaps: tuple[int, ...] | None = None, margins: tuple[float, ...] | None = None
                        ) -> tuple[Decoding, dict]:
    """The decoding with the best validation SI F1 of `span_trials`, and its SI scores."""
    si, best = span_trials(scores, articles, decoding, gaps, margins)[0]
    return best, si


def best_span_decoding(detector, scores: list[DocumentScores], articles: list[Article], decoding: Decoding
                       ) -> tuple[Decoding, dict, float, dict[float, float]]:
    """The full search of span decoding on validation: threshold, gap, extension margin, span shape and, where
    the network kept its technique tagger, the tagger's mix. The FULL_TASK_TRIALS decodings with the best SI F1
    are then ranked by SI F1 + FLC F1 (TC on gold spans does not depend on them): a decoding that wins SI with
    long spans under one label loses there.

    Returns (the best decoding, its SI scores, its FLC F1, the best validation SI F1 at each mix), the last to
    show what the mix is worth.
    """
    trials, by_mix = [], {}
    for mix in TECHNIQUE_TAG_MIXES if detector.settings.technique_tagger else (0.0,):
        for join_across_sentences, trim_function_words in SPAN_SHAPES:
            shaped = replace(decoding, technique_tag_mix=mix, join_across_sentences=join_across_sentences,
                             trim_function_words=trim_function_words)
            trials += span_trials(scores, articles, shaped, SPAN_GAPS, SPAN_EXTENSION_MARGINS)
        by_mix[mix] = max(si["f1"] for si, trial in trials if trial.technique_tag_mix == mix)
    best = None
    for si, trial in sorted(trials, key=lambda trial: -trial[0]["f1"])[:FULL_TASK_TRIALS]:
        flc = flc_f1(detector, scores, articles, trial)
        if best is None or si["f1"] + flc > best[1]["f1"] + best[2]:  # ties keep the better SI
            best = (trial, si, flc)
    return *best, by_mix


def classify_gold_spans(scores: list[DocumentScores], articles: list[Article], decoding: Decoding
                        ) -> dict[str, list[tuple[int, int, str]]]:
    """TC predictions for every gold span occurrence, as the benchmark makes them."""
    predicted = {}
    for article, document in zip(articles, scores):
        occurrences = [(span.start, span.end) for span in article.spans]
        answers = classify_occurrences(document, occurrences, decoding)
        predicted[article.article_id] = [(s, e, technique) for (s, e), (technique, _) in zip(occurrences, answers)]
    return predicted


def fit_temperature(log_probabilities: np.ndarray, targets: np.ndarray, log_weights: np.ndarray | None = None
                    ) -> float:
    """Temperature minimising the negative log-likelihood of `targets` (class indices), of the tempered
    probabilities times exp(log_weights) where given."""
    best_temperature, best_loss = 1.0, float("inf")
    for temperature in TEMPERATURES:
        scaled = log_probabilities / temperature
        if log_weights is not None:
            scaled = scaled + log_weights
        scaled = scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)
        loss = -scaled[np.arange(len(targets)), targets].mean()
        if loss < best_loss:
            best_temperature, best_loss = float(temperature), loss
    return best_temperature


def choose_window_stride(detector, articles: list[Article], decoding: Decoding) -> tuple[int, list[DocumentScores]]:
    """Keep the recipe's inference stride or a denser one (~1.5x the compute), by the validation selection score.

    Returns the chosen stride and the validation scores at it.
    """
    stride = detector.settings.window_stride
    selection, scores_by_stride = {}, {}
    for trial in sorted({stride, max(1, stride * 2 // 3)}, reverse=True):
        scores = scores_by_stride[trial] = score_articles(detector.with_stride(trial), articles)
        _, si, flc, _ = best_span_decoding(detector, scores, articles, decoding)
        tc = tc_scores(classify_gold_spans(scores, articles, decoding), technique_gold(articles))
        selection[trial] = selection_score({"si_f1": si["f1"], "tc_micro_f1": tc["micro_f1"], "flc_f1": flc})
    # Ties go to the sparser (faster) stride.
    chosen = max(selection, key=lambda trial: (round(selection[trial], 6), trial))
    log.info(f"inference stride {chosen}: validation {SELECTION} by stride {selection}")
    return chosen, scores_by_stride[chosen]


def fit_technique_temperature(scores: list[DocumentScores], articles: list[Article], decoding: Decoding) -> float:
    """The technique head's temperature, on the gold fragments' techniques, as `classify` weighs the head's
    probabilities: p(Repetition) times the decoding's repetition weight for the times the fragment's words occur,
    0 where they occur once (the fragments annotated Repetition all the same are left out: no temperature helps
    them)."""
    log_probabilities, log_weights, targets = [], [], []
    for article, document in zip(articles, scores):
        fragments = [(span.start, span.end) for span in article.spans]
        if not fragments:
            continue
        rows, classified = head_probabilities(document, fragments, temperature=1.0)
        weights = np.ones_like(rows)
        if "Repetition" in document.techniques:
            for row in classified:
                weights[row, document.techniques.index("Repetition")] = repetition_weight(
                    document.word_counts, document.text[slice(*fragments[row])], decoding.repetition_weights)
        log_probabilities.append(np.log(np.clip(rows, 1e-12, 1.0)))
        with np.errstate(divide="ignore"):
            log_weights.append(np.log(weights))
        targets.extend(document.techniques.index(span.technique) for span in article.spans)
    log_weights, targets = np.concatenate(log_weights), np.array(targets)
    possible = np.isfinite(log_weights[np.arange(len(targets)), targets])
    return fit_temperature(np.concatenate(log_probabilities)[possible], targets[possible], log_weights[possible])


def repetition_odds_ratios(articles: list[Article]) -> list[float]:
    """For a gold fragment whose words occur k times in its article (k = 1 .. REPETITION_COUNTS, the last
    k or more): the odds that it is Repetition over the odds for any gold fragment, each count's rate smoothed
    by one fragment at the overall rate."""
    fragments, repetitions = np.zeros(REPETITION_COUNTS), np.zeros(REPETITION_COUNTS)
    for article in articles:
        words = WordCounts(article.text)
        for span in article.spans:
            times = min(words.repeats(article.text[span.start: span.end]), REPETITION_COUNTS)
            fragments[times - 1] += 1
            repetitions[times - 1] += span.technique == "Repetition"
    overall = repetitions.sum() / max(fragments.sum(), 1)
    if not 0 < overall < 1:  # no Repetition (or nothing else) to learn from: no weighing
        return [1.0] * REPETITION_COUNTS
    rates = (repetitions + overall) / (fragments + 1)
    return (rates / (1 - rates) / (overall / (1 - overall))).tolist()


def repetition_weights(odds_ratios: list[float], strength: float) -> tuple[float, ...]:
    """`Decoding.repetition_weights`: 0 for a fragment that occurs once, the odds ratios raised to the strength
    for the others."""
    return (0.0, *(round(ratio ** strength, 4) for ratio in odds_ratios[1:]))


def fit_context_temperature(scores: list[DocumentScores], articles: list[Article]) -> float:
    """The context classifier's temperature, on the gold fragments' techniques."""
    def read(document: DocumentScores, span: tuple[int, int]) -> np.ndarray | None:
        logits = document.context_logits.get(span)
        if logits is None:
            return None
        shifted = logits - logits.max()
        return shifted - np.log(np.exp(shifted).sum())
    return fit_reader_temperature(scores, articles, read)


def fit_tagger_temperature(scores: list[DocumentScores], articles: list[Article]) -> float:
    """The technique tagger's temperature (`tagger_probabilities`), on the gold fragments' techniques."""
    def read(document: DocumentScores, span: tuple[int, int]) -> np.ndarray | None:
        probabilities = tagger_probabilities(document, span, 1.0)
        return None if probabilities is None else np.log(np.maximum(probabilities, 1e-300))
    return fit_reader_temperature(scores, articles, read)


def fit_reader_temperature(scores: list[DocumentScores], articles: list[Article],
                           read: Callable[[DocumentScores, tuple[int, int]], np.ndarray | None]) -> float:
    """The temperature of a reader of spans' techniques, read(document, (start, end)) giving its
    log p(technique) of a span (None: it did not read it), fitted on the gold fragments' techniques."""
    log_probabilities, targets = [], []
    for article, document in zip(articles, scores):
        for span in article.spans:
            read_log_probabilities = read(document, (span.start, span.end))
            if read_log_probabilities is not None:
                log_probabilities.append(read_log_probabilities)
                targets.append(document.techniques.index(span.technique))
    return fit_temperature(np.array(log_probabilities), np.array(targets)) if targets else 1.0


def fit_span_temperature(scores: list[DocumentScores], articles: list[Article], tokenizer) -> float:
    """The span tagger's temperature, on window-averaged O/B/I probabilities against the token tags."""
    from persuasion.train.features import encode_article

    token_log_probabilities, token_tags = [], []
    for article, document in zip(articles, scores):
        tags = encode_article(article, tokenizer, document.techniques).tags
        p_inside, p_begin = document.span_probabilities(1.0)
        rows = np.stack([1.0 - p_inside, p_begin, p_inside - p_begin], axis=1)
        token_log_probabilities.append(np.log(np.clip(rows, 1e-12, 1.0)))
        token_tags.extend(tags)
    return fit_temperature(np.concatenate(token_log_probabilities), np.array(token_tags))


def tune_detector(detector, articles: list[Article], training_articles: list[Article]):
    """Fit the stride, temperatures, span decoding, the Repetition choices, the technique tagger's spans and the
    score calibration on validation (`articles`); the training articles give only the Repetition odds ratios.

    Returns (the detector under the tuned stride and decoding, the validation report of the tuning).
    """
    # From the recipe's stride and neutral temperatures, so tuning a tuned checkpoint again gives the same result.
    chosen_min_score = detector.decoding.min_score
    detector = detector.with_stride(detector.settings.recipe.get("inference_stride", detector.settings.window_stride))
    decoding = replace(detector.decoding, span_temperature=1.0, technique_temperature=1.0,
                       repetition_weights=Decoding.repetition_weights,
                       context_mix=0.0, detection_context_mix=0.0, context_temperature=1.0, tagger_technique_mix=0.0,
                       tagger_technique_temperature=1.0, span_calibration=(), sentence_calibration=(),
                       tagger_span_threshold=None, min_score=0.0)
    stride, scores = choose_window_stride(detector, articles, decoding)
    decoding = replace(decoding, technique_temperature=fit_technique_temperature(scores, articles, decoding),
                       span_temperature=fit_span_temperature(scores, articles, detector.tokenizer))
    log.info(f"temperatures: span {decoding.span_temperature}, technique {decoding.technique_temperature}")

    # The context classifier's and the technique tagger's shares and the Repetition strength together, on TC
    # micro-F1, then macro-F1.
    gold = technique_gold(articles)
    context_mixes = CONTEXT_MIXES if detector.context is not None else (0.0,)
    tagger_mixes = TAGGER_TECHNIQUE_MIXES if detector.settings.technique_tagger else (0.0,)
    if detector.context is not None:
        decoding = replace(decoding, context_temperature=fit_context_temperature(scores, articles))
    if detector.settings.technique_tagger:
        decoding = replace(decoding, tagger_technique_temperature=fit_tagger_temperature(scores, articles))
    odds_ratios = repetition_odds_ratios(training_articles)
    tc_by_choice = {}
    for choice in itertools.product(context_mixes, tagger_mixes, REPETITION_STRENGTHS):
        context_mix, tagger_mix, strength = choice
        trial = replace(decoding, context_mix=context_mix, tagger_technique_mix=tagger_mix,
                        repetition_weights=repetition_weights(odds_ratios, strength))
        tc = tc_scores(classify_gold_spans(scores, articles, trial), gold)
        tc_by_choice[choice] = (round(tc["micro_f1"], 4), round(tc["macro_f1"], 4))
    # Ties go to the smaller shares and strength.
    best = max(tc_by_choice, key=lambda choice: (tc_by_choice[choice], *(-value for value in choice)))
    context_mix, tagger_mix, strength = best
    decoding = replace(decoding, context_mix=context_mix, detection_context_mix=context_mix,
                       tagger_technique_mix=tagger_mix, repetition_weights=repetition_weights(odds_ratios, strength))
    log.info(f"context classifier share {context_mix} (temperature {decoding.context_temperature}), technique "
             f"tagger share {tagger_mix} (temperature {decoding.tagger_technique_temperature}), Repetition strength "
             f"{strength} on odds ratios {[round(ratio, 2) for ratio in odds_ratios]}: validation TC micro-, "
             f"macro-F1 by (context share, tagger share, strength) {tc_by_choice}")

    decoding, si, _, si_by_mix = best_span_decoding(detector, scores, articles, decoding)
    log.info(f"span threshold {decoding.span_threshold}, extension margin {decoding.span_extension_margin}, "
             f"gap {decoding.span_gap_tokens} tokens, technique tagger mix {decoding.technique_tag_mix}, "
             f"across sentences {decoding.join_across_sentences}, trim {decoding.trim_function_words} "
             f"(validation SI F1 by mix {si_by_mix}): validation SI {si}")
    for document in scores:  # the spans are now chosen: the repetition rule and calibration only relabel them
        detector.classify_candidates(document, [decoding])

    flc_by_rule = {rule: flc_f1(detector, scores, articles, replace(decoding, repetition_rule=rule))
                   for rule in (False, True)}
    decoding = replace(decoding, repetition_rule=flc_by_rule[True] > flc_by_rule[False])
    log.info(f"repetition rule: FLC F1 without {flc_by_rule[False]:.4f}, with {flc_by_rule[True]:.4f}")

    # The context classifier's share for detected spans, on FLC F1: it learnt from gold spans, whose edges
    # detected spans often miss by words, so the share that names gold spans best may not suit them.
    if detector.context is not None:
        flc_by_share = {}
        for share in CONTEXT_MIXES:
            trial = replace(decoding, detection_context_mix=share)
            flc_by_share[share] = round(flc_f1(detector, scores, articles, trial), 4)
        share = max(CONTEXT_MIXES, key=lambda share: (flc_by_share[share], -share))  # ties: fewer spans read again
        decoding = replace(decoding, detection_context_mix=share)
        log.info(f"context classifier share for detected spans {decoding.detection_context_mix}: validation FLC F1 "
                 f"by share {flc_by_share}")

    # One fragment may carry two techniques, as in the gold: a second one above a threshold, if FLC gains.
    flc_by_second = {threshold: flc_f1(detector, scores, articles, replace(
        decoding, technique_thresholds=dict.fromkeys(detector.techniques, threshold) if threshold else {}))
        for threshold in SECOND_TECHNIQUE_THRESHOLDS}
    second = max(SECOND_TECHNIQUE_THRESHOLDS, key=flc_by_second.get)  # ties keep the earlier: none, then the highest
    decoding = replace(decoding, technique_thresholds=dict.fromkeys(detector.techniques, second) if second else {})
    log.info(f"second technique above {second or 'never'}: validation FLC F1 by threshold {flc_by_second}")

    # Spans of one technique where the technique tagger marks them and no detected span of it is, if SI + FLC gain.
    full_task_by_tagger = {}
    for threshold in TAGGER_SPAN_THRESHOLDS if detector.settings.technique_tagger else (None,):
        predicted = decoded_spans(detector, scores, articles, replace(decoding, tagger_span_threshold=threshold))
        full_task_by_tagger[threshold] = (si_scores({key: [(s, e) for s, e, _ in spans] for key, spans in
                                                     predicted.items()}, span_gold(articles)),
                                          flc_scores(predicted, gold)["f1"])
    f1_by_tagger = {threshold: (round(si["f1"], 4), round(flc, 4))
                    for threshold, (si, flc) in full_task_by_tagger.items()}
    tagger_threshold = max(f1_by_tagger, key=lambda threshold: sum(f1_by_tagger[threshold]))  # ties keep the earlier
    decoding = replace(decoding, tagger_span_threshold=tagger_threshold)
    si, flc = full_task_by_tagger[tagger_threshold]
    log.info(f"technique tagger spans above {tagger_threshold or 'never'}: validation (SI F1, FLC F1) by threshold "
             f"{f1_by_tagger}")

    decoding, calibration = fit_calibration(scores, articles, decoding)
    decoding = replace(decoding, min_score=chosen_min_score)  # the user's choice, not tuning's
    log.info(f"calibration on validation: span score ECE {calibration['spans']['ece_raw']:.4f} -> "
             f"{calibration['spans']['ece']:.4f}, sentence score ECE {calibration['sentences']['ece_raw']:.4f} -> "
             f"{calibration['sentences']['ece']:.4f}")

    tc = tc_scores(classify_gold_spans(scores, articles, decoding), gold)
    report = {"si": si, "tc_micro_f1": tc["micro_f1"], "tc_macro_f1": tc["macro_f1"],
              "flc_f1": flc, "window_stride": stride,
              "si_f1_by_technique_tag_mix": si_by_mix, "calibration": calibration, "decoding": decoding.to_dict()}
    return detector.with_stride(stride).with_decoding(decoding), report


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint folder written by `persuasion train` (changed in place)")
    parser.add_argument("--data", required=True, help="PTC folder whose train split holds the validation articles")


def run(args) -> int:
    report = read_validation_report(args.checkpoint)
    training, validation = split_articles(args.data, args.checkpoint)
    with ProgressLog():
        detector, report["validation"] = tune_detector(Detector.load(args.checkpoint, precision=TUNING_PRECISION),
                                                       validation, training)
    report["tuned_on"] = hardware(detector.device)
    write_settings(args.checkpoint, detector.settings, detector.decoding)
    write_validation_report(args.checkpoint, report)
    print(f"tuned {args.checkpoint}: validation {json.dumps(report['validation'])}")
    return 0
