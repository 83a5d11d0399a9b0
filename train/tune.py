"""Decision thresholds and calibration temperatures, fitted on the validation split only.

`persuasion train` ends by tuning its checkpoint. `persuasion tune CHECKPOINT --data PTC_DIR` tunes a
trained checkpoint again, on the validation articles its run held out, after decoding gained a
choice; it rewrites the checkpoint's settings and validation report, never its weights.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from persuasion.corpus import Article
from persuasion.eval.benchmark import span_gold, technique_gold
from persuasion.eval.metrics import flc_scores, si_scores, tc_scores
from persuasion.eval.systems import detector_tc_answers

SPAN_THRESHOLDS = np.round(np.arange(0.20, 0.81, 0.025), 3)
TEMPERATURES = np.round(np.arange(0.5, 3.01, 0.05), 3)
SPAN_GAPS = (0, 1, 2, 3, 4, 6, 8, 10, 12)  # tokens
REPETITION_BOOSTS = (1.0, 2.0, 4.0, 8.0, 16.0)
SENTENCE_GATES = (0.0, 0.5, 1.0, 2.0)  # exponents of p(sentence holds a technique) in the token score
SPAN_EXTENSION_MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2)  # how far below the span threshold a span may grow
TECHNIQUE_TAG_MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)  # weight of the technique tagger's p(inside) in the token score
# The span decoding settings the search fits besides the threshold.
DECODING_FIELDS = ("span_gap_tokens", "sentence_gate", "span_extension_margin", "technique_tag_mix")


def hardware(detector) -> str:
    """Where a checkpoint was tuned (and trained), for its validation report: scores differ slightly between
    GPU and CPU arithmetic, so the report says which one produced them."""
    import torch

    if detector.device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(detector.device))
    if detector.device == "cpu":
        return f"CPU, {torch.get_num_threads()} threads"
    return detector.device


def sentence_gates(detector) -> tuple[float, ...]:
    """The gates worth trying: all of them where the network scores sentences, else only "off"."""
    return SENTENCE_GATES if detector.settings.sentence_head else (0.0,)


def technique_tag_mixes(detector) -> tuple[float, ...]:
    """The mixes worth trying: all of them where the network kept its technique tagger, else only "off"."""
    return TECHNIQUE_TAG_MIXES if detector.settings.technique_tagger else (0.0,)


def validation_scores(detector, articles: list[Article]) -> dict:
    """SI F1 at the best threshold and TC micro-F1 on gold spans: what training selects on.

    The technique tagger's mix is fitted once, by the tuning that ends training: five mixes would
    multiply the decoding done at every epoch by five.
    """
    analyses = detector._analyse([article.text for article in articles])
    best_threshold, si = best_span_threshold(detector, analyses, articles, gates=sentence_gates(detector),
                                             margins=SPAN_EXTENSION_MARGINS)
    tc = tc_scores(classify_gold_spans(detector, analyses, articles), technique_gold(articles))
    settings = detector.settings
    return {"si_f1": si["f1"], "si_threshold": best_threshold, "span_extension_margin": settings.span_extension_margin,
            "sentence_gate": settings.sentence_gate,
            "tc_micro_f1": tc["micro_f1"], "tc_macro_f1": tc["macro_f1"], "selection": si["f1"] + tc["micro_f1"]}


def best_span_threshold(detector, analyses, articles: list[Article], gaps: tuple[int, ...] | None = None,
                        gates: tuple[float, ...] | None = None, margins: tuple[float, ...] | None = None
                        ) -> tuple[float, dict]:
    """The span threshold with the best validation SI F1, and, where given, the best span gap, sentence
    gate and extension margin (each left as the settings have it where not given), at the settings'
    technique tagger mix.

    Sets the best gap, gate and margin on the detector's settings; returns (threshold, SI scores).
    """
    gold = span_gold(articles)
    settings = detector.settings
    original_threshold = settings.span_threshold
    gaps = gaps if gaps is not None else (settings.span_gap_tokens,)
    gates = gates if gates is not None else (settings.sentence_gate,)
    margins = margins if margins is not None else (settings.span_extension_margin,)
    best = {"threshold": original_threshold, "gap": settings.span_gap_tokens, "gate": settings.sentence_gate,
            "margin": settings.span_extension_margin, "si": {"f1": -1.0}}
    for gate, gap in itertools.product(gates, gaps):
        settings.sentence_gate, settings.span_gap_tokens = float(gate), int(gap)
        for extension in SPAN_THRESHOLDS:
            # Runs down to the extension threshold, decoded once; each margin keeps those whose peak reaches it.
            candidates = {a.article_id: detector._candidate_spans(analysis, float(extension))
                          for a, analysis in zip(articles, analyses)}
            for margin in margins:
                threshold = round(float(extension) + margin, 3)
                predicted = {article_id: [(s, e) for s, e, _, peak in spans if peak >= threshold]
                             for article_id, spans in candidates.items()}
                scores = si_scores(predicted, gold)
                if scores["f1"] > best["si"]["f1"]:
                    best = {"threshold": threshold, "gap": int(gap), "gate": float(gate), "margin": float(margin),
                            "si": scores}
    settings.span_threshold = original_threshold
    settings.span_gap_tokens, settings.sentence_gate = best["gap"], best["gate"]
    settings.span_extension_margin = best["margin"]
    return best["threshold"], best["si"]


def best_span_decoding(detector, analyses, articles: list[Article]) -> tuple[float, dict, dict[float, float]]:
    """The full search of span decoding on validation: threshold, gap, sentence gate, extension margin and
    technique tagger mix. Sets them on the detector's settings (the threshold too).

    Returns (threshold, SI scores, the best validation SI F1 at each technique tagger mix), the last to
    show what the mix is worth.
    """
    settings = detector.settings
    best, by_mix = None, {}
    for mix in technique_tag_mixes(detector):
        settings.technique_tag_mix = mix
        threshold, si = best_span_threshold(detector, analyses, articles, SPAN_GAPS, sentence_gates(detector),
                                            SPAN_EXTENSION_MARGINS)
        by_mix[mix] = si["f1"]
        if best is None or si["f1"] > best[1]["f1"]:  # ties keep the smaller mix
            best = (threshold, si, {name: getattr(settings, name) for name in DECODING_FIELDS})
    threshold, si, choices = best
    for name, value in choices.items():
        setattr(settings, name, value)
    settings.span_threshold = threshold
    return threshold, si, by_mix


def classify_gold_spans(detector, analyses, articles: list[Article]) -> dict[str, list[tuple[int, int, str]]]:
    """TC predictions for every gold span occurrence, as the benchmark makes them."""
    predicted = {}
    for article, analysis in zip(articles, analyses):
        occurrences = [(span.start, span.end) for span in article.spans]
        answers = detector_tc_answers(detector, analysis, occurrences)
        predicted[article.article_id] = [(s, e, technique) for (s, e), (technique, _) in zip(occurrences, answers)]
    return predicted


def fit_temperature(log_probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood of `targets` (class indices)."""
    best_temperature, best_loss = 1.0, float("inf")
    for temperature in TEMPERATURES:
        scaled = log_probabilities / temperature
        scaled = scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)
        loss = -scaled[np.arange(len(targets)), targets].mean()
        if loss < best_loss:
            best_temperature, best_loss = float(temperature), loss
    return best_temperature


