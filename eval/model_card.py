"""MODEL_CARD.md and README's generated blocks, rendered from the shipped models' own files.

    python -m persuasion.eval.model_card measure --data ../shared/data   # baselines and failure modes
    python -m persuasion.eval.model_card write                           # MODEL_CARD.md + README blocks
    python -m persuasion.eval.model_card check                           # exit 1 if either is stale

The text is the Jinja template model_card.md.j2 beside this file. Its numbers come from each shipped
checkpoint (metrics.json, the benchmark's output on dev; validation.json; persuasion.json; config.json
and the safetensors header) and from files that commands write: eval/results/baselines-dev.json and
eval/results/NAME/failure_modes.json (`measure`), eval/results/NAME/speed.json (`persuasion speed
--json`) and eval/results/NAME/long_documents.json (`persuasion speed --long --json`). The SemEval-2020
leaderboard is cited, not measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from math import prod
from pathlib import Path

from persuasion.eval.benchmark import headline
from persuasion.limits import MAX_DOCUMENT_CHARACTERS
from persuasion.model.checkpoint import SHIPPED_CONFIGS, SHIPPED_CONTEXT_CONFIGS, shipped_folders
from persuasion.model.context import CONTEXT_DIR, CONTEXT_SETTINGS_FILE
from persuasion.model.decoding import Decoding

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "eval" / "results"
CARD = ROOT / "MODEL_CARD.md"
README = ROOT / "README.md"
TEMPLATE = Path(__file__).with_name("model_card.md.j2")

# The shipped models, the default first: name -> (checkpoint folder, the config that trains it); the
# default is listed once it is another model than the fast one. Each model's measurements are in eval/results/NAME/.
SHIPPED_MODELS = {name: (folder, SHIPPED_CONFIGS[name]) for name, folder in shipped_folders().items()}
# SemEval-2020 Task 11 winners on the official test set (Da San Martino et al., 2020, Tables 3 and 4).
LEADERBOARD = {"si": ("Hitachi", 0.51551), "tc": ("ApplicaAI", 0.62067)}
# README blocks between `<!-- NAME:start -->` and `<!-- NAME:end -->`, each a macro of the template.
README_BLOCKS = ("results", "speed", "training")
WEAK_TC_F1 = 0.3  # techniques below this TC F1 on dev are named as weak
# The front matter's model-index (the Hugging Face model card spec): per task, the dev figures of `headline`.
DEV_TASKS = (
    {"type": "token-classification", "name": "Span identification (SI)",
     "metrics": [{"type": "precision", "name": "SI precision", "key": "si_precision"},
                 {"type": "recall", "name": "SI recall", "key": "si_recall"},
                 {"type": "f1", "name": "SI F1", "key": "si_f1"}]},
    {"type": "text-classification", "name": "Technique classification (TC)",
     "metrics": [{"type": "f1", "name": "TC micro-F1", "key": "tc_micro_f1"},
                 {"type": "f1", "name": "TC macro-F1", "key": "tc_macro_f1"}]},
    {"type": "token-classification", "name": "Fragment-level classification (FLC)",
     "metrics": [{"type": "f1", "name": "FLC F1", "key": "flc_f1"}]},
)


def read_json(path: Path, required: bool = True) -> dict | None:
    if not path.is_file():
        if required:
            raise SystemExit(f"model_card: {path} is missing; run `persuasion export` or `model_card measure` first")
        return None
    return json.loads(path.read_text())


def parameter_count(folder: Path) -> int:
    """Parameters in a checkpoint's safetensors files (shards included), from their headers alone."""
    from safetensors import safe_open

    count = 0
    for weights in folder.glob("model*.safetensors"):
        with safe_open(str(weights), framework="pt") as file:
            count += sum(prod(file.get_slice(name).get_shape()) for name in file.keys())
    return count


def techniques(metrics: dict) -> list[dict]:
    """One row per technique, the most frequent in dev first: TC on gold spans, FLC on detected ones."""
    tc, flc = metrics["tc"]["per_technique"], metrics["flc"]["per_technique"]
    return [{"name": name, "gold": tc[name]["gold"], "tc_f1": tc[name]["f1"], "flc_f1": flc[name]["f1"]}
            for name in sorted(tc, key=lambda name: (-tc[name]["gold"], name))]


