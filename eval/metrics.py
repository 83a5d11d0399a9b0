"""The SemEval-2020 Task 11 measures (Da San Martino et al., 2020), written out from their definitions.

SI and FLC give partial credit for overlap. For predicted spans S and gold spans T,
pooled over all articles,

    P = 1/|S| * sum_{s in S, t in T} |s & t| / |s|        R = 1/|T| * sum_{s, t} |s & t| / |t|

where, for FLC, |s & t| counts only when s and t carry the same technique. First, on both
sides, spans that share a character are merged (per technique for FLC), as the official SI
scorer does with -m: spans that only touch, like (0, 5) and (5, 10), stay two, and a
duplicate is the same span. The official scorer rejects a span whose end is not after its
start, and so do these measures. With no predictions P is 0, with no gold R is 0, F1 is 0
when P or R is 0, and F1 is 1 when there is nothing to find and nothing was found, as in
the official scorer. The official repository (aschern/semeval2020_task11, tools/) has no
FLC scorer; FLC merges per technique with the same merge, as the SI scorer's own
technique-matching path does.

TC scores one technique per gold span occurrence. A fragment annotated with k techniques
occurs k times, and the k predictions for it are matched to its gold techniques as
multisets, so their order does not matter.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from persuasion.model.decoding import DANGLING_WORDS, WORD_PATTERN, cuts_word, sentence_end_between

BOOTSTRAP_RESAMPLES = 10_000  # on PTC dev a bound moves by at most ~0.003 from one seed to another; ~0.2 s

Spans = Mapping[str, Sequence[tuple[int, int]]]
LabelledSpans = Mapping[str, Sequence[tuple[int, int, str]]]


def prf(precision_numerator: float, predicted: float, recall_numerator: float, gold: float) -> dict:
    precision = precision_numerator / predicted if predicted else 0.0
    recall = recall_numerator / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def overlap_prf(precision_credit: float, predicted: int, recall_credit: float, gold: int) -> dict:
    """P/R/F1 of the overlap measures: `prf`, except that F1 is 1 with nothing to find and nothing found."""
    scores = prf(precision_credit, predicted, recall_credit, gold)
    if not predicted and not gold:
        scores["f1"] = 1.0
    return scores


def merge_overlapping_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The official scorer's merge, sorted: spans that share a character become one.

    Spans that only touch, (0, 5) and (5, 10), stay two; duplicates become one span.
    """
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _overlap_credit(predicted: list[tuple[int, int]], gold: list[tuple[int, int]]) -> tuple[float, float]:
    """(sum over s,t of |s&t|/|s|, sum of |s&t|/|t|) for two lists of disjoint, sorted spans.

    One sweep through both lists (tuning scores thousands of decodings): the gold spans that end
    before a predicted span starts cannot meet it or any later one.
    """
    precision_credit = recall_credit = 0.0
    first = 0  # the first gold span that ends after the current predicted span starts
    for s_start, s_end in predicted:
        while first < len(gold) and gold[first][1] <= s_start:
            first += 1
        for t_start, t_end in itertools.islice(gold, first, None):
            if t_start >= s_end:
                break
            shared = min(s_end, t_end) - max(s_start, t_start)
            if shared > 0:
                precision_credit += shared / (s_end - s_start)
                recall_credit += shared / (t_end - t_start)
    return precision_credit, recall_credit


def _article_ids(predicted: Mapping, gold: Mapping) -> list[str]:
    """Every article either side names, in one fixed order, so pooled sums repeat to the last bit."""
    return sorted(set(predicted) | set(gold))


def _scored_spans(spans: Iterable[tuple[int, int]], article_id: str) -> list[tuple[int, int]]:
    """The spans of one article, merged as the official scorer merges them; it rejects empty or negative ones."""
    spans = [(start, end) for start, end in spans]
    for start, end in spans:
        if not 0 <= start < end:
            raise ValueError(f"article {article_id}: span {start}-{end} is not a span (the official scorer needs "
                             f"0 <= start < end)")
    return merge_overlapping_spans(spans)


def si_scores(predicted: Spans, gold: Spans) -> dict:
    """Span identification: technique-blind partial-overlap P/R/F1."""
    precision_credit = recall_credit = 0.0
    predicted_count = gold_count = 0
    for article_id in _article_ids(predicted, gold):
        p, system, r, reference = si_article_credit(predicted.get(article_id, ()), gold.get(article_id, ()), article_id)
        precision_credit, recall_credit = precision_credit + p, recall_credit + r
        predicted_count, gold_count = predicted_count + system, gold_count + reference
    scores = overlap_prf(precision_credit, predicted_count, recall_credit, gold_count)
    scores.update(predicted_spans=predicted_count, gold_spans=gold_count)
    return scores


