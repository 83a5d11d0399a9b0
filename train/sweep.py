"""`persuasion sweep`: train variants of one recipe side by side and rank them on validation.

    persuasion sweep configs/sweeps/minilm-gpu.yaml --data ../shared/data/ptc-semeval2020 --parallel 14

A sweep file names the recipe every variant starts from and, per variant, the recipe keys it
changes. Each variant is one `persuasion train` process with its own run folder and log; the
ranking reads the validation.json each run wrote, so it is the same selection `persuasion export`
applies (validation SI F1 + TC micro-F1 + FLC F1 after tuning). A variant whose checkpoint is already
there is kept and one killed mid-run is resumed (`persuasion train --resume`), so a sweep killed
mid-run carries on where it stopped. `--report dev` also benchmarks
every ranked variant on dev, after the ranking and beside it: how far validation's choice carries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from persuasion.errors import PersuasionError
from persuasion.model.checkpoint import read_validation_report, validation_selection
from persuasion.train.trainer import CHECKPOINT_DIR, STATE_DIR
from persuasion.train.recipe import Recipe

SWEEP_KEYS = {"config", "common", "variants"}


def add_arguments(parser) -> None:
    parser.add_argument("sweep", help="YAML sweep file (see configs/sweeps/)")
    parser.add_argument("--data", help="PTC folder; overrides the recipe's data_dir")
    parser.add_argument("--output", help="folder for the variants' run folders and logs (default: runs/sweep-NAME)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="variants trained at once (default 1); on one GPU, as many as its memory and the CPU cores allow")
    parser.add_argument("--report", metavar="SPLIT",
                        help="also benchmark each trained variant on this PTC split (e.g. dev); reported, never ranked on")


def run(args) -> int:
    sweep_path = Path(args.sweep)
    config, common, variants = read_sweep(sweep_path)
    if args.parallel < 1:
        raise PersuasionError(f"--parallel should be 1 or more, got {args.parallel}")
    report_data = args.data or Recipe.from_yaml(config, common).data_dir
    if args.report:
        check_report_split(report_data, args.report)  # before an hour of training, not after
    output = Path(args.output or f"runs/sweep-{sweep_path.stem}")
    output.mkdir(parents=True, exist_ok=True)
    failed = train_variants(config, {name: {**common, **keys} for name, keys in variants.items()}, output,
                            args.data, args.parallel)
    rows = ranking(variants, output, failed)
    if args.report:
        report_split(rows, output, report_data, args.report)
    summary = {"sweep": str(sweep_path), "config": config, "common": common, "parallel": args.parallel, "rows": rows}
    (output / "sweep.json").write_text(json.dumps(summary, indent=1))
    print(ranking_table(rows))
    print(f"wrote {output / 'sweep.json'}")
    return 1 if failed else 0


def read_sweep(path: Path) -> tuple[str, dict, dict[str, dict]]:
    """(recipe path, keys every variant sets, {variant name: its own keys}), each variant's recipe checked
    before anything trains."""
    try:
        sweep = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise PersuasionError(f"{path}: cannot read the sweep file ({error.__class__.__name__})") from None
    if not isinstance(sweep, dict) or set(sweep) - SWEEP_KEYS or not {"config", "variants"} <= set(sweep):
        raise PersuasionError(f"{path}: expected a mapping with config, variants and optionally common")
    common, variants = sweep.get("common") or {}, sweep["variants"]
    if not isinstance(variants, dict) or not variants:
        raise PersuasionError(f"{path}: variants should map each name to the recipe keys it changes")
    for keys in [common, *variants.values()]:
        if not isinstance(keys or {}, dict):
            raise PersuasionError(f"{path}: expected recipe keys (a mapping), got {keys!r}")
    variants = {str(name): keys or {} for name, keys in variants.items()}
    for name, keys in variants.items():
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise PersuasionError(f"{path}: variant name {name!r} should be letters, digits, '-', '_' or '.' (it names a folder)")
        Recipe.from_yaml(sweep["config"], {**common, **keys})  # an unknown key or a wrong type fails here, not an hour in
    return sweep["config"], common, variants


def train_variants(config: str, variants: dict[str, dict], output: Path, data_dir: str | None,
                   parallel: int) -> set[str]:
    """Train every variant (name: all the recipe keys it sets) not already trained, `parallel` at a time;
    the names of those that failed."""
    environment = dict(os.environ)
    # N processes that each start one thread per core oversubscribe the CPU and run slower than one at a time.
    environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    waiting = [name for name in variants if not trained_already(output / name, config, variants[name])]
    for name in variants:
        if name not in waiting:
            print(f"{name}: kept the checkpoint already in {output / name}")
    running: dict[str, subprocess.Popen] = {}
    failed = set()
    while waiting or running:
        while waiting and len(running) < parallel:
            name = waiting.pop(0)
            command = [sys.executable, "-m", "persuasion.cli", "train", "--config", config]
            command += ["--resume" if (output / name / STATE_DIR).is_dir() else "--output", str(output / name)]
            command += ["--data", data_dir] if data_dir else []
            for key, value in variants[name].items():
                command += ["--set", f"{key}={json.dumps(value)}"]  # JSON scalars are YAML, as --set reads them
            with open(output / f"{name}.log", "w", encoding="utf-8") as log:
                running[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
            print(f"{name}: training ({' '.join(command[3:])})")
        time.sleep(1)
        for name, process in list(running.items()):
            if process.poll() is not None:
                del running[name]
                if process.returncode != 0:
                    failed.add(name)
                print(f"{name}: {'failed, see ' + str(output / (name + '.log')) if name in failed else 'done'}")
    return failed


def trained_already(run_dir: Path, config: str, keys: dict) -> bool:
    """Whether a sweep killed earlier finished this variant; a checkpoint of another recipe is an error, not kept."""
    checkpoint = run_dir / CHECKPOINT_DIR
    if not (checkpoint / "validation.json").is_file():
        return False
    trained = Recipe.from_dict(json.loads((checkpoint / "persuasion.json").read_text())["recipe"])
    if trained.training_choices() != Recipe.from_yaml(config, keys).training_choices():
        raise PersuasionError(f"{run_dir}: holds a checkpoint of another recipe than this variant's; "
                              "remove it or sweep into another --output")
    return True


def ranking(variants: dict[str, dict], output: Path, failed: set[str]) -> list[dict]:
    """One row per variant (name: the keys it changes beyond the common ones), best validation selection
    first; failed variants last."""
    rows = []
    for name, keys in variants.items():
        row = {"variant": name, "changes": keys}
        if name in failed:
            rows.append({**row, "failed": True})
            continue
        report = read_validation_report(output / name / CHECKPOINT_DIR)
        rows.append({**row, "train_minutes": report["train_minutes"], "trained_on": report.get("trained_on"),
                     "validation_si_f1": report["validation"]["si"]["f1"],
                     "validation_tc_micro_f1": report["validation"]["tc_micro_f1"],
                     "validation_tc_macro_f1": report["validation"]["tc_macro_f1"],
                     "validation_flc_f1": report["validation"]["flc_f1"],
                     "selection": validation_selection(report)})
    return sorted(rows, key=lambda row: -row.get("selection", float("-inf")))


def check_report_split(data_dir: str, split: str) -> None:
    from persuasion.corpus import read_ptc_articles

    if not any(article.has_gold for article in read_ptc_articles(data_dir, split)):
        raise PersuasionError(f"{data_dir}: the {split} split has no gold labels to report scores on")


def report_split(rows: list[dict], output: Path, data_dir: str, split: str) -> None:
    """Benchmark each trained variant on `split` and add its scores to its row. The rows are already
    ranked on validation; these numbers only show how far that ranking carries to other articles."""
    from persuasion.eval.benchmark import headline, run_benchmark

    for row in rows:
        if row.get("failed"):
            continue
        metrics = run_benchmark(data_dir, split, output / row["variant"] / split,
                                system_name=str(output / row["variant"] / CHECKPOINT_DIR), progress=False)
        scores = headline(metrics)
        row["report"] = {"split": split, **{key: scores[key] for key in ("si_f1", "tc_micro_f1", "tc_macro_f1", "flc_f1")}}
        print(f"{row['variant']}: {split} SI F1 {scores['si_f1']:.4f}, TC micro-F1 {scores['tc_micro_f1']:.4f}")


def ranking_table(rows: list[dict]) -> str:
    split = next((row["report"]["split"] for row in rows if "report" in row), None)
    extra = f" {split} SI F1 | {split} TC micro-F1 |" if split else ""
    lines = ["| variant | changes | minutes | val SI F1 | val TC micro-F1 | val FLC F1 | SI + TC + FLC |" + extra,
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if split else "")]
    for row in rows:
        changes = ", ".join(f"{key}={value}" for key, value in row["changes"].items()) or "(the recipe)"
        if row.get("failed"):
            lines.append(f"| {row['variant']} | {changes} | failed | | | | |" + (" | |" if split else ""))
            continue
        line = (f"| {row['variant']} | {changes} | {row['train_minutes']:.2f} | {row['validation_si_f1']:.4f} "
                f"| {row['validation_tc_micro_f1']:.4f} | {row['validation_flc_f1']:.4f} | {row['selection']:.4f} |")
        if split:
            line += f" {row['report']['si_f1']:.4f} | {row['report']['tc_micro_f1']:.4f} |"
        lines.append(line)
    return "\n".join(lines)