def model_context(name: str, folder: Path, config: str) -> dict:
    metrics = read_json(folder / "metrics.json")
    validation = read_json(folder / "validation.json")
    settings = read_json(folder / "persuasion.json")
    encoder = read_json(folder / "config.json")
    tuned = validation["validation"]
    rows = techniques(metrics)
    return {
        "name": name, "config": config,
        "base_model": settings["base_model"], "techniques": len(settings["techniques"]),
        "layers": encoder.get("num_hidden_layers"), "hidden": encoder.get("hidden_size"),
        "parameters": parameter_count(folder),
        "window_tokens": settings["window_tokens"],
        "technique_tagger": settings["technique_tagger"],
        "repetition_weighed": any(weight > 1 for weight in Decoding.from_dict(settings["decoding"]).repetition_weights),
        "tagger_spans": Decoding.from_dict(settings["decoding"]).tagger_span_threshold is not None,
        "tagger_share": Decoding.from_dict(settings["decoding"]).tagger_technique_mix,
        "recipe": settings.get("recipe", {}),
        "dev": headline(metrics), "dev_intervals": metrics.get("intervals", {}), "dev_articles": metrics["articles"],
        "calibration": metrics.get("calibration"),
        "per_technique": {row["name"]: row for row in rows}, "technique_order": [row["name"] for row in rows],
        "weak": sorted(row["name"] for row in rows if row["tc_f1"] < WEAK_TC_F1),
        "validation": {"si_f1": tuned["si"]["f1"], "tc_micro_f1": tuned["tc_micro_f1"], "flc_f1": tuned["flc_f1"]},
        "context": context_classifier(name, folder, settings, validation),
        "validation_articles": len(validation["validation_articles"]),
        "train_minutes": validation["train_minutes"], "trained_on": validation.get("trained_on", "not recorded"),
        "probes": (read_json(RESULTS / name / "failure_modes.json", required=False) or {}).get("probes"),
        "speed": read_json(RESULTS / name / "speed.json", required=False),
        "long_documents": read_json(RESULTS / name / "long_documents.json", required=False),
    }


def context_classifier(name: str, folder: Path, settings: dict, validation: dict) -> dict | None:
    """What the card says of a model's context classifier (model/context.py), or None without one."""
    if not (folder / CONTEXT_DIR).is_dir():
        return None
    context_settings = read_json(folder / CONTEXT_DIR / CONTEXT_SETTINGS_FILE)
    history = validation["context_classifier"]["history"]
    return {"config": SHIPPED_CONTEXT_CONFIGS.get(name, "RECIPE.yaml"), "base_model": context_settings["base_model"],
            "context_tokens": context_settings["context_tokens"], "parameters": parameter_count(folder / CONTEXT_DIR),
            "mix": settings["decoding"]["context_mix"], "epochs": max(entry["epoch"] for entry in history),
            "detection_mix": Decoding.from_dict(settings["decoding"]).detection_context_mix,
            "train_minutes": validation["context_classifier"]["train_minutes"],
            "tc_micro_f1": max(entry["tc_micro_f1"] for entry in history)}


def context() -> dict:
    return {"models": [model_context(name, folder, config) for name, (folder, config) in SHIPPED_MODELS.items()],
            "baselines": read_json(RESULTS / "baselines-dev.json"), "leaderboard": LEADERBOARD,
            "weak_tc_f1": WEAK_TC_F1, "max_document_characters": MAX_DOCUMENT_CHARACTERS, "dev_tasks": DEV_TASKS}


def template():
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    environment.filters["f"] = lambda value, digits=3: f"{value:.{digits}f}"
    environment.filters["thousands"] = lambda value: f"{value:,.0f}"
    return environment.get_template(TEMPLATE.name)


def replace_between(text: str, name: str, content: str) -> str:
    """Swap what lies between `<!-- name:start -->` and `<!-- name:end -->`."""
    start_marker, end_marker = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start_marker not in text or end_marker not in text:
        raise SystemExit(f"model_card: README.md lacks the {start_marker} ... {end_marker} block")
    start, end = text.index(start_marker) + len(start_marker), text.index(end_marker)
    return text[:start] + "\n" + content.strip("\n") + "\n" + text[end:]


def rendered() -> dict[Path, str]:
    """What MODEL_CARD.md and README.md should hold."""
    card, values = template(), context()
    blocks = card.make_module(values)
    readme = README.read_text()
    for name in README_BLOCKS:
        readme = replace_between(readme, name, str(getattr(blocks, f"{name}_block")()))
    return {CARD: card.render(values), README: readme}


def measure(data: Path) -> None:
    """The measurement files the card reads besides the checkpoints (speed is timed apart, on an idle machine)."""
    from persuasion.eval import failure_modes
    from persuasion.eval.benchmark import run_benchmark

    baselines = {name: headline(run_benchmark(data / "ptc-semeval2020", "dev", Path("/tmp") / f"persuasion-{name}", name,
                                              progress=False)) for name in ("majority", "tfidf")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "baselines-dev.json").write_text(json.dumps(baselines, indent=2) + "\n")
    for name in SHIPPED_MODELS:
        failure_modes.main(["--data", str(data), "--system", name, "--out", str(RESULTS / name / "failure_modes.json")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check MODEL_CARD.md and README's generated blocks.")
    parser.add_argument("action", choices=("measure", "write", "check"))
    parser.add_argument("--data", type=Path, help="measure: the folder holding ptc-semeval2020/ and memes-semeval2021/")
    args = parser.parse_args(argv)
    if args.action == "measure":
        if args.data is None:
            parser.error("measure needs --data")
        measure(args.data)
        return 0
    documents = rendered()
    if args.action == "write":
        for path, text in documents.items():
            path.write_text(text)
        return 0
    stale = [path.name for path, text in documents.items() if not path.is_file() or path.read_text() != text]
    if stale:
        print(f"model_card: {', '.join(stale)} out of date; run `python -m persuasion.eval.model_card write`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