def si_article_credit(predicted: Sequence[tuple[int, int]], gold: Sequence[tuple[int, int]], article_id: str
                      ) -> tuple[float, int, float, int]:
    """One article's part of the SI sums: (precision credit, predicted spans, recall credit, gold spans), after
    the merge."""
    system = _scored_spans(predicted, article_id)
    reference = _scored_spans(gold, article_id)
    precision_credit, recall_credit = _overlap_credit(system, reference)
    return precision_credit, len(system), recall_credit, len(reference)


def flc_scores(predicted: LabelledSpans, gold: LabelledSpans, techniques: Sequence[str] | None = None) -> dict:
    """Full pipeline: the SI formula, crediting overlap only between spans of the same technique."""
    precision_credit = recall_credit = 0.0
    predicted_count = gold_count = 0
    per_technique: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0.0, 0])
    for article_id in _article_ids(predicted, gold):
        credit = flc_article_credit(predicted.get(article_id, ()), gold.get(article_id, ()), article_id)
        for technique, (p, system, r, reference) in credit.items():
            counts = per_technique[technique]
            counts[0] += p
            counts[1] += system
            counts[2] += r
            counts[3] += reference
            precision_credit, recall_credit = precision_credit + p, recall_credit + r
            predicted_count, gold_count = predicted_count + system, gold_count + reference
    scores = overlap_prf(precision_credit, predicted_count, recall_credit, gold_count)
    names = techniques if techniques is not None else sorted(per_technique)
    scores["per_technique"] = {name: overlap_prf(*per_technique[name]) | {"gold": int(per_technique[name][3])}
                               for name in names}
    scores.update(predicted_spans=predicted_count, gold_spans=gold_count)
    return scores


def flc_article_credit(predicted: Sequence[tuple[int, int, str]], gold: Sequence[tuple[int, int, str]],
                       article_id: str) -> dict[str, tuple[float, int, float, int]]:
    """One article's part of the FLC sums, per technique: `si_article_credit` between its spans of that technique."""
    by_technique_system = defaultdict(list)
    by_technique_gold = defaultdict(list)
    for start, end, technique in predicted:
        by_technique_system[technique].append((start, end))
    for start, end, technique in gold:
        by_technique_gold[technique].append((start, end))
    return {technique: si_article_credit(by_technique_system[technique], by_technique_gold[technique], article_id)
            for technique in sorted(set(by_technique_system) | set(by_technique_gold))}


def tc_scores(predicted: LabelledSpans, gold: LabelledSpans, techniques: Sequence[str] | None = None) -> dict:
    """Technique classification over gold span occurrences: micro-F1, macro-F1 and per technique.

    Predictions for spans that are not gold occurrences count as false positives, and gold
    occurrences without a prediction as false negatives; a complete submission (one line
    per gold occurrence) makes micro P = R = F1 = accuracy.
    """
    true_positive: Counter = Counter()
    predicted_total: Counter = Counter()
    gold_total: Counter = Counter()
    confusion: Counter = Counter()
    for article_id in _article_ids(predicted, gold):
        counts = tc_article_counts(predicted.get(article_id, ()), gold.get(article_id, ()))
        for total, article_counts in zip((true_positive, predicted_total, gold_total, confusion), counts):
            total.update(article_counts)

    names = list(techniques) if techniques is not None else sorted(set(gold_total) | set(predicted_total))
    per_technique = {name: prf(true_positive[name], predicted_total[name], true_positive[name], gold_total[name])
                     | {"gold": gold_total[name], "predicted": predicted_total[name]} for name in names}
    micro = prf(sum(true_positive.values()), sum(predicted_total.values()),
                sum(true_positive.values()), sum(gold_total.values()))
    # Macro-F1 averages over the techniques present in the gold, as sklearn's f1_score does
    # when given the gold label set.
    present = [name for name in names if gold_total[name]]
    macro_f1 = float(np.mean([per_technique[name]["f1"] for name in present])) if present else 0.0
    return {"micro_precision": micro["precision"], "micro_recall": micro["recall"], "micro_f1": micro["f1"],
            "macro_f1": macro_f1, "per_technique": per_technique, "gold_spans": sum(gold_total.values()),
            "confusion": {f"{g}\t{p}": n for (g, p), n in sorted(confusion.items())}}


