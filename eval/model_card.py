"""MODEL_CARD.md and README's results table, written from the committed measurements only.

    python -m persuasion.eval.model_card measure --data ../shared/data   # runs the baselines and probes
    python -m persuasion.eval.model_card write                           # MODEL_CARD.md + README table
    python -m persuasion.eval.model_card check                           # exit 1 if either is stale

Sources: model/shipped/metrics.json (written by `persuasion export` through the benchmark),
model/shipped/validation.json and persuasion.json (written by `persuasion train`), and
eval/results/*.json (written by `measure`). No number is typed in by hand, except the SemEval
leaderboard, which is cited.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from persuasion.eval.benchmark import headline
from persuasion.train.export import MIN_GAIN, validation_selection

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "model" / "shipped"
RESULTS = ROOT / "eval" / "results"
CARD = ROOT / "MODEL_CARD.md"
README = ROOT / "README.md"

# SemEval-2020 Task 11 official test-set winners (Da San Martino et al., 2020, Table 3 and 4).
LEADERBOARD = {"si": ("Hitachi", 0.51551), "tc": ("ApplicaAI", 0.62067)}
# This project's must-reach targets on dev (issue 3).
TARGETS = {"si_f1": 0.43, "tc_micro_f1": 0.55}


def load(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"model_card: {path} is missing; run `persuasion export` and `model_card measure` first")
    return json.loads(path.read_text())


def load_optional(name: str) -> dict | None:
    """A measurement in eval/results that only some sessions make (a GPU sweep, say); None if not made."""
    path = RESULTS / name
    return load(path) if path.is_file() else None


def measure(data: Path, trained: list[str]) -> None:
    from persuasion.eval import ablation, failure_modes
    from persuasion.eval.benchmark import run_benchmark

    RESULTS.mkdir(parents=True, exist_ok=True)
    baselines = {}
    for name in ("majority", "tfidf"):
        metrics = run_benchmark(data / "ptc-semeval2020", "dev", Path("/tmp") / f"persuasion-{name}", name,
                                progress=False)
        baselines[name] = headline(metrics)
    (RESULTS / "baselines-dev.json").write_text(json.dumps(baselines, indent=2) + "\n")
    failure_modes.main(["--data", str(data), "--out", str(RESULTS / "failure_modes.json")])
    ablation.main(["--data", str(data / "ptc-semeval2020"), "--out", str(RESULTS / "ablation.json")])
    if trained:
        ablation.main(["--data", str(data / "ptc-semeval2020"), "--out", str(RESULTS / "trained-variants.json")]
                      + [argument for variant in trained for argument in ("--trained", variant)])


def results_table() -> str:
    shipped = headline(load(SHIPPED / "metrics.json"))
    baselines = load(RESULTS / "baselines-dev.json")
    rows = [("persuasion (shipped, MiniLM-L6, 22.7M parameters)", shipped),
            ("TF-IDF + logistic regression baseline", baselines["tfidf"]),
            ("majority-class baseline", baselines["majority"])]
    lines = ["| system (PTC dev, 75 articles) | SI P | SI R | SI F1 | TC micro-F1 | TC macro-F1 | FLC F1 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, scores in rows:
        lines.append(f"| {name} | {scores['si_precision']:.3f} | {scores['si_recall']:.3f} | {scores['si_f1']:.3f} | "
                     f"{scores['tc_micro_f1']:.3f} | {scores['tc_macro_f1']:.3f} | {scores['flc_f1']:.3f} |")
    si_team, si_f1 = LEADERBOARD["si"]
    tc_team, tc_f1 = LEADERBOARD["tc"]
    lines.append(f"| SemEval-2020 winners, official **test** set ({si_team} SI, {tc_team} TC; ensembles of large "
                 f"models) | | | {si_f1:.3f} | {tc_f1:.3f} | | |")
    return "\n".join(lines) + "\n"


def speed_table() -> str:
    speed = load(RESULTS / "speed.json")
    lines = [f"| system ({speed['documents']} dev articles, {speed['tokens']:,} tokens, {speed['threads']} CPU threads) | "
             "seconds | tokens/s | vs reference | peak memory increase (MiB) |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in speed["systems"] + [speed["long_document"]]:
        ratio = f"{row['ratio_to_reference']:.2f}x" if row["ratio_to_reference"] else ""
        lines.append(f"| {row['system']} | {row['seconds']:.1f} | {row['tokens_per_second']:,.0f} | {ratio} | "
                     f"{row['peak_increase_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def replace_between(text: str, name: str, content: str) -> str:
    """Swap what lies between `<!-- name:start -->` and `<!-- name:end -->`."""
    start_marker, end_marker = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    start, end = text.index(start_marker) + len(start_marker), text.index(end_marker)
    return text[:start] + "\n" + content + text[end:]


def readme_text() -> str:
    readme = replace_between(README.read_text(), "results", results_table())
    return replace_between(readme, "speed", speed_table())


def technique_rows(metrics: dict) -> str:
    tc, flc = metrics["tc"]["per_technique"], metrics["flc"]["per_technique"]
    lines = ["| technique | dev spans | TC precision | TC recall | TC F1 | FLC F1 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in sorted(tc, key=lambda n: (-tc[n]["gold"], n)):
        s = tc[name]
        lines.append(f"| {name} | {s['gold']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | "
                     f"{flc[name]['f1']:.3f} |")
    return "\n".join(lines)


def probe_rows(probes: dict) -> str:
    lines = ["| input | documents | SI F1 | TC micro-F1 | TC macro-F1 | FLC F1 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in probes.items():
        lines.append(f"| {name} | {s['documents']} | {s['si_f1']:.3f} | {s['tc_micro_f1']:.3f} | "
                     f"{s['tc_macro_f1']:.3f} | {s['flc_f1']:.3f} |")
    return "\n".join(lines)


def variant_rows(variants: list[dict], first_column: str, detail: tuple[str, str]) -> str:
    """One row per variant: its `detail` field (header, key), then validation and dev scores."""
    header, key = detail
    lines = [f"| {first_column} | {header} | validation SI F1 | validation TC micro-F1 | dev SI F1 | dev TC micro-F1 | "
             "dev TC macro-F1 | dev FLC F1 |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in variants:
        v, d = row["validation"], row["dev"]
        lines.append(f"| {row['variant']} | {row[key]} | {v['si_f1']:.3f} | {v['tc_micro_f1']:.3f} | "
                     f"{d['si_f1']:.3f} | {d['tc_micro_f1']:.3f} | {d['tc_macro_f1']:.3f} | {d['flc_f1']:.3f} |")
    return "\n".join(lines)


def technique_tagging_note(recipe: dict, settings: dict) -> str:
    weight = recipe.get("technique_tagging_weight", 0.0)
    if not weight:
        return ""
    note = (f"- A third head tags each token with the techniques whose spans cover it (14 binary losses,\n"
            f"  weight {weight}). It tells the encoder what kind of fragment a token belongs to, which the B/I/O\n"
            f"  tags alone do not.")
    if not settings.get("technique_tagger", False):
        return note + " It is used in training only and dropped from the checkpoint.\n"
    mix = settings.get("technique_tag_mix", 0.0)
    use = (f"a token's score\n  is {1 - mix:g} p(inside) + {mix:g} p(some technique covers it), the mix fitted on validation: a second\n"
           f"  opinion on where spans are, from a head trained on another view of the same gold."
           if mix else "validation tuning found that mixing its p(some technique covers the token) into the\n"
                       "  token scores did not pay, so it is unused.")
    return note + f" It is kept in the checkpoint; at inference {use}\n"


def span_head_note(recipe: dict) -> str:
    if not recipe.get("span_crf", False):
        return f"O/B/I loss weights 1/{recipe['span_weight']}/{recipe['span_weight']}"
    return ("a linear-chain CRF over them trained on the likelihood of each window's whole tag\n"
            "  sequence; p(inside) is the CRF's marginal p(B) + p(I), averaged over the windows that see a token")


def span_decoding_note(settings: dict) -> str:
    threshold, margin = settings["span_threshold"], settings.get("span_extension_margin", 0.0)
    score = "score (below)" if settings.get("technique_tag_mix", 0.0) else "p(inside)"
    if not margin:
        return (f"decoding takes runs of tokens whose {score} passes a threshold tuned on validation\n"
                f"  ({threshold}), splits a run where p(begin) dominates, and grows spans to whole words.")
    return (f"decoding takes runs of tokens whose {score} passes {threshold - margin:.3g} and keeps those\n"
            f"  that reach {threshold} somewhere (hysteresis: the tagger is surest inside a fragment, so a span\n"
            f"  grows from its peak over weaker neighbours; both thresholds tuned on validation), splits a run\n"
            f"  where p(begin) dominates, and grows spans to whole words.")


def budget_note(recipe: dict, history: list[dict]) -> str:
    """Why a run whose time budget differs from the config's still trained what the config trains (else nothing)."""
    from persuasion.train.recipe import Recipe

    budget = Recipe.from_yaml(ROOT / "configs" / "minilm-cpu.yaml").max_minutes
    if recipe["max_minutes"] == budget:
        return ""
    epochs = max(entry["epoch"] for entry in history)
    return (f",\nwith the config's {budget:g}-minute budget lifted (`--set max_minutes={recipe['max_minutes']:g}`) because the host "
            f"trained slower that day than\nwhen the same recipe and seed first trained (\"the previous shipped model\" "
            f"below). A budget only\nstops training early; this run trained {epochs} of {recipe['epochs']} epochs")


