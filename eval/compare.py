"""`persuasion compare`: two systems' answers on one PTC split, article by article.

    persuasion benchmark --data ../shared/data/ptc-semeval2020 --split dev --system fast --out /tmp/fast
    persuasion benchmark --data ../shared/data/ptc-semeval2020 --split dev --out /tmp/default
    persuasion compare --data ../shared/data/ptc-semeval2020 --split dev /tmp/fast /tmp/default

Each folder holds one system's submission files in the official formats, as `persuasion benchmark` writes
them: SPLIT-task-si.txt (`ID start end`), SPLIT-task-tc.txt and SPLIT-task-flc.txt (`ID technique start end`),
tab-separated; any system's files in those formats will do. For SI F1, TC micro- and macro-F1 and FLC F1 it
prints both scores, the second system's gain and the range holding 95% of the gains when the split's articles
are drawn again with replacement (the same draws for both systems, so what the articles share cancels), and
how often the second scores higher in those draws.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from persuasion.corpus import read_articles, read_label_lines, span_gold, technique_gold
from persuasion.errors import PersuasionError
from persuasion.eval.metrics import ArticleParts, article_draws, percentile_range
from persuasion.taxonomy import TECHNIQUES

LEVEL = 0.95
MEASURES = {"si_f1": "SI F1", "tc_micro_f1": "TC micro-F1", "tc_macro_f1": "TC macro-F1", "flc_f1": "FLC F1"}


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="PTC folder holding NAME-articles/ and their gold")
    parser.add_argument("--split", default="dev", help="split name, e.g. dev (default)")
    parser.add_argument("first", help="folder with one system's submission files (e.g. persuasion benchmark --out)")
    parser.add_argument("second", help="folder with the other system's; gains are the second's over the first's")
    parser.add_argument("--json", metavar="PATH", help="also write the comparison to PATH as JSON")


def run(args) -> int:
    comparison = compare(args.data, args.split, Path(args.first), Path(args.second))
    print(comparison_table(comparison), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(comparison, indent=2) + "\n")
    return 0


def compare(data_dir, split: str, first: Path, second: Path) -> dict:
    """Both systems' scores, the second's gains and their range over articles drawn again, per measure."""
    articles = read_articles(data_dir, split)
    gold = technique_gold(articles)
    if not gold:
        raise PersuasionError(f"{data_dir}: the {split} split has no technique gold to score against")
    si_gold = span_gold(articles)
    known = {article.article_id for article in articles}
    parts = []
    for folder in (first, second):
        si, tc, flc = read_submission(folder, split, known)
        parts.append(ArticleParts.of(si, si_gold, tc, flc, gold, TECHNIQUES))
    first_parts, second_parts = parts
    everything = np.ones((1, len(first_parts.articles)))  # the split itself: the official scores
    draws = article_draws(len(first_parts.articles))
    first_scores, second_scores = first_parts.scores(everything), second_parts.scores(everything)
    first_drawn, second_drawn = first_parts.scores(draws), second_parts.scores(draws)
    measures = {}
    for name in MEASURES:
        gains = second_drawn[name] - first_drawn[name]
        measures[name] = {"first": round(float(first_scores[name][0]), 4),
                          "second": round(float(second_scores[name][0]), 4),
                          "gain": round(float(second_scores[name][0] - first_scores[name][0]), 4),
                          "gain_range": percentile_range(gains, LEVEL),
                          "second_higher": round(float(np.mean(gains > 0)), 4)}
    return {"split": split, "articles": len(first_parts.articles), "first": str(first), "second": str(second),
            "level": LEVEL, "resamples": len(draws), "measures": measures}


def read_submission(folder: Path, split: str, known: set[str]) -> tuple[dict, dict, dict]:
    """(SI, TC, FLC) answers by article from the official submission files in `folder`."""
    if not folder.is_dir():
        raise PersuasionError(f"{folder}: no such folder; give one that `persuasion benchmark --out` wrote")
    return tuple(read_answers(folder / f"{split}-task-{task}.txt", known, labelled=task != "si")
                 for task in ("si", "tc", "flc"))


def read_answers(path: Path, known: set[str], labelled: bool) -> dict[str, list[tuple]]:
    """One submission file's answers by article: (start, end) from `ID start end` lines, or (start, end,
    technique) from `ID technique start end` lines when labelled."""
    if not path.is_file():
        raise PersuasionError(f"{path}: no such file; `persuasion benchmark` writes one for each task")
    answers: dict[str, list[tuple]] = {}
    for number, fields in read_label_lines(path, 4 if labelled else 3):
        try:
            start, end = int(fields[-2]), int(fields[-1])
        except ValueError:
            raise PersuasionError(f"{path}:{number}: start and end must be whole numbers, got {fields[-2][:20]!r} "
                                  f"and {fields[-1][:20]!r}") from None
        if not 0 <= start < end:  # as the official scorers, which reject such a line
            raise PersuasionError(f"{path}:{number}: {start}-{end} is not a span (0 <= start < end)")
        if fields[0] not in known:
            raise PersuasionError(f"{path}:{number}: article {fields[0]} is not in this split")
        if labelled and fields[1] not in TECHNIQUES:
            raise PersuasionError(f"{path}:{number}: unknown technique {fields[1]!r}; the 14 are in "
                                  "persuasion.TECHNIQUES")
        answers.setdefault(fields[0], []).append((start, end, fields[1]) if labelled else (start, end))
    return answers


def comparison_table(comparison: dict) -> str:
    lines = [f"{comparison['split']} ({comparison['articles']} articles): second {comparison['second']} "
             f"against first {comparison['first']}",
             f"  {'measure':<12}  {'first':>6}  {'second':>6}  {'gain':>7}  {'range of the gain':<18}  second higher"]
    for name, title in MEASURES.items():
        row = comparison["measures"][name]
        low, high = row["gain_range"]
        higher = math.floor(row["second_higher"] * 1000) / 10  # 99.96% is not "100.0%"
        lines.append(f"  {title:<12}  {row['first']:6.4f}  {row['second']:6.4f}  {row['gain']:+7.4f}  "
                     f"{low:+.4f} to {high:+.4f}  {higher:.1f}% of draws")
    lines.append(f"  (ranges: {comparison['level']:.0%} of the gains when the articles are drawn again with "
                 f"replacement, {comparison['resamples']} times, the same draws for both systems)")
    return "\n".join(lines) + "\n"