def choose_window_stride(detector, articles: list[Article], log=print) -> list:
    """Keep the recipe's inference stride or a denser one (~1.5x the compute), by validation SI F1 + TC micro-F1.

    Returns the validation analyses at the chosen stride.
    """
    settings = detector.settings
    scores, analyses_by_stride = {}, {}
    for stride in sorted({settings.window_stride, max(1, settings.window_stride * 2 // 3)}, reverse=True):
        settings.window_stride = stride
        analyses = analyses_by_stride[stride] = detector._analyse([article.text for article in articles])
        _, si, _ = best_span_decoding(detector, analyses, articles)
        tc = tc_scores(classify_gold_spans(detector, analyses, articles), technique_gold(articles))
        scores[stride] = si["f1"] + tc["micro_f1"]
    # Ties go to the sparser (faster) stride.
    settings.window_stride = max(scores, key=lambda stride: (round(scores[stride], 6), stride))
    log(f"inference stride {settings.window_stride}: validation SI F1 + TC micro-F1 by stride {scores}")
    return analyses_by_stride[settings.window_stride]


def tune_detector(detector, articles: list[Article], log=print) -> dict:
    """Fit the stride, temperatures, span threshold and gap and the Repetition choices on validation."""
    settings = detector.settings
    settings.span_temperature = settings.technique_temperature = 1.0
    settings.repetition_boost = 1.0
    # Start from the recipe's stride, so tuning a tuned checkpoint again gives the same result.
    settings.window_stride = settings.recipe.get("inference_stride", settings.window_stride)
    analyses = choose_window_stride(detector, articles, log)  # at span temperature 1, as the fit below needs
    texts = [article.text for article in articles]

    # Technique head: temperature on the gold fragments' first technique.
    log_probabilities, targets = [], []
    for article, analysis in zip(articles, analyses):
        fragments = [(span.start, span.end) for span in article.spans]
        if fragments:
            rows = detector._technique_probabilities(analysis, fragments)
            log_probabilities.append(np.log(np.clip(rows, 1e-12, 1.0)))
            targets.extend(detector.techniques.index(span.technique) for span in article.spans)
    settings.technique_temperature = fit_temperature(np.concatenate(log_probabilities), np.array(targets))

    # Span head: temperature on window-averaged O/B/I probabilities against the token tags.
    from persuasion.train.features import encode_article

    token_log_probabilities, token_tags = [], []
    for article, analysis in zip(articles, analyses):
        tags = encode_article(article, detector.tokenizer, detector.techniques).tags
        p_begin = analysis.p_begin
        p_inside_only = analysis.p_inside - p_begin
        rows = np.stack([1.0 - analysis.p_inside, p_begin, p_inside_only], axis=1)
        token_log_probabilities.append(np.log(np.clip(rows, 1e-12, 1.0)))
        token_tags.extend(tags)
    settings.span_temperature = fit_temperature(np.concatenate(token_log_probabilities), np.array(token_tags))
    log(f"temperatures: span {settings.span_temperature}, technique {settings.technique_temperature}")

    gold = technique_gold(articles)
    tc_by_boost = {}
    for boost in REPETITION_BOOSTS:
        settings.repetition_boost = boost
        tc_by_boost[boost] = tc_scores(classify_gold_spans(detector, analyses, articles), gold)["micro_f1"]
    settings.repetition_boost = max(REPETITION_BOOSTS, key=lambda boost: (tc_by_boost[boost], -boost))
    log(f"repetition boost {settings.repetition_boost}: validation TC micro-F1 by boost {tc_by_boost}")

    analyses = detector._analyse(texts)  # again, under the fitted span temperature
    _, si, si_by_mix = best_span_decoding(detector, analyses, articles)
    log(f"span threshold {settings.span_threshold}, extension margin {settings.span_extension_margin}, "
        f"gap {settings.span_gap_tokens} tokens, sentence gate {settings.sentence_gate}, "
        f"technique tagger mix {settings.technique_tag_mix} (validation SI F1 by mix {si_by_mix}): validation SI {si}")

    flc_by_rule = {}
    for rule in (False, True):
        settings.repetition_rule = rule
        predicted = {a.article_id: [(s.start, s.end, s.technique) for s in detector._result(analysis).spans]
                     for a, analysis in zip(articles, analyses)}
        flc_by_rule[rule] = flc_scores(predicted, gold)["f1"]
    settings.repetition_rule = flc_by_rule[True] > flc_by_rule[False]
    log(f"repetition rule: FLC F1 without {flc_by_rule[False]:.4f}, with {flc_by_rule[True]:.4f}")

    tc = tc_scores(classify_gold_spans(detector, analyses, articles), gold)
    return {"si": si, "tc_micro_f1": tc["micro_f1"], "window_stride": settings.window_stride, "tc_macro_f1": tc["macro_f1"],
            "flc_f1": max(flc_by_rule.values()), "span_threshold": settings.span_threshold,
            "span_extension_margin": settings.span_extension_margin, "sentence_gate": settings.sentence_gate,
            "technique_tag_mix": settings.technique_tag_mix, "si_f1_by_technique_tag_mix": si_by_mix,
            "span_temperature": settings.span_temperature, "technique_temperature": settings.technique_temperature,
            "repetition_rule": settings.repetition_rule, "repetition_boost": settings.repetition_boost}


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint folder written by `persuasion train` (changed in place)")
    parser.add_argument("--data", required=True, help="PTC folder whose train split holds the validation articles")


def run(args) -> int:
    from persuasion.model.detector import Detector
    from persuasion.model.network import save_settings
    from persuasion.train.export import held_out_articles, validation_report, write_validation_report

    checkpoint = Path(args.checkpoint)
    summary = validation_report(checkpoint)
    articles = held_out_articles(args.data, checkpoint)
    detector = Detector.load(checkpoint)
    summary["validation"] = tune_detector(detector, articles)
    summary["tuned_on"] = hardware(detector)
    save_settings(detector.settings, checkpoint)
    write_validation_report(checkpoint, summary)
    print(f"tuned {checkpoint}: validation {json.dumps(summary['validation'])}")
    return 0