def sentence_head_note(recipe: dict, settings: dict) -> str:
    weight = recipe.get("sentence_loss_weight", 0.0)
    if not weight:
        return ""
    gate = settings.get("sentence_gate", 0.0)
    use = (f"At inference a token's score is p(inside) times p(sentence) ** {gate:g}, the exponent fitted on\n"
           f"  validation, so the tagger's hits in sentences the sentence head finds clean fade out."
           if gate else "Validation tuning found that gating the token scores by it did not pay, so it is unused.")
    return (f"- A third head scores whether each sentence holds a technique, from its mean-pooled tokens (binary\n"
            f"  loss, weight {weight}; the sentence level of the multi-granularity network of Da San Martino et al.,\n"
            f"  2019). {use}\n")


def weight_selection_note(recipe: dict, history: list[dict]) -> str:
    """Which weights were candidates in training and which of them ship, read from the validation history."""
    first, members = recipe.get("average_from_epoch", 0), recipe.get("soup_members", 1)
    if not first and members <= 1:
        return ""
    note = ""
    if first:
        note += (f"- From epoch {first} on, a running mean of the weights (one sample after every step) is validated\n"
                 f"  beside the last weights each epoch, and either may be selected (stochastic weight averaging).\n")
    if members > 1:
        note += (f"- {members} fine-tunes start from the same weights and differ only in how the windows are cut and\n"
                 f"  shuffled and in dropout. The mean of their selected weights (a uniform model soup) competes\n"
                 f"  with each of them on validation.\n")
    chosen = max(history, key=lambda entry: entry["selection"])  # the loop keeps the first best, as max does
    if chosen["weights"] == "soup":
        shipped = f"the mean of the {chosen['members']} fine-tunes' weights"
    elif chosen["weights"] == "averaged":
        shipped = f"the mean over epochs {first} to {chosen['epoch']}"
    else:
        shipped = f"the last weights of epoch {chosen['epoch']}"
    if "member" in chosen:
        shipped += f" of fine-tune {chosen['member'] + 1}"
    return note + f"- The shipped weights are {shipped}.\n"