def tc_article_counts(predicted: Sequence[tuple[int, int, str]], gold: Sequence[tuple[int, int, str]]
                      ) -> tuple[Counter, Counter, Counter, Counter]:
    """One article's part of the TC counts: true positives, predictions and gold occurrences per technique, and
    the (gold, predicted) confusion pairs."""
    true_positive: Counter = Counter()
    predicted_total: Counter = Counter()
    gold_total: Counter = Counter()
    confusion: Counter = Counter()
    system_by_fragment: dict[tuple[int, int], Counter] = defaultdict(Counter)
    gold_by_fragment: dict[tuple[int, int], Counter] = defaultdict(Counter)
    for start, end, technique in predicted:
        system_by_fragment[(start, end)][technique] += 1
    for start, end, technique in gold:
        gold_by_fragment[(start, end)][technique] += 1
    for fragment in set(system_by_fragment) | set(gold_by_fragment):
        system, reference = system_by_fragment[fragment], gold_by_fragment[fragment]
        matched = system & reference
        true_positive.update(matched)
        predicted_total.update(system)
        gold_total.update(reference)
        confusion.update({(t, t): n for t, n in matched.items()})
        # Unmatched gold and predicted labels of one fragment pair up in sorted order,
        # which is all a confusion matrix can say about multi-label fragments.
        wrong_gold = sorted((reference - matched).elements())
        wrong_system = sorted((system - matched).elements())
        confusion.update(zip(wrong_gold, wrong_system))
    return true_positive, predicted_total, gold_total, confusion


@dataclass
class ArticleParts:
    """Each article's part of the sums behind SI F1, TC micro- and macro-F1 and FLC F1, one row per article.

    Spans of one article are annotated, and mistaken, together, so the article is what a bootstrap draws
    again; a draw's scores pool its articles' parts as the measures above pool every article's.
    """

    articles: list[str]
    si: np.ndarray  # (articles, 4): precision credit, predicted spans, recall credit, gold spans
    flc: np.ndarray  # the same, crediting overlap between spans of one technique only
    tc: np.ndarray  # (articles, techniques, 3): true positives, predictions, gold occurrences
    tc_total: np.ndarray  # (articles, 3): the same over every technique named
    labelled: bool  # whether any article has technique gold (else TC and FLC are not scored)

    @classmethod
    def of(cls, si_predicted: Spans, si_gold: Spans, tc_predicted: LabelledSpans, flc_predicted: LabelledSpans,
           gold: LabelledSpans, techniques: Sequence[str]) -> ArticleParts:
        """The parts of the articles with gold; `gold` holds the technique gold of those that have it, the others
        count for SI only."""
        articles = sorted(set(si_gold) | set(gold))
        si = np.array([si_article_credit(si_predicted.get(i, ()), si_gold.get(i, ()), i) for i in articles], float)
        flc = np.zeros((len(articles), 4))
        tc = np.zeros((len(articles), len(techniques), 3))
        tc_total = np.zeros((len(articles), 3))
        column = {name: index for index, name in enumerate(techniques)}
        for row, article_id in enumerate(articles):
            if article_id not in gold:
                continue
            credit = flc_article_credit(flc_predicted.get(article_id, ()), gold[article_id], article_id)
            flc[row] = np.sum([list(parts) for parts in credit.values()] or [[0.0] * 4], axis=0)
            counts = tc_article_counts(tc_predicted.get(article_id, ()), gold[article_id])[:3]
            tc_total[row] = [sum(count.values()) for count in counts]
            for kind, count in enumerate(counts):
                for technique, n in count.items():
                    if technique in column:
                        tc[row, column[technique], kind] = n
        return cls(articles, si.reshape(len(articles), 4), flc, tc, tc_total, bool(gold))

    def scores(self, draws: np.ndarray) -> dict[str, np.ndarray]:
        """SI F1, TC micro- and macro-F1 and FLC F1 of each draw (a row: how many times each article is in it)."""
        scores = {"si_f1": _overlap_f1(draws @ self.si)}
        if self.labelled:
            total = draws @ self.tc_total
            scores["tc_micro_f1"] = _f1(total[:, 0], total[:, 1], total[:, 0], total[:, 2])
            per_technique = np.einsum("da,atk->dtk", draws, self.tc)
            f1 = _f1(per_technique[..., 0], per_technique[..., 1], per_technique[..., 0], per_technique[..., 2])
            present = per_technique[..., 2] > 0  # macro-F1 averages over the techniques in the gold, as tc_scores
            scores["tc_macro_f1"] = np.where(present, f1, 0.0).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
            scores["flc_f1"] = _overlap_f1(draws @ self.flc)
        return scores


