"""What averaging trained checkpoints gives: every combination of the members, built and tuned as
`persuasion ensemble` builds them, scored on validation and dev with the official measures.

    python -m persuasion.eval.ensemble --data ../shared/data/ptc-semeval2020 \\
        --member shipped --member "CRF run=runs/minilm-cpu-crf/checkpoint" --out eval/results/ensembles.json

A member alone is scored as its training run tuned it. Combinations are compared by validation
SI F1 + TC micro-F1, as single checkpoints are; dev is only reported.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

from persuasion.errors import PersuasionError


def main(argv: list[str] | None = None) -> int:
    from persuasion.corpus import read_ptc_articles
    from persuasion.eval.ablation import evaluate
    from persuasion.eval.systems import DetectorSystem
    from persuasion.model.detector import SHIPPED_DIR
    from persuasion.train.ensemble import make_ensemble
    from persuasion.train.export import held_out_articles, shared_held_out_ids, validation_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="PTC folder")
    parser.add_argument("--member", action="append", required=True, metavar="NAME=CHECKPOINT",
                        help="a trained checkpoint ('shipped' alone names the shipped model); two or more")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    # NAME=CHECKPOINT, or "shipped" alone
    given = dict(text.split("=", 1) if "=" in text else (text, "shipped") for text in args.member)
    members = {name: SHIPPED_DIR if path == "shipped" else Path(path) for name, path in given.items()}
    if len(members) < 2:
        parser.error("an ensemble needs two or more --member")
    try:
        shared_held_out_ids(list(members.values()))
    except PersuasionError as error:
        raise SystemExit(f"ensemble: {error}") from None
    first = next(iter(members.values()))
    validation, dev = held_out_articles(args.data, first), read_ptc_articles(args.data, "dev")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in range(1, len(members) + 1):
            for names in itertools.combinations(members, size):
                folder = members[names[0]]
                if size > 1:
                    folder = Path(scratch) / str(len(rows))
                    make_ensemble([members[name] for name in names], args.data, folder, log=lambda message: None)
                system = DetectorSystem(folder)
                rows.append({"members": list(names), "train_minutes": validation_report(folder)["train_minutes"],
                             "validation": evaluate(system, validation), "dev": evaluate(system, dev)})
                print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"members": given, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