def trained_section() -> str:
    """Training-time choices, when `model_card measure --trained` compared checkpoints (else nothing)."""
    trained = load_optional("trained-variants.json")
    if trained is None:
        return ""
    variants = trained["variants"]
    return f"""
Training-time choices cannot be switched off after training; `model_card measure --trained NAME=CHECKPOINT`
scores other checkpoints, trained by `persuasion train` and tuned on the same validation split, beside
the shipped one (written to `eval/results/trained-variants.json`). `persuasion export` replaces the
shipped model only when validation SI F1 + TC micro-F1 rises by at least {MIN_GAIN}; smaller
differences are ties, within what one fragment classified differently moves. Training minutes are
wall-clock on the 2-core machine, validation and tuning included; a run that shared the CPU with
other jobs took longer than it would alone.{decoding_caveat(variants)}

{variant_rows(variants, "checkpoint", ("training minutes", "train_minutes"))}
{seed_note(variants)}"""


def sweep_section() -> str:
    """Recipe changes trained side by side by `persuasion sweep` (else nothing)."""
    from persuasion.train.recipe import Recipe
    from persuasion.train.sweep import ranking_table

    sweep = load_optional("gpu-sweep.json")
    if sweep is None:
        return ""
    rows = sweep["rows"]
    seeds_only = [row for row in rows if set(row["changes"]) <= {"seed"}]
    changed = [row for row in rows if row not in seeds_only]
    best_seed = max(row["selection"] for row in seeds_only)
    verdict = ("No change beats the unchanged recipe's better seed, so none replaces the shipped recipe."
               if all(row["selection"] <= best_seed for row in changed) else
               "Some changes beat the unchanged recipe's better seed; train them on the CPU to compare with the shipped model.")
    recipe_seed = Recipe.from_yaml(ROOT / sweep["config"]).seed
    common = ", ".join(f"{key}={value}" for key, value in sweep["common"].items())
    return f"""
### Recipe variants swept on a GPU

`persuasion sweep {sweep['sweep']} --parallel {sweep['parallel']}` trains variants of `{sweep['config']}` side by
side and ranks them on the same validation split (results in `eval/results/gpu-sweep.json`), here on
{sweep['device']}, with {common} in every variant. How it ran: {sweep['provenance']}.
GPU arithmetic differs from the CPU's, so these rows compare with each other, not with the CPU-trained rows above.

{ranking_table(rows)}

Validation SI F1 + TC micro-F1 ranges from {min(row['selection'] for row in rows):.3f} to {max(row['selection'] for row in rows):.3f}; the unchanged recipe
gives {' and '.join(f"{row['selection']:.3f}" for row in seeds_only)} with training seeds {' and '.join(str(row['changes'].get('seed', recipe_seed)) for row in seeds_only)}. {verdict}
"""


def seeds_section() -> str:
    """The shipped recipe trained with many seeds by `persuasion sweep --report dev` (else nothing): how far the
    seed alone moves the scores, and how far validation's choice of seed carries to dev."""
    import numpy as np

    from persuasion.train.sweep import ranking_table

    sweep = load_optional("gpu-seeds.json")
    if sweep is None:
        return ""
    rows = sweep["rows"]
    columns = {"validation SI F1 + TC micro-F1": [row["selection"] for row in rows],
               "validation SI F1": [row["validation_si_f1"] for row in rows],
               "dev SI F1": [row["report"]["si_f1"] for row in rows],
               "dev TC micro-F1": [row["report"]["tc_micro_f1"] for row in rows]}
    spread = "\n".join(f"| {name} | {np.mean(values):.3f} | {np.std(values, ddof=1):.3f} | {min(values):.3f} | {max(values):.3f} |"
                       for name, values in columns.items())
    selection = columns["validation SI F1 + TC micro-F1"]
    carry = {name: np.corrcoef(selection, columns[name])[0, 1] for name in ("dev SI F1", "dev TC micro-F1")}
    best = rows[0]
    shipped = load(SHIPPED / "validation.json")
    reaching = sum(value >= TARGETS["si_f1"] for value in columns["dev SI F1"])
    return f"""
### Training seeds of the shipped recipe

`persuasion sweep {sweep['sweep']} --parallel {sweep['parallel']} --report dev` trains `{sweep['config']}` unchanged
but for its training seed, ranks the seeds on the validation split and then scores each on dev
(results in `eval/results/gpu-seeds.json`), here on {sweep['device']}. How it ran: {sweep['provenance']}.

{ranking_table(rows)}

| over {len(rows)} seeds | mean | standard deviation | lowest | highest |
| --- | ---: | ---: | ---: | ---: |
{spread}

Across seeds, validation SI F1 + TC micro-F1 correlates {carry['dev SI F1']:+.2f} with dev SI F1 and
{carry['dev TC micro-F1']:+.2f} with dev TC micro-F1 (Pearson, {len(shipped['validation_articles'])} validation articles): {'validation barely predicts which seed does better on unseen articles' if max(carry.values()) < 0.5 else 'validation largely predicts which seed does better on unseen articles'}.
The best seed on validation ({best['variant']}, {best['selection']:.3f}) is {(best['selection'] - np.mean(selection)) / np.std(selection, ddof=1):.1f} standard deviations above the seeds' mean
(the highest of {len(rows)} normal draws is expected about {expected_highest(len(rows)):.1f} above); on dev it scores SI F1 {best['report']['si_f1']:.3f} and TC micro-F1
{best['report']['tc_micro_f1']:.3f}, against the seeds' means of {np.mean(columns['dev SI F1']):.3f} and {np.mean(columns['dev TC micro-F1']):.3f}.{repeatable_note(rows)}
{reaching} of {len(rows)} seeds reach the target of dev SI F1 ≥ {TARGETS['si_f1']}.
{shipped_seed_verdict(best, shipped)}
"""


