"""Classical reference systems, trained on the train split when the benchmark starts.

- majority: every TC occurrence gets the most frequent training technique (ties by name); SI and FLC find nothing.
- tfidf: TF-IDF + logistic regression. TC reads the fragment and the line around it; SI flags
  whole lines (one sentence per line in PTC) whose probability of holding a technique passes a
  threshold chosen on a validation slice of train; FLC labels each flagged line with the TC model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from persuasion.corpus import Article, read_ptc_articles, split_by_article
from persuasion.eval.metrics import si_scores
from persuasion.eval.predictions import Predictions
from persuasion.model.decoding import rank_for_occurrences

VALIDATION_FRACTION, SPLIT_SEED = 0.1, 13  # as the training recipes hold out


class MajorityBaseline:
    name = "majority"
    precision = None

    def __init__(self, technique: str):
        self.technique = technique

    @classmethod
    def fit(cls, data_dir: str | Path, split: str = "train") -> "MajorityBaseline":
        counts = Counter(span.technique for article in read_ptc_articles(data_dir, split) for span in article.spans)
        return cls(min(counts, key=lambda technique: (-counts[technique], technique)))  # ties: by name

    def predict(self, articles: list[Article], progress: Callable[[int], None]) -> Predictions:
        predictions = Predictions()
        for article in articles:
            predictions.si[article.article_id] = []
            predictions.flc[article.article_id] = []
            predictions.tc[article.article_id] = [(s.start, s.end, self.technique) for s in article.spans]
        progress(len(articles))
        return predictions


def line_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank line with its surrounding whitespace left out."""
    bounds, position = [], 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped:
            start = position + line.index(stripped)
            bounds.append((start, start + len(stripped)))
        position += len(line)
    return bounds


def line_around(text: str, start: int, end: int) -> str:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return text[line_start: line_end if line_end >= 0 else len(text)]


class TfidfBaseline:
    name = "tfidf"
    precision = None

    def __init__(self, technique_model, line_model, line_threshold: float):
        self.technique_model = technique_model
        self.line_model = line_model
        self.line_threshold = line_threshold

    @staticmethod
    def _span_features(text: str, start: int, end: int) -> str:
        # Prefixing context words keeps the fragment's own words distinct features.
        fragment = text[start:end]
        context = " ".join("ctx_" + word for word in line_around(text, start, end).lower().split())
        return f"{fragment} {context} len_{min(len(fragment.split()), 20)}"

    @classmethod
    def fit(cls, data_dir: str | Path, split: str = "train") -> "TfidfBaseline":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        articles = read_ptc_articles(data_dir, split)
        # The detectors' validation split, so the line threshold is chosen on the same articles.
        fitting, validation = split_by_article(articles, VALIDATION_FRACTION, SPLIT_SEED)

        technique_model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                                        LogisticRegression(max_iter=2000, C=5.0))
        technique_model.fit([cls._span_features(a.text, s.start, s.end) for a in articles for s in a.spans],
                            [s.technique for a in articles for s in a.spans])

        line_model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                                   LogisticRegression(max_iter=2000, C=2.0, class_weight="balanced"))
        lines, labels = cls._line_examples(fitting)
        line_model.fit(lines, labels)
        system = cls(technique_model, line_model, 0.5)
        system.line_threshold = system._best_line_threshold(validation)
        line_model.fit(*cls._line_examples(articles))  # refit on all of train at the chosen threshold
        return system

    @staticmethod
    def _line_examples(articles: list[Article]) -> tuple[list[str], list[int]]:
        lines, labels = [], []
        for article in articles:
            gold = [(s.start, s.end) for s in article.spans]
            for start, end in line_bounds(article.text):
                lines.append(article.text[start:end])
                labels.append(int(any(s < end and start < e for s, e in gold)))
        return lines, labels

    def _flagged_lines(self, article: Article, threshold: float) -> list[tuple[int, int]]:
        bounds = line_bounds(article.text)
        if not bounds:
            return []
        probabilities = self.line_model.predict_proba([article.text[s:e] for s, e in bounds])[:, 1]
        return [bound for bound, p in zip(bounds, probabilities) if p >= threshold]

    def _best_line_threshold(self, validation: list[Article]) -> float:
        gold = {a.article_id: [(s.start, s.end) for s in a.spans] for a in validation}
        scored = []
        for threshold in np.arange(0.3, 0.91, 0.05):
            predicted = {a.article_id: self._flagged_lines(a, threshold) for a in validation}
            scored.append((si_scores(predicted, gold)["f1"], float(round(threshold, 2))))
        return max(scored)[1]

    def predict(self, articles: list[Article], progress: Callable[[int], None]) -> Predictions:
        predictions = Predictions(tc_confidence=[])
        classes = list(self.technique_model.classes_)
        for article in articles:
            flagged = self._flagged_lines(article, self.line_threshold)
            predictions.si[article.article_id] = flagged
            if flagged:
                labels = self.technique_model.predict([self._span_features(article.text, s, e) for s, e in flagged])
                predictions.flc[article.article_id] = [(s, e, t) for (s, e), t in zip(flagged, labels)]
            else:
                predictions.flc[article.article_id] = []
            occurrences = [(span.start, span.end) for span in article.spans]
            fragments = sorted(set(occurrences))
            ranked = {}
            if fragments:
                rows = self.technique_model.predict_proba([self._span_features(article.text, s, e) for s, e in fragments])
                for fragment, row in zip(fragments, rows):
                    order = np.argsort(-row, kind="stable")
                    ranked[fragment] = [(classes[i], float(row[i])) for i in order]
            answers = rank_for_occurrences(occurrences, ranked)
            predictions.tc[article.article_id] = [(s, e, t) for (s, e), (t, _) in zip(occurrences, answers)]
            predictions.tc_confidence.extend(confidence for _, confidence in answers)
            progress(1)
        return predictions
