"""`persuasion ensemble`: several trained checkpoints as one detector, tuned on their validation split.

    persuasion ensemble runs/a/checkpoint runs/b/checkpoint --data ../shared/data/ptc-semeval2020 --output runs/ab

The members must have held out the same validation articles (one split_seed and validation_fraction),
one tokenizer and one window size. The folder written (see model/ensemble.py) loads with
`Detector.load(folder)` and serves `persuasion detect --model`, `benchmark --system` and the web page;
its decoding is tuned on the averaged scores exactly as `persuasion train` tunes one checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("members", nargs="+",
                        help="two or more checkpoint folders written by `persuasion train` ('shipped': the packaged model)")
    parser.add_argument("--data", required=True, help="PTC folder whose train split holds the validation articles")
    parser.add_argument("--output", required=True, help="a new folder for the ensemble")


def run(args) -> int:
    from persuasion.model.detector import SHIPPED_DIR

    members = [SHIPPED_DIR if member == "shipped" else Path(member) for member in args.members]
    report = make_ensemble(members, args.data, Path(args.output))
    print(f"ensemble of {len(members)} written to {args.output}: validation {json.dumps(report['validation'])}")
    return 0


def make_ensemble(members: list[Path], data_dir, output: Path, log=print) -> dict:
    """Build the ensemble folder, tune it on the members' validation split; returns its validation report."""
    from persuasion.model.detector import Detector
    from persuasion.model.ensemble import build_ensemble
    from persuasion.model.network import save_settings
    from persuasion.train.export import held_out_articles, shared_held_out_ids, validation_report, write_validation_report
    from persuasion.train.tune import hardware, tune_detector

    validation_ids = shared_held_out_ids(members)
    articles = held_out_articles(data_dir, members[0])
    build_ensemble(members, output)
    try:
        detector = Detector.load(output)
        report = {"validation": tune_detector(detector, articles, log),
                  # what the ensemble cost to train: its members one after another
                  "train_minutes": round(sum(validation_report(member)["train_minutes"] for member in members), 2),
                  "members": [str(member) for member in members],
                  "validation_articles": validation_ids, "tuned_on": hardware(detector)}
        save_settings(detector.settings, output)
        write_validation_report(output, report)
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)  # a half-built folder would block the next try
        raise
    return report