def tagger_section() -> str:
    """The seeds sweep again with the technique tagger kept and its mix tuned, paired seed by seed with the
    sweep without it (else nothing)."""
    import numpy as np

    with_tagger, without = load_optional("gpu-seeds-tagger.json"), load_optional("gpu-seeds.json")
    if with_tagger is None or without is None:
        return ""
    before = {row["variant"]: row for row in without["rows"]}
    pairs = [(before[row["variant"]], row) for row in sorted(with_tagger["rows"], key=lambda row: row["changes"]["seed"])]
    # TC micro-F1 is scored on gold spans, so no span decoding moves it; equal TC means equal weights and stride.
    same_weights = sum(old["validation_tc_micro_f1"] == new["validation_tc_micro_f1"] for old, new in pairs)
    lines = ["| seed | mix chosen on validation | validation SI F1 without → with | dev SI F1 without → with |",
             "| --- | ---: | ---: | ---: |"]
    for old, new in pairs:
        lines.append(f"| {new['changes']['seed']} | {new['technique_tag_mix']:g} | {old['validation_si_f1']:.4f} → "
                     f"{new['validation_si_f1']:.4f} | {old['report']['si_f1']:.4f} → {new['report']['si_f1']:.4f} |")
    validation_gain = [new["validation_si_f1"] - old["validation_si_f1"] for old, new in pairs]
    dev_gain = np.array([new["report"]["si_f1"] - old["report"]["si_f1"] for old, new in pairs])
    mixed = sum(new["technique_tag_mix"] > 0 for _, new in pairs)
    reaching = [sum(row["report"]["si_f1"] >= TARGETS["si_f1"] for row in rows)
                for rows in (without["rows"], with_tagger["rows"])]
    return f"""
### The technique tagger as a second span scorer

The per-token technique tagger (see the recipe) is trained anyway; kept in the checkpoint, it gives a
second estimate of whether a token lies in a span, which the tuning step may mix into the span tagger's
p(inside). `persuasion sweep {with_tagger['sweep']} --parallel {with_tagger['parallel']} --report dev` ran again with the tagger kept
(results in `eval/results/gpu-seeds-tagger.json`), on {with_tagger['device']}. How it ran: {with_tagger['provenance']}.
Keeping the tagger changes no weight, so each row pairs one network decoded without and with it:
{same_weights} of {len(pairs)} seeds have the same validation TC micro-F1 as before (the others chose another inference stride).

{chr(10).join(lines)}

Validation chose a mix above 0 for {mixed} of {len(pairs)} seeds; over all {len(pairs)}, validation SI F1 rose by
{np.mean(validation_gain):+.4f} on average. On dev, reported only, SI F1 changed by {dev_gain.mean():+.4f} on average (standard deviation
{dev_gain.std(ddof=1):.4f}): higher for {int((dev_gain > 1e-9).sum())} seeds, lower for {int((dev_gain < -1e-9).sum())}, unchanged for {int((np.abs(dev_gain) <= 1e-9).sum())}.
Seeds reaching dev SI F1 ≥ {TARGETS['si_f1']}: {reaching[0]} of {len(pairs)} without the tagger, {reaching[1]} with it.
"""


def expected_highest(draws: int) -> float:
    """Blom's approximation of the expected largest of `draws` standard normal draws, in standard deviations."""
    from statistics import NormalDist

    return NormalDist().inv_cdf((draws - 0.375) / (draws + 0.25))


