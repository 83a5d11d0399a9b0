"""What the choices behind a checkpoint are worth: switch each off, re-tune, score.

    python -m persuasion.eval.ablation --data ../shared/data/ptc-semeval2020 --out eval/results/ablation.json
    python -m persuasion.eval.ablation --data ../shared/data/ptc-semeval2020 \
        --trained "per-token technique loss=runs/minilm-tagging/checkpoint" --out eval/results/trained-variants.json

Inference-time choices: each variant changes one setting of the shipped model; where the change
affects span decoding the span threshold is re-tuned on the validation split (never on dev),
exactly as training tunes it. Training-time choices (--trained): other checkpoints trained and
tuned by `persuasion train` on the same validation split, each as its run left it; rows that an
earlier run wrote to --out for checkpoints not named now are kept, since their run folders need
not survive. Every variant is scored on validation and on dev with the official measures.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from persuasion.corpus import Article, read_ptc_articles
from persuasion.eval.benchmark import headline, score
from persuasion.eval.systems import DetectorSystem
from persuasion.train.export import held_out_articles, held_out_ids, validation_report


def evaluate(system: DetectorSystem, articles: list[Article]) -> dict:
    return headline(score(articles, system.predict(articles, lambda done: None)))


def retune_threshold(system: DetectorSystem, validation: list[Article]) -> None:
    from persuasion.train.tune import best_span_threshold

    detector = system.detector
    analyses = detector._analyse([article.text for article in validation])
    detector.settings.span_threshold, _ = best_span_threshold(detector, analyses, validation)


def trained_variants(base: DetectorSystem, checkpoint: Path, others: list[str], validation: list[Article],
                     dev: list[Article]) -> list[dict]:
    """The checkpoint and each `NAME=CHECKPOINT` in `others`, scored as their training runs tuned them."""
    rows = []
    # rsplit: a name may hold "=" (say, a --set override), a checkpoint path hardly ever does
    for name, path in [("as shipped", str(checkpoint))] + [text.rsplit("=", 1) for text in others]:
        path = Path(path)
        report = validation_report(path)
        if held_out_ids(report) != sorted(article.article_id for article in validation):
            raise SystemExit(f"ablation: {path} was validated on other articles than {checkpoint}; not comparable")
        system = base if path == checkpoint else DetectorSystem(path)
        settings = system.detector.settings
        row = {"variant": name, "train_minutes": report["train_minutes"], "recipe": settings.recipe,
               "span_extension_margin": settings.span_extension_margin,
               "validation": evaluate(system, validation), "dev": evaluate(system, dev)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def earlier_rows(path: Path, measured: set[str]) -> list[dict]:
    """Trained-variant rows in an earlier --out for the checkpoints not scored again now (the shipped row is)."""
    if not path.is_file():
        return []
    return [row for row in json.loads(path.read_text())["variants"]
            if row["variant"] not in measured and row["variant"] != "as shipped"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="PTC folder")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--trained", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="compare with another trained checkpoint instead of switching inference choices")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if any("=" not in text for text in args.trained):
        parser.error("--trained expects NAME=CHECKPOINT")

    base = DetectorSystem(args.checkpoint)
    checkpoint = args.checkpoint or Path(__file__).resolve().parent.parent / "model" / "shipped"
    validation = held_out_articles(args.data, checkpoint)
    dev = read_ptc_articles(args.data, "dev")
    if args.trained:
        shipped_row, *others = trained_variants(base, checkpoint, args.trained, validation, dev)
        rows = [shipped_row, *earlier_rows(args.out, {row["variant"] for row in others}), *others]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint or "shipped"), "variants": rows}, indent=2) + "\n")
        return 0
    shipped = base.detector.settings
    # The recipe's stride if tuning chose a denser one, else a denser one (~1.5x the compute).
    recipe_stride = shipped.recipe.get("inference_stride", shipped.window_stride)
    other_stride = recipe_stride if recipe_stride != shipped.window_stride else shipped.window_stride * 2 // 3

    variants = [
        ("as shipped", {}, False, False),
        ("no joining of span runs across small gaps (span_gap_tokens 0)", {"span_gap_tokens": 0}, True, False),
        ("no Repetition boost (repetition_boost 1)", {"repetition_boost": 1.0}, False, False),
        (f"inference windows every {other_stride} tokens instead of {shipped.window_stride}",
         {"window_stride": other_stride}, True, False),
        ("dynamic int8 weights", {}, False, True),
    ]
    if shipped.span_extension_margin:
        variants.insert(1, ("no growing of spans below the span threshold (span_extension_margin 0)",
                            {"span_extension_margin": 0.0}, True, False))
    if shipped.span_crf:
        variants.insert(1, ("span tags from the tagger's scores alone, without the CRF transitions (span_crf false)",
                            {"span_crf": False}, True, False))
    if shipped.technique_tag_mix:
        variants.insert(1, ("token scores from the span tagger alone, without the technique tagger (technique_tag_mix 0)",
                            {"technique_tag_mix": 0.0}, True, False))
    if shipped.sentence_gate:
        variants.insert(1, ("no sentence gate (sentence_gate 0)", {"sentence_gate": 0.0}, True, False))
    results = []
    for name, changes, retune, quantize in variants:
        system = DetectorSystem(args.checkpoint, quantize=quantize) if quantize else copy.copy(base)
        if not quantize:
            system.detector = copy.copy(base.detector)
        system.detector.settings = copy.deepcopy(shipped)
        for key, value in changes.items():
            setattr(system.detector.settings, key, value)
        if retune:
            retune_threshold(system, validation)
        row = {"variant": name, "span_threshold": system.detector.settings.span_threshold,
               "validation": evaluate(system, validation), "dev": evaluate(system, dev)}
        results.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint or "shipped"), "variants": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
