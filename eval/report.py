"""Human-readable views of a benchmark's metrics: a per-technique table and PNG plots."""

from __future__ import annotations

from pathlib import Path


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
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np

    tc, flc = metrics["tc"]["per_technique"], metrics["flc"]["per_technique"]
    names = sorted(tc, key=lambda name: (-tc[name]["gold"], name))
    positions = np.arange(len(names))
    figure, axes = plt.subplots(figsize=(10, 5.5))
    axes.barh(positions - 0.2, [tc[n]["f1"] for n in names], height=0.4, label="TC F1 (gold spans)")
    axes.barh(positions + 0.2, [flc.get(n, {}).get("f1", 0.0) for n in names], height=0.4, label="FLC F1 (full pipeline)")
    axes.set_yticks(positions, [f"{n} ({tc[n]['gold']})" for n in names], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1")
    axes.set_title(f"{metrics['system']} on {metrics['split']}: per-technique F1 (gold count in brackets)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    bars = out_dir / "technique_f1.png"
    figure.savefig(bars, dpi=110)
    plt.close(figure)

    counts = np.zeros((len(names), len(names)))
    for key, count in metrics["tc"]["confusion"].items():
        gold, predicted = key.split("\t")
        if gold in names and predicted in names:
            counts[names.index(gold), names.index(predicted)] += count
    row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(9, 8))
    image = axes.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(positions, names, rotation=75, fontsize=7, ha="right")
    axes.set_yticks(positions, names, fontsize=7)
    axes.set_xlabel("predicted technique")
    axes.set_ylabel("gold technique")
    axes.set_title("TC confusion (share of each gold row)")
    for i in range(len(names)):
        for j in range(len(names)):
            if counts[i, j]:
                axes.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=6,
                          color="white" if row_share[i, j] > 0.5 else "black")
    figure.colorbar(image, fraction=0.046)
    figure.tight_layout()
    confusion = out_dir / "tc_confusion.png"
    figure.savefig(confusion, dpi=110)
    plt.close(figure)
    return [bars, confusion]