def shipped_seed_verdict(best: dict, shipped: dict) -> str:
    """Why the best seed on validation is, or is not, the shipped model."""
    recipe = load(SHIPPED / "persuasion.json")["recipe"]
    if shipped.get("trained_on") == best["trained_on"] and recipe["seed"] == best["changes"]["seed"]:
        return "The best seed on validation is the shipped model; dev decided nothing."
    shipped_selection = validation_selection(shipped)
    if shipped_selection >= best["selection"]:
        return (f"The shipped model (seed {recipe['seed']}, trained on {shipped.get('trained_on', 'the 2-core CPU')}) scores "
                f"{shipped_selection:.3f} on validation, at least as much as the best GPU seed.")
    verdict = (f"The shipped model (seed {recipe['seed']}, trained on {shipped.get('trained_on', 'the 2-core CPU')}) scores {shipped_selection:.3f} on validation, "
               f"below the best GPU\nseed, and stays shipped: the shipped recipe has to train the shipped model on this "
               f"2-core CPU within an hour\nand reproduce its validation scores there (issue 3), and a GPU run's weights "
               f"are not what the recipe gives on the CPU.")
    on_cpu = [row for row in (load_optional("trained-variants.json") or {"variants": []})["variants"]
              if "recipe" in row and row["recipe"]["seed"] == best["changes"]["seed"]
              and learned_choices(row["recipe"]) == learned_choices(recipe)]
    if on_cpu:  # TC micro-F1 is scored on gold spans, so no decoding choice moves it: it compares across tunings
        verdict += (f" Seed {best['changes']['seed']} trained on the CPU (\"{on_cpu[0]['variant']}\" above) scored validation "
                    f"TC micro-F1\n{on_cpu[0]['validation']['tc_micro_f1']:.3f}, against {best['validation_tc_micro_f1']:.3f} "
                    f"for its GPU run.")
    return verdict


def repeatable_note(rows: list[dict]) -> str:
    """Whether seeds that the earlier GPU sweep also trained scored the same again (GPU training repeats)."""
    earlier = load_optional("gpu-sweep.json")
    if earlier is None:
        return ""
    from persuasion.train.recipe import Recipe

    recipe_seed = Recipe.from_yaml(ROOT / earlier["config"]).seed
    before = {row["changes"].get("seed", recipe_seed): row["selection"] for row in earlier["rows"]
              if set(row["changes"]) <= {"seed"}}
    again = sorted((row for row in rows if row["changes"]["seed"] in before), key=lambda row: row["changes"]["seed"])
    if not again:
        return ""
    same = all(abs(row["selection"] - before[row["changes"]["seed"]]) < 1e-9 for row in again)
    seeds = " and ".join(str(row["changes"]["seed"]) for row in again)
    return (f" Seed{'s' if len(again) > 1 else ''} {seeds} scored {'exactly as' if same else 'differently from'} in the sweep"
            f" above, {'so training on a GPU here repeats' if same else 'so training on a GPU here does not repeat exactly'}.")


def ensemble_section() -> str:
    """Checkpoints averaged by `persuasion ensemble`, every combination measured by eval/ensemble.py (else nothing)."""
    ensembles = load_optional("ensembles.json")
    if ensembles is None:
        return ""
    rows = ensembles["rows"]

    def selection(row: dict) -> float:
        return row["validation"]["si_f1"] + row["validation"]["tc_micro_f1"]

    alone = {row["members"][0]: row for row in rows if len(row["members"]) == 1}
    best = max((row for row in rows if len(row["members"]) > 1), key=selection)
    best_member = max((alone[name] for name in best["members"]), key=selection)
    members = " ".join(f"--member {name}" if checkpoint == "shipped" else f'--member "{name}={checkpoint}"'
                       for name, checkpoint in ensembles["members"].items())
    shipped_now = validation_selection(load(SHIPPED / "validation.json"))
    # Rows measured with an earlier shipped model say so, rather than pass for the model shipped now.
    stale = "shipped" in alone and abs(selection(alone["shipped"]) - shipped_now) > 1e-9
    names = {"shipped": "previous shipped"} if stale else {}

    def named(row: dict) -> str:
        return " + ".join(names.get(member, member) for member in row["members"])

    table = ["| members | training minutes | validation SI F1 | validation TC micro-F1 | SI + TC | dev SI F1 | "
             "dev TC micro-F1 | dev FLC F1 |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    table += [f"| {named(row)} | {row['train_minutes']:.2f} | {row['validation']['si_f1']:.3f} | "
              f"{row['validation']['tc_micro_f1']:.3f} | {selection(row):.3f} | {row['dev']['si_f1']:.3f} | "
              f"{row['dev']['tc_micro_f1']:.3f} | {row['dev']['flc_f1']:.3f} |" for row in rows]
    table = "\n".join(table)
    previous = ("\n\"previous shipped\" is the model shipped when these rows were measured; the model shipped now\n"
                f"scores {shipped_now:.3f} on validation SI F1 + TC micro-F1.") if stale else ""
    if selection(best) > shipped_now:
        verdict = (f"It beats the shipped model alone on validation ({selection(best):.3f} against {shipped_now:.3f}), "
                   "but the shipped model stays one network: its recipe must train within an hour on a 2-core CPU, "
                   "which fits one member, not several.")
    else:
        verdict = (f"No combination beats the shipped model alone on validation SI F1 + TC micro-F1 "
                   f"({selection(best):.3f} at best against {shipped_now:.3f}), so the shipped model stays one network.")
    gain = {split: {key: best[split][key] - best_member[split][key] for key in ("si_f1", "tc_micro_f1")}
            for split in ("validation", "dev")}
    return f"""
### Ensembles (`persuasion ensemble`; not shipped)

`persuasion ensemble CHECKPOINT CHECKPOINT ... --data PTC --output FOLDER` averages trained checkpoints'
span and technique probabilities and tunes the decoding on their shared validation split, as training
tunes one checkpoint; the folder loads with `Detector.load(FOLDER)`. `python -m persuasion.eval.ensemble
--data ../shared/data/ptc-semeval2020 {members} --out eval/results/ensembles.json` builds every combination
of trained rows above that way (a member alone as its run tuned it) and scores it. Training minutes of an
ensemble are its members' added up.

{table}
{previous}
The best combination on validation, {named(best)}, changes SI F1 by {gain['validation']['si_f1']:+.3f} and
TC micro-F1 by {gain['validation']['tc_micro_f1']:+.3f} on validation against the best of its members alone ({named(best_member)}),
and by {gain['dev']['si_f1']:+.3f} / {gain['dev']['tc_micro_f1']:+.3f} on dev, at one forward pass per member. {verdict}
"""


