"""Human-readable views of a benchmark's metrics: the headline table, a per-technique table and PNG plots."""

from __future__ import annotations

from pathlib import Path

# (name, where in the metrics, what it scores), in the order `persuasion benchmark` prints them.
HEADLINE_MEASURES = [
    ("SI precision", ("si", "precision"), "span identification: how much of each predicted span is gold, on average"),
    ("SI recall", ("si", "recall"), "span identification: how much of each gold span is predicted, on average"),
    ("SI F1", ("si", "f1"), "span identification: harmonic mean of the two"),
    ("TC micro-F1", ("tc", "micro_f1"), "technique classification of each gold span, over all of them"),
    ("TC macro-F1", ("tc", "macro_f1"), "technique classification, the mean over the 14 techniques"),
    ("FLC F1", ("flc", "f1"), "spans found and their technique together: the full pipeline"),
    ("TC ECE", ("calibration", "tc_ece"), "calibration error of the technique confidences; lower is better"),
    ("span ECE", ("calibration", "span_ece"), "calibration error of the span scores; lower is better"),
    ("sentence ECE", ("calibration", "sentence_ece"), "calibration error of the sentence scores; lower is better"),
]

# (name, key in a benchmark's span_shapes), as `headline_table` prints them.
SPAN_SHAPES = [("an edge inside a word", "edge_inside_word"), ("across a sentence end", "crosses_sentence_end"),
               ("ending on a dangling function word", "ends_on_function_word"),
               ("median length, characters", "median_characters")]


def headline_table(metrics: dict) -> str:
    """The official measures a benchmark run scored, each named, with its range over articles where the run has
    one, and said in words, under the system and split."""
    lines = [f"{metrics['system']} on {metrics['split']} ({metrics['articles']} articles, {metrics['seconds']} s):"]
    intervals = metrics.get("intervals", {})
    for name, (task, key), meaning in HEADLINE_MEASURES:
        if key in metrics.get(task, {}):
            interval = intervals.get(f"{task}_{key}")
            shown = f"{interval[0]:.3f}-{interval[1]:.3f}" if interval else ""
            lines.append(f"  {name:<12}  {metrics[task][key]:.4f}  {shown:<11}  {meaning}")
    if intervals:
        lines.append(f"  (ranges: {intervals['level']:.0%} of the scores when the {intervals['articles']} articles are "
                     f"drawn again with replacement, {intervals['resamples']} times)")
    shapes = metrics.get("span_shapes", {})
    if shapes.get("predicted", {}).get("spans") and shapes.get("gold", {}).get("spans"):
        lines.append("  how spans are cut, predicted against gold (shares of distinct spans):")
        for name, key in SPAN_SHAPES:
            lines.append(f"    {name:<36}  {shapes['predicted'][key]:<8.4g}  {shapes['gold'][key]:.4g}")
    return "\n".join(lines) + "\n"


def per_technique_table(metrics: dict) -> str:
    """Markdown table: gold count, TC P/R/F1 and FLC F1 per technique, most frequent first."""
    tc, flc = metrics["tc"]["per_technique"], metrics["flc"]["per_technique"]
    rows = sorted(tc, key=lambda name: (-tc[name]["gold"], name))
    lines = ["| technique | gold spans | TC precision | TC recall | TC F1 | FLC F1 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in rows:
        scores = tc[name]
        lines.append(f"| {name} | {scores['gold']} | {scores['precision']:.3f} | {scores['recall']:.3f} | "
                     f"{scores['f1']:.3f} | {flc.get(name, {}).get('f1', 0.0):.3f} |")
    return "\n".join(lines) + "\n"


def save_plots(metrics: dict, out_dir: Path) -> list[Path]:
    """technique_f1.png and tc_confusion.png in out_dir."""
    plt, paths = pyplot(), []
    for name, draw in [("technique_f1.png", technique_f1_figure), ("tc_confusion.png", confusion_figure)]:
        figure = draw(metrics)
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        paths.append(out_dir / name)
    return paths


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def techniques_by_gold_count(metrics: dict) -> list[str]:
    tc = metrics["tc"]["per_technique"]
    return sorted(tc, key=lambda name: (-tc[name]["gold"], name))


def technique_f1_figure(metrics: dict):
    """TC and FLC F1 per technique, most frequent first."""
    import numpy as np

    tc, flc = metrics["tc"]["per_technique"], metrics["flc"]["per_technique"]
    names = techniques_by_gold_count(metrics)
    positions = np.arange(len(names))
    figure, axes = pyplot().subplots(figsize=(10, 5.5))
    axes.barh(positions - 0.2, [tc[n]["f1"] for n in names], height=0.4, label="TC F1 (gold spans)")
    axes.barh(positions + 0.2, [flc.get(n, {}).get("f1", 0.0) for n in names], height=0.4, label="FLC F1 (full pipeline)")
    axes.set_yticks(positions, [f"{n} ({tc[n]['gold']})" for n in names], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1")
    axes.set_title(f"{metrics['system']} on {metrics['split']}: per-technique F1 (gold count in brackets)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    return figure


def confusion_figure(metrics: dict):
    """Gold technique by predicted technique: each cell the count of gold spans, its colour their share of the row."""
    import numpy as np

    names = techniques_by_gold_count(metrics)
    positions = np.arange(len(names))
    counts = np.zeros((len(names), len(names)))
    for key, count in metrics["tc"]["confusion"].items():
        gold, predicted = key.split("\t")
        if gold in names and predicted in names:
            counts[names.index(gold), names.index(predicted)] += count
    row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axes = pyplot().subplots(figsize=(9, 8))
    image = axes.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(positions, names, rotation=75, fontsize=7, ha="right")
    axes.set_yticks(positions, names, fontsize=7)
    axes.set_xlabel("predicted technique")
    axes.set_ylabel("gold technique")
    axes.set_title("TC confusion: count of gold spans by gold technique (row) and prediction (column)")
    for i in range(len(names)):
        for j in range(len(names)):
            if counts[i, j]:
                axes.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=6,
                          color="white" if row_share[i, j] > 0.5 else "black")
    figure.colorbar(image, fraction=0.046, label="colour: share of the gold row")
    figure.tight_layout()
    return figure
