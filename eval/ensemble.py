"""What averaging several checkpoints' span scores gives for SI: a measurement, not a shipped feature.

    python -m persuasion.eval.ensemble --data ../shared/data/ptc-semeval2020 \\
        --member shipped --member crf=runs/minilm-cpu-crf/checkpoint --out eval/results/ensembles.json

Each member scores the shipped model's validation articles and dev; every combination of members
averages p(inside) and p(begin) per token, tunes the span threshold, gap and extension margin on
validation (as training does) and decodes dev with them. The shipped model stays one network: the
recipe that makes it must train within an hour on a 2-core CPU, which fits one member, not several.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from persuasion.errors import PersuasionError


def mean_analyses(member_analyses: list[list]) -> list:
    """Per document, the members' span probabilities averaged token by token (the first member's windows)."""
    from persuasion.model.detector import DocumentAnalysis

    averaged = []
    for documents in zip(*member_analyses):
        first = documents[0]
        if any(d.document.token_ids != first.document.token_ids for d in documents):
            raise PersuasionError("ensemble members tokenise differently; average only checkpoints of one encoder")
        averaged.append(DocumentAnalysis(first.text, first.document, np.mean([d.p_inside for d in documents], axis=0),
                                         np.mean([d.p_begin for d in documents], axis=0), first.windows))
    return averaged


def score_combination(decoder, member_analyses: dict[str, tuple[list, list]], names: tuple[str, ...],
                      validation: list, dev: list) -> dict:
    """SI of the members `names` averaged: tuned on validation, then dev decoded with the tuned choices.

    `decoder` is a detector whose decoding settings the tuning overwrites.
    """
    from persuasion.eval.benchmark import span_gold
    from persuasion.eval.metrics import si_scores
    from persuasion.train.tune import SPAN_EXTENSION_MARGINS, SPAN_GAPS, best_span_threshold

    decoder.settings.sentence_gate = 0.0  # averaged scores carry no sentence scores
    threshold, si = best_span_threshold(decoder, mean_analyses([member_analyses[n][0] for n in names]), validation,
                                        SPAN_GAPS, (0.0,), SPAN_EXTENSION_MARGINS)
    decoder.settings.span_threshold = threshold
    dev_analyses = mean_analyses([member_analyses[n][1] for n in names])
    predicted = {article.article_id: [(start, end) for start, end, _ in decoder._decode_spans(analysis)]
                 for article, analysis in zip(dev, dev_analyses)}
    return {"members": list(names), "span_threshold": threshold, "validation_si_f1": si["f1"],
            "dev_si_f1": si_scores(predicted, span_gold(dev))["f1"]}


def main(argv: list[str] | None = None) -> int:
    from persuasion.corpus import read_ptc_articles
    from persuasion.model.detector import SHIPPED_DIR, Detector
    from persuasion.train.export import held_out_articles, held_out_ids, validation_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="PTC folder")
    parser.add_argument("--member", action="append", required=True, metavar="NAME=CHECKPOINT",
                        help="a checkpoint to average ('shipped' alone names the shipped model); two or more")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    # NAME=CHECKPOINT, or "shipped" alone
    given = {text.split("=", 1)[0]: text.split("=", 1)[1] if "=" in text else "shipped" for text in args.member}
    members = {name: SHIPPED_DIR if path == "shipped" else Path(path) for name, path in given.items()}
    if len(members) < 2:
        parser.error("an ensemble needs two or more --member")
    validation = held_out_articles(args.data, SHIPPED_DIR)
    shipped_ids = held_out_ids(validation_report(SHIPPED_DIR))
    for name, path in members.items():
        if held_out_ids(validation_report(path)) != shipped_ids:
            raise SystemExit(f"ensemble: {name} was validated on other articles than the shipped model; not comparable")
    dev = read_ptc_articles(args.data, "dev")
    detectors = {name: Detector.load(path, device="cpu") for name, path in members.items()}
    member_analyses = {name: (detector._analyse([a.text for a in validation]), detector._analyse([a.text for a in dev]))
                       for name, detector in detectors.items()}
    rows = []
    for size in range(1, len(members) + 1):
        for names in itertools.combinations(members, size):
            # The first member decodes: its span gap and margin are re-tuned, its temperature already shaped its scores.
            rows.append(score_combination(detectors[names[0]], member_analyses, names, validation, dev))
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"members": given, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