def decoding_caveat(variants: list[dict]) -> str:
    """Rows scored before the shipped model's span growing existed were decoded without it."""
    shipped, *others = variants
    if not shipped.get("span_extension_margin") or all("span_extension_margin" in row for row in others):
        return ""
    return ("\nRows without span growing in their decoding (all measured before it existed) compare with\n"
            "\"the shipped weights as first tuned\", not with the shipped row.")


def learned_choices(recipe: dict) -> dict:
    """A recipe's training choices but its seed and time budget: what makes two runs the same recipe.
    Recipes written before a key existed take its default. A budget decides only where a run stops,
    which its history shows, not what a step learns."""
    from persuasion.train.recipe import Recipe

    choices = Recipe.from_dict(recipe).training_choices()
    choices.pop("seed")
    choices.pop("max_minutes")
    return choices


def seed_note(variants: list[dict]) -> str:
    """How far the shipped recipe moves with its training seed alone: the noise under every comparison above.

    Seeds compare only under the same decoding: where the reruns were tuned before a decoding choice
    the shipped model uses, the shipped weights' row as first tuned stands for seed 13's run.
    """
    def decoding(row: dict) -> float:  # rows measured before span growing existed decoded without it
        return row.get("span_extension_margin", 0.0)

    shipped = variants[0]
    if "recipe" not in shipped:
        return ""
    same_recipe = [row for row in variants if "recipe" in row and learned_choices(row["recipe"]) == learned_choices(shipped["recipe"])]
    seed = shipped["recipe"]["seed"]
    for anchor in [row for row in same_recipe if row["recipe"]["seed"] == seed]:
        reruns = [row for row in same_recipe if row["recipe"]["seed"] != seed and decoding(row) == decoding(anchor)]
        if reruns:
            break
    else:
        return ""
    runs = [anchor] + reruns

    def spread(split: str, measure: str) -> str:
        values = [row[split][measure] for row in runs]
        return f"{min(values):.3f} to {max(values):.3f}"

    decoded = "" if anchor is shipped else "\n(all decoded as first tuned, without growing spans)"
    note = (f"\nThe shipped recipe was trained with {len(runs)} training seeds "
            f"({', '.join(str(row['recipe']['seed']) for row in runs)}) on the same validation split{decoded}:\n"
            f"validation SI F1 {spread('validation', 'si_f1')} and TC micro-F1 {spread('validation', 'tc_micro_f1')}; "
            f"dev SI F1 {spread('dev', 'si_f1')} and TC\nmicro-F1 {spread('dev', 'tc_micro_f1')}. "
            f"Differences of this size between checkpoints are run-to-run noise.")
    if all(anchor["dev"][measure] >= row["dev"][measure] for row in reruns for measure in ("si_f1", "tc_micro_f1")):
        note += ("\nThe shipped checkpoint is also the best of these seeds on dev, so expect its dev numbers to be on\n"
                 "the high side of what the recipe gives on unseen articles.")
    return note + "\n"


def model_index_results(shipped: dict) -> str:
    """The card header's results on dev, one YAML entry per SemEval task, in Hugging Face's model-index form."""
    tasks = [
        ("token-classification", "Span identification (SemEval-2020 Task 11 SI)",
         [("SI F1 (official partial-overlap)", shipped["si_f1"])]),
        ("text-classification", "Technique classification (SemEval-2020 Task 11 TC)",
         [("TC micro-F1", shipped["tc_micro_f1"]), ("TC macro-F1", shipped["tc_macro_f1"])]),
        ("token-classification", "Fragment-level classification (full pipeline, FLC)",
         [("FLC F1", shipped["flc_f1"])]),
    ]
    entries = []
    for task_type, task_name, measures in tasks:
        entry = ["  - task:", f"      type: {task_type}", f"      name: {task_name}", "    dataset:",
                 "      name: PTC SemEval-2020 dev", "      type: ptc-semeval2020", "      split: dev", "    metrics:"]
        for name, value in measures:
            entry += ["    - type: f1", f"      name: {name}", f"      value: {value:.4f}"]
        entries.append("\n".join(entry))
    return "\n".join(entries)


