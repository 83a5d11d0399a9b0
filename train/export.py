"""`persuasion export`: make a trained checkpoint the shipped model, with the dev metrics it earns.

    persuasion export runs/minilm-cpu/checkpoint --data ../shared/data/ptc-semeval2020

Copies the checkpoint (fp16 safetensors, tokenizer, config, persuasion.json with the label map,
thresholds and recipe, validation.json) into model/shipped/, then runs the benchmark on dev with
it and keeps the metrics.json the benchmark wrote. A checkpoint replaces the shipped one only
if it scores better on the same validation split, by more than a tie (the dev numbers never
decide), unless --force. An ensemble folder (`persuasion ensemble`) is exported with its members.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from persuasion.errors import PersuasionError

# A smaller gain is a tie: one of the validation split's ~660 gold fragments classified differently
# already moves TC micro-F1 by ~0.0015. A tie keeps the shipped model (each new one adds tens of MB to history).
MIN_GAIN = 0.002
CHECKPOINT_FILES = ("config.json", "model.safetensors", "persuasion.json", "validation.json",
                    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint folder written by `persuasion train`")
    parser.add_argument("--data", required=True, help="PTC folder; its dev split is benchmarked")
    parser.add_argument("--split", default="dev", help="split to benchmark (default: dev)")
    parser.add_argument("--force", action="store_true", help="replace the shipped model even if not better")
    parser.add_argument("--target", help="export somewhere else than the package's model/shipped/ (for trials)")


def run(args) -> int:
    from persuasion.model.detector import SHIPPED_DIR

    source = Path(args.checkpoint)
    target = Path(args.target) if args.target else SHIPPED_DIR
    new_report = validation_report(source)
    if (target / "validation.json").is_file() and not args.force:
        shipped_report = validation_report(target)
        if held_out_ids(new_report) != held_out_ids(shipped_report):
            raise PersuasionError(f"{source}: validated on other articles than the shipped model, so the scores do "
                                  "not compare; train with the same seed and validation_fraction, or pass --force")
        new_selection, shipped_selection = validation_selection(new_report), validation_selection(shipped_report)
        if new_selection < shipped_selection + MIN_GAIN:
            raise PersuasionError(f"{source}: validation SI F1 + TC micro-F1 {new_selection:.4f} is not above the "
                                  f"shipped model's {shipped_selection:.4f} by {MIN_GAIN}; pass --force to replace it anyway")
    export(source, target)
    from persuasion.eval.benchmark import run_benchmark, summary_line

    system = "shipped" if target == SHIPPED_DIR else str(target)
    metrics = run_benchmark(args.data, args.split, target / "benchmark", system_name=system)
    shutil.copy(target / "benchmark" / "metrics.json", target / "metrics.json")
    shutil.rmtree(target / "benchmark")  # the submission files and plots stay out of the package
    print(summary_line(metrics))
    print(f"exported {source} to {target}")
    return 0


def validation_report(checkpoint: Path) -> dict:
    """The validation.json `persuasion train` wrote beside a checkpoint."""
    path = checkpoint / "validation.json"
    if not path.is_file():
        raise PersuasionError(f"{checkpoint}: no validation.json; give a checkpoint folder written by `persuasion train`")
    return json.loads(path.read_text())


def write_validation_report(checkpoint: Path, report: dict) -> None:
    """Write the validation.json that `validation_report` reads back (train, tune and ensemble write it)."""
    (Path(checkpoint) / "validation.json").write_text(json.dumps(report, indent=2) + "\n")


def validation_selection(report: dict) -> float:
    """What model selection maximises: SI F1 + TC micro-F1 on the validation split, after tuning."""
    return report["validation"]["si"]["f1"] + report["validation"]["tc_micro_f1"]


def held_out_ids(report: dict) -> list[str]:
    """The validation split's article ids, sorted: two reports compare only if these are equal."""
    return sorted(report["validation_articles"])


def shared_held_out_ids(checkpoints: list[Path]) -> list[str]:
    """The validation article ids every checkpoint held out; an error if one held out others."""
    first = held_out_ids(validation_report(checkpoints[0]))
    for checkpoint in checkpoints[1:]:
        if held_out_ids(validation_report(checkpoint)) != first:
            raise PersuasionError(f"{checkpoint}: validated on other articles than {checkpoints[0]}, so their scores "
                                  "do not compare; train them with the same split_seed and validation_fraction")
    return first


def held_out_articles(data_dir: str | Path, checkpoint: Path) -> list:
    """The train articles `persuasion train` held out for this checkpoint (listed in its validation.json)."""
    from persuasion.corpus import read_ptc_articles

    held_out = set(held_out_ids(validation_report(checkpoint)))
    articles = [article for article in read_ptc_articles(data_dir, "train") if article.article_id in held_out]
    if len(articles) != len(held_out):
        raise PersuasionError(f"{data_dir}: holds {len(articles)} of the {len(held_out)} validation articles of "
                              f"{checkpoint}; give the PTC folder it was trained on")
    return articles


def export(source: Path, target: Path) -> None:
    from persuasion.model.ensemble import MEMBERS_DIR, is_ensemble

    ensemble = is_ensemble(source)  # its weights live in its members' folders
    required = ("persuasion.json",) if ensemble else ("config.json", "model.safetensors", "persuasion.json")
    missing = [name for name in required if not (source / name).is_file()]
    if missing:
        raise PersuasionError(f"{source}: not a persuasion checkpoint (missing {', '.join(missing)})")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    if ensemble:
        shutil.copytree(source / MEMBERS_DIR, target / MEMBERS_DIR)