def article_draws(articles: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, articles): how many times each article is drawn, as many draws as articles, with replacement."""
    return np.random.default_rng(seed).multinomial(articles, np.full(articles, 1 / articles),
                                                   size=resamples).astype(float)


def article_intervals(parts: ArticleParts, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = 0) -> dict:
    """Percentile bootstrap intervals of SI F1, TC micro- and macro-F1 and FLC F1 over articles."""
    scores = parts.scores(article_draws(len(parts.articles), resamples, seed))
    return {"level": level, "resamples": resamples, "unit": "article", "articles": len(parts.articles)} | {
        name: percentile_range(values, level) for name, values in scores.items()}


def percentile_range(values: np.ndarray, level: float) -> list[float]:
    tail = (1 - level) / 2
    return [round(float(bound), 4) for bound in np.quantile(values, [tail, 1 - tail])]


def _f1(precision_numerator: np.ndarray, predicted: np.ndarray, recall_numerator: np.ndarray, gold: np.ndarray
        ) -> np.ndarray:
    """`prf`'s F1, for arrays of sums."""
    precision = np.divide(precision_numerator, predicted, out=np.zeros_like(predicted), where=predicted > 0)
    recall = np.divide(recall_numerator, gold, out=np.zeros_like(gold), where=gold > 0)
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)


def _overlap_f1(sums: np.ndarray) -> np.ndarray:
    """`overlap_prf`'s F1 for rows of (precision credit, predicted, recall credit, gold) sums."""
    f1 = _f1(sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3])
    return np.where((sums[:, 1] == 0) & (sums[:, 3] == 0), 1.0, f1)


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if len(confidences) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for index in range(bins):
        members = which == index
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidences[members].mean())
    return float(error)


def reliability(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """The reliability diagram as rows: for each non-empty equal-width confidence bin, its bounds, how many
    answers fell in it, their mean confidence and how often they were right."""
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    return [{"low": float(edges[index]), "high": float(edges[index + 1]), "count": int((which == index).sum()),
             "mean_confidence": float(confidences[which == index].mean()),
             "observed": float(correct[which == index].mean())}
            for index in range(bins) if (which == index).any()]


def overlaps_any(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(other_start < end and start < other_end for other_start, other_end in spans)


def span_hits(spans: Sequence[tuple[int, int, str]], gold: Sequence[tuple[int, int, str]]) -> list[bool]:
    """For each flagged (start, end, technique), whether it overlaps a gold span of the same technique: what a
    calibrated span score estimates."""
    by_technique: dict[str, list[tuple[int, int]]] = {}
    for start, end, technique in gold:
        by_technique.setdefault(technique, []).append((start, end))
    return [overlaps_any(start, end, by_technique.get(technique, ())) for start, end, technique in spans]


def span_shapes(spans_by_article: Mapping[str, Iterable[tuple[int, int]]], texts: Mapping[str, str]) -> dict:
    """How spans are cut, against how people mark them: the share of distinct spans with an edge inside a word,
    crossing a sentence end, ending on a dangling function word; and their median length in characters.
    Edges, sentences and function words are those decoding uses (model/decoding.py)."""
    spans = [(texts[article_id], start, end) for article_id, article_spans in spans_by_article.items()
             for start, end in set(article_spans)]
    if not spans:
        return {"spans": 0}

    def last_word(text: str, start: int, end: int) -> str:
        words = WORD_PATTERN.findall(text, start, end)
        return words[-1].lower() if words else ""

    def crosses_sentence_end(text: str, start: int, end: int) -> bool:
        stripped = text[start:end].rstrip()
        return sentence_end_between(text, start, start + len(stripped))

    share = lambda test: round(sum(test(*span) for span in spans) / len(spans), 4)  # noqa: E731
    return {"spans": len(spans),
            "edge_inside_word": share(lambda text, start, end: cuts_word(text, start) or cuts_word(text, end)),
            "crosses_sentence_end": share(crosses_sentence_end),
            "ends_on_function_word": share(lambda text, start, end: last_word(text, start, end) in DANGLING_WORDS),
            "median_characters": float(np.median([end - start for _, start, end in spans]))}