def card_text() -> str:
    metrics = load(SHIPPED / "metrics.json")
    validation = load(SHIPPED / "validation.json")
    settings = load(SHIPPED / "persuasion.json")
    probes = load(RESULTS / "failure_modes.json")["probes"]
    variants = load(RESULTS / "ablation.json")["variants"]
    dev, memes = probes["dev articles"], probes["meme dev texts"]
    lines = probes["dev lines scored alone"]
    joined = next(value for name, value in probes.items() if name.startswith("dev joined"))
    recipe = settings["recipe"]
    shipped = headline(metrics)
    tuned = validation["validation"]
    tc = metrics["tc"]["per_technique"]
    weak = [name for name in tc if tc[name]["f1"] < 0.3]
    calibration = metrics["calibration"]
    front = f"""---
license: apache-2.0
language:
- en
library_name: transformers
base_model: sentence-transformers/all-MiniLM-L6-v2
datasets:
- SemEval-2020 Task 11 Propaganda Techniques Corpus (PTC)
metrics:
- f1
tags:
- propaganda-detection
- persuasion-techniques
- token-classification
- span-classification
model-index:
- name: persuasion (shipped)
  results:
{model_index_results(shipped)}
---
"""
    body = f"""
# Model card: persuasion (shipped model)

<!-- Generated by `python -m persuasion.eval.model_card write`; `... check` (run by the tests) fails if
any number here differs from the committed measurements. Edit the generator, not this file. -->

A detector of the 14 persuasion and propaganda techniques of SemEval-2020 Task 11 in English news
text. Given a document it returns the fragments that use a technique, with exact character
offsets, the technique of each, and a calibrated confidence; it can also rank the techniques for
a fragment you give it. One all-MiniLM-L6-v2 encoder (6 layers, 384 hidden, 22.7M parameters)
feeds two heads: a B/I/O span tagger and a span-in-context technique classifier.

## Intended use

An analysis aid for people who read critically for a living or for study:

- researchers measuring persuasion techniques across outlets, topics or time, in aggregate;
- fact-checkers and editors who want a second pair of eyes that points at loaded phrasing;
- media-literacy teaching, where a highlighted example starts a discussion.

Every output is a suggestion to be read by a person, in context.

## Out of scope

- **Automated moderation or censorship**: removing, down-ranking or blocking content on its output.
  Its span precision on dev is {shipped['si_precision']:.2f}: most flagged text is not what the annotators
  marked, and the annotators themselves disagree often.
- **Judging a person, author or outlet.** A count of techniques is not a measure of truthfulness,
  intent or quality; the corpus itself was sampled from outlets chosen for being propagandistic.
- **Non-English text.** Trained on English only; the tokenizer is English and uncased.
- **Other genres without checking first**: social media, memes, speeches, advertising. The probe
  on meme texts below measures one such shift; check on your own genre before relying on it.

## Training data

- The Propaganda Techniques Corpus (PTC) of SemEval-2020 Task 11 (Da San Martino et al., 2020):
  371 training articles with 6,128 technique spans; the 75 dev articles are the benchmark. The
  corpus is distributed by its authors for research use (Zenodo record 3952415); it is not
  redistributed here and is read from a folder you provide.
- A validation split of {len(validation['validation_articles'])} articles, drawn from train by article with seed
  {recipe.get('split_seed', recipe['seed'])}, selects the epoch and fits the decoding choices and both calibration temperatures.
  The dev split is never used for any choice.
- The SemEval-2021 Task 6 meme texts are not used for training (the recipe's `meme_dir` is empty);
  their dev set serves only as an out-of-domain probe.

## Training recipe

`persuasion train --config configs/minilm-cpu.yaml --data ../shared/data/ptc-semeval2020` on a 2-core
CPU; this checkpoint trained for {validation['train_minutes']} minutes, validation and tuning included{budget_note(recipe, validation['history'])}.

- Packed windows of {recipe['window_tokens']} tokens; at inference windows start every
  {settings['window_stride']} tokens and are averaged where they overlap (the stride is chosen on validation
  between the recipe's {recipe['inference_stride']} and a denser one), batch {recipe['batch_size']}, up to {recipe['epochs']} epochs with early stopping
  (patience {recipe['patience']}) on validation SI F1 + TC micro-F1, AdamW (encoder lr {recipe['learning_rate']},
  heads {recipe['head_learning_rate']}), word embeddings frozen.
- Span head: B/I/O tags from the task-SI gold, {span_head_note(recipe)};
  {span_decoding_note(settings)}
- Technique head: mean, first and last token of the span, the window's [CLS] and a span-length
  embedding; soft targets share a fragment annotated with k techniques between them;
  {recipe['technique_class_weighting']} class weights for the rare techniques.
{technique_tagging_note(recipe, settings)}{sentence_head_note(recipe, settings)}{weight_selection_note(recipe, validation['history'])}- A fragment listed k times in a TC task gets its k best distinct techniques. The Repetition
  rule (relabel a span whose words recur in the article) is {'on' if settings['repetition_rule'] else 'off'}: chosen on validation FLC F1.

The inference stride, thresholds, temperatures, span gap{', technique tagger mix' if settings.get('technique_tagger') else ''} and Repetition boost were fitted by the
tuning step that ends `persuasion train`, on the same validation split.

Validation after tuning: SI F1 {tuned['si']['f1']:.3f}, TC micro-F1 {tuned['tc_micro_f1']:.3f},
TC macro-F1 {tuned['tc_macro_f1']:.3f}, FLC F1 {tuned['flc_f1']:.3f} (from `model/shipped/validation.json`).

## Results on PTC dev

Produced by `persuasion benchmark --data ../shared/data/ptc-semeval2020 --split dev --out OUT`
(the official SemEval-2020 measures, reimplemented in `persuasion.eval.metrics`; the shipped numbers
are `model/shipped/metrics.json`, the baselines `eval/results/baselines-dev.json`).

{results_table()}
Against this project's targets on dev: TC micro-F1 ≥ {TARGETS['tc_micro_f1']} is {'met' if shipped['tc_micro_f1'] >= TARGETS['tc_micro_f1'] else 'not met'}
({shipped['tc_micro_f1']:.3f}); SI F1 ≥ {TARGETS['si_f1']} is {'met' if shipped['si_f1'] >= TARGETS['si_f1'] else 'not met'} ({shipped['si_f1']:.3f}; validation
{tuned['si']['f1']:.3f}). Both are above the classical baseline.

The SemEval winners' numbers are on the official test set, whose gold was never published, so
they are not strictly comparable with dev numbers; they were large-model ensembles trained on GPUs.

### Per technique (TC on gold spans, FLC on detected spans)

{technique_rows(metrics)}

### What moved the numbers

`python -m persuasion.eval.ablation` (run by `model_card measure`, written to `eval/results/ablation.json`)
switches off one inference-time choice at a time, re-tuning the span threshold on validation where
decoding changes:

{variant_rows(variants, "variant", ("span threshold", "span_threshold"))}
{trained_section()}{sweep_section()}{seeds_section()}{tagger_section()}{ensemble_section()}
## Speed and memory

`persuasion speed --data ../shared/data/ptc-semeval2020 --split dev --quantize --json eval/results/speed.json`
(the reference is a plain `transformers` token-classification pipeline over the same encoder and windows):

{speed_table()}
Dynamic int8 weights (`Detector.load(quantize=True)`, `persuasion benchmark --quantize`) are about three
times faster but cost one to three points of F1 (see the ablation above), so they are an option, not the default.

## Calibration

Scores are temperature-scaled on validation (span head T = {settings['span_temperature']}, technique head
T = {settings['technique_temperature']}). Expected calibration error on dev, 10 bins: technique confidence
on gold spans {calibration['tc_ece']:.3f} ({calibration['tc_answers']} answers); sentence scores (p that a
sentence holds a technique span) {calibration['sentence_ece']:.3f} ({calibration['sentences']} sentences).

## Known failure modes (measured)

`python -m persuasion.eval.model_card measure --data ../shared/data` wrote `eval/results/failure_modes.json`:

{probe_rows(probes)}

- **Rare techniques**: TC F1 is below 0.3 on {len(weak)} of 14 techniques on dev
  ({', '.join(sorted(weak)) if weak else 'none'}): the rarer classes of the training data.
- **Short texts and other registers**: on the meme dev texts (short, mostly upper case, meme labels
  mapped onto the PTC classes) TC micro-F1 is {memes['tc_micro_f1']:.3f} and macro-F1 {memes['tc_macro_f1']:.3f}
  against {dev['tc_micro_f1']:.3f} and {dev['tc_macro_f1']:.3f} on dev articles; their SI F1 ({memes['si_f1']:.3f}) is
  higher only because meme spans often cover most of the text. Single lines scored without their
  article lose {dev['si_f1'] - lines['si_f1']:.3f} SI F1 and {dev['tc_micro_f1'] - lines['tc_micro_f1']:.3f} TC micro-F1: the model uses the article around a sentence.
- **Repetition across documents**: the Repetition boost looks for a fragment's words elsewhere in
  the same input, so joining unrelated articles into one input changes TC micro-F1 from
  {dev['tc_micro_f1']:.3f} to {joined['tc_micro_f1']:.3f}; score one article per input.
- **Casing**: the encoder is uncased, so upper-cased text gets the same tokens; the probe checks it.
- **Very long documents**: sliding windows cover any length; with ten dev articles joined into one
  input SI F1 is {joined['si_f1']:.3f} (dev articles one by one: {dev['si_f1']:.3f}).
- Span boundaries are the hardest part: SI precision and recall at the tuned threshold are
  {shipped['si_precision']:.3f} and {shipped['si_recall']:.3f}.

## The ceiling: annotators disagree

The corpus authors report an inter-annotator agreement of about γ ≈ 0.3 between independent
annotators before consolidation (Da San Martino et al., EMNLP 2019); the gold is the consolidated
result of two annotators and a curator. Span-level scores well below 1.0 are therefore expected of
any system, and small differences between systems on 75 dev articles are within noise.

## Citation

Da San Martino, G., Barrón-Cedeño, A., Wachsmuth, H., Petrov, R., Nakov, P. SemEval-2020 Task 11:
Detection of Propaganda Techniques in News Articles. SemEval 2020.
Da San Martino, G., Yu, S., Barrón-Cedeño, A., Petrov, R., Nakov, P. Fine-Grained Analysis of
Propaganda in News Articles. EMNLP-IJCNLP 2019.
"""
    return front + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check MODEL_CARD.md and README's results table.")
    parser.add_argument("action", choices=("measure", "write", "check"))
    parser.add_argument("--data", type=Path, help="folder holding ptc-semeval2020/ and memes-semeval2021/ (measure)")
    parser.add_argument("--trained", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="measure: also compare the shipped model with this trained checkpoint (repeatable)")
    args = parser.parse_args(argv)
    if args.action == "measure":
        if args.data is None:
            parser.error("measure needs --data")
        measure(args.data, args.trained)
        return 0
    card, readme = card_text(), readme_text()
    if args.action == "write":
        CARD.write_text(card)
        README.write_text(readme)
        return 0
    stale = [path.name for path, text in ((CARD, card), (README, readme)) if not path.is_file() or path.read_text() != text]
    if stale:
        print(f"model_card: {', '.join(stale)} out of date; run `python -m persuasion.eval.model_card write`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
