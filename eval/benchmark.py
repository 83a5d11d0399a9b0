"""`persuasion benchmark`: run a system on a PTC split, write the official submission files, score them.

    persuasion benchmark --data DIR --split NAME --out OUTDIR [--system SYSTEM]

Writes OUTDIR/NAME-task-si.txt, NAME-task-tc.txt (one line per span occurrence to classify,
from the gold flc-tc files or else NAME-task-tc-template.out) and NAME-task-flc.txt; when the
split has gold, also metrics.json, technique_table.md and the plots.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from persuasion.corpus import Article, read_articles, span_gold, technique_gold
from persuasion.eval.metrics import (ArticleParts, article_intervals, expected_calibration_error, overlaps_any,
                                     reliability, span_hits, span_shapes)
from persuasion.eval.predictions import Predictions
from persuasion.eval.systems import load_system
from persuasion.model.precision import PRECISIONS
from persuasion.taxonomy import TECHNIQUES


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="PTC folder holding NAME-articles/ (and gold, if any)")
    parser.add_argument("--split", default="dev", help="split name, e.g. dev (default), train, test")
    parser.add_argument("--out", required=True, help="folder for prediction files, metrics.json and plots")
    parser.add_argument("--system", default="default",
                        help="a shipped model ('default', the most accurate, or 'fast'), 'majority', 'tfidf', "
                             "or a checkpoint folder")
    parser.add_argument("--train-split", default="train", help="split the baselines are trained on")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="what the checkpoint computes in (default: auto, bf16 where the hardware has it, else fp32)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    metrics = run_benchmark(args.data, args.split, args.out, args.system, args.train_split, progress=not args.quiet,
                            precision=args.precision)
    if metrics is None:
        print(f"{args.split} has no gold labels: wrote prediction files only to {args.out}")
    else:
        from persuasion.eval.report import headline_table

        print(headline_table(metrics), end="")
        print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def run_benchmark(data_dir, split: str, out_dir, system_name: str = "default", train_split: str = "train",
                  progress: bool = True, precision: str = "auto") -> dict | None:
    from tqdm import tqdm

    articles = read_articles(data_dir, split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    system = load_system(system_name, data_dir, train_split, precision)
    started = time.time()
    with tqdm(total=len(articles), desc=f"{system.name} on {split}", unit="article", file=sys.stderr,
              disable=not progress) as bar:
        predictions = system.predict(articles, bar.update)
    seconds = time.time() - started
    write_submissions(articles, predictions, split, out_dir)
    if not any(article.has_gold or article.si_spans is not None for article in articles):
        return None
    metrics = score(articles, predictions)
    metrics.update(system=system.name, precision=system.precision, split=split, articles=len(articles), seconds=round(seconds, 1))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if metrics.get("tc"):
        from persuasion.eval.report import per_technique_table, save_plots

        (out_dir / "technique_table.md").write_text(per_technique_table(metrics))
        save_plots(metrics, out_dir)
    return metrics


def write_submissions(articles: list[Article], predictions: Predictions, split: str, out_dir: Path) -> None:
    """The official formats: SI `ID start end`, TC and FLC `ID technique start end`, tab-separated."""
    with open(out_dir / f"{split}-task-si.txt", "w", encoding="utf-8") as si_file, \
            open(out_dir / f"{split}-task-tc.txt", "w", encoding="utf-8") as tc_file, \
            open(out_dir / f"{split}-task-flc.txt", "w", encoding="utf-8") as flc_file:
        for article in articles:
            article_id = article.article_id
            for start, end in sorted(predictions.si.get(article_id, [])):
                si_file.write(f"{article_id}\t{start}\t{end}\n")
            answers = predictions.tc.get(article_id, [])
            if len(answers) != len(article.spans):
                raise AssertionError(f"system answered {len(answers)} of {len(article.spans)} TC spans of {article_id}")
            for start, end, technique in answers:
                tc_file.write(f"{article_id}\t{technique}\t{start}\t{end}\n")
            for start, end, technique in sorted(predictions.flc.get(article_id, [])):
                flc_file.write(f"{article_id}\t{technique}\t{start}\t{end}\n")


def headline(metrics: dict) -> dict:
    """The figures tables quote from a metrics dict."""
    return {"si_precision": metrics["si"]["precision"], "si_recall": metrics["si"]["recall"],
            "si_f1": metrics["si"]["f1"], "tc_micro_f1": metrics["tc"]["micro_f1"],
            "tc_macro_f1": metrics["tc"]["macro_f1"], "flc_f1": metrics["flc"]["f1"]}


def score(articles: list[Article], predictions: Predictions) -> dict:
    """Official SI, TC and FLC scores (through the evaluate metric), their intervals over articles, calibration
    and span shapes, for the articles with gold."""
    from persuasion.eval import propaganda_measures  # imports evaluate, seconds: only when scoring

    si_gold = span_gold(articles)
    gold = technique_gold(articles)
    records = propaganda_measures.span_records
    system = [{"article_id": i, "si": records(predictions.si.get(i, [])), "tc": records(predictions.tc.get(i, [])),
               "flc": records(predictions.flc.get(i, []))} for i in si_gold]
    references = [{"article_id": i, "si": records(spans), "techniques": records(gold.get(i, [])),
                   "has_techniques": i in gold} for i, spans in si_gold.items()]
    metrics = propaganda_measures.load().compute(predictions=system, references=references)
    metrics["intervals"] = article_intervals(ArticleParts.of(predictions.si, si_gold, predictions.tc, predictions.flc,
                                                             gold, TECHNIQUES))
    metrics["calibration"] = calibration(articles, predictions, si_gold)
    texts = {article.article_id: article.text for article in articles}
    metrics["span_shapes"] = {"predicted": span_shapes({i: [(s, e) for s, e, _ in predictions.flc.get(i, [])]
                                                         for i in si_gold}, texts),
                              "gold": span_shapes({i: [(s, e) for s, e, _ in gold.get(i, [])] for i in si_gold}, texts)}
    return metrics


def calibration(articles: list[Article], predictions: Predictions, si_gold: dict) -> dict:
    """Expected calibration error (10 bins) of the TC confidences, the span scores and the sentence scores, and
    the reliability rows of the last two (what the model card shows)."""
    result = {}
    if predictions.tc_confidence is not None and any(a.has_gold for a in articles):
        correct = []
        for article in articles:
            remaining = Counter((s.start, s.end, s.technique) for s in article.spans)
            for answer in predictions.tc.get(article.article_id, []):
                correct.append(remaining[answer] > 0)
                remaining[answer] -= 1
        result["tc_ece"] = expected_calibration_error(predictions.tc_confidence, correct)
        result["tc_answers"] = len(correct)
    if predictions.span_scores is not None and any(a.has_gold for a in articles):
        gold = technique_gold(articles)
        scores, hits = [], []
        for article_id, spans in predictions.flc.items():
            if article_id in gold:
                scores.extend(predictions.span_scores[article_id])
                hits.extend(span_hits(spans, gold[article_id]))
        result["span_ece"] = expected_calibration_error(scores, hits)
        result["spans"] = len(scores)
        result["span_reliability"] = reliability(scores, hits)
    if predictions.sentence_scores is not None and si_gold:
        scores, holds_span = [], []
        for article_id, gold in si_gold.items():
            for start, end, score in predictions.sentence_scores.get(article_id, []):
                scores.append(score)
                holds_span.append(overlaps_any(start, end, gold))
        result["sentence_ece"] = expected_calibration_error(scores, holds_span)
        result["sentences"] = len(scores)
        result["sentence_reliability"] = reliability(scores, holds_span)
    return result


def summary_line(metrics: dict) -> str:
    parts = [f"{metrics['system']} on {metrics['split']} ({metrics['articles']} articles, {metrics['seconds']}s):",
             f"SI P {metrics['si']['precision']:.4f} R {metrics['si']['recall']:.4f} F1 {metrics['si']['f1']:.4f}"]
    if "tc" in metrics:
        parts.append(f"| TC micro-F1 {metrics['tc']['micro_f1']:.4f} macro-F1 {metrics['tc']['macro_f1']:.4f}")
        parts.append(f"| FLC F1 {metrics['flc']['f1']:.4f}")
    if "tc_ece" in metrics["calibration"]:
        parts.append(f"| TC ECE {metrics['calibration']['tc_ece']:.4f}")
    if "span_ece" in metrics["calibration"]:
        parts.append(f"| span ECE {metrics['calibration']['span_ece']:.4f}")
    return " ".join(parts)
