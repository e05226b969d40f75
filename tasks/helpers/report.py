"""Evaluation report: plots for MLflow and a challenger-vs-champion table for reviewers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lensflow.models.augment import ShopperAugment
from lensflow.models.preprocess import to_rgb
from lensflow.tasks.evaluate import EvalResult
from lensflow.tasks.helpers.metrics import CURVE_KS
from lensflow.tasks.robustness import table_of
from lensflow.tasks.shopper import example_sheet, shopper_photo

HEADLINE = (
    "image_precision_at_10",
    "text_precision_at_10",
    "zero_shot_accuracy",
    "heldout_combined_recall_at_1",
    "heldout_combined_recall_at_10",
    "heldout_combined_category_precision_at_10",
    "shopper_recall_at_1",
    "shopper_recall_at_10",
    "shopper_mrr_at_10",
    "image_recall_at_1",
    "image_ndcg_at_10",
    "text_ndcg_at_10",
    "index_recall_at_10",
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def recall_curves_plot(
    challenger: EvalResult, champion: EvalResult | None, out: Path, labels=("challenger", "champion")
) -> Path:
    """Recall@K (K = 1..10) per query set, challenger solid, champion dashed."""
    plt = _pyplot()
    sets = list(challenger.curves)
    fig, axes = plt.subplots(1, len(sets), figsize=(4 * len(sets), 3.2), squeeze=False)
    for ax, name in zip(axes[0], sets):
        ax.plot(CURVE_KS, challenger.curves[name], "o-", label=labels[0])
        if champion is not None and name in champion.curves:
            ax.plot(CURVE_KS, champion.curves[name], "s--", label=labels[1])
        ax.set_title(f"{name} -> product")
        ax.set_xlabel("K")
        ax.set_ylabel("Recall@K")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def per_category_plot(
    result: EvalResult, out: Path, metrics=("image_precision_at_10", "text_precision_at_10", "shopper_recall_at_1")
) -> Path:
    """Grouped bars: one group per category, one bar per metric."""
    plt = _pyplot()
    cats = sorted(result.per_category)
    shown = [m for m in metrics if any(m in result.per_category[c] for c in cats)]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(cats)), 3.6))
    width = 0.8 / max(1, len(shown))
    for i, m in enumerate(shown):
        ax.bar(np.arange(len(cats)) + i * width, [result.per_category[c].get(m, 0.0) for c in cats], width, label=m)
    ax.set_xticks(np.arange(len(cats)) + width * (len(shown) - 1) / 2, cats, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("per category")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def worst_queries_sheet(
    result: EvalResult,
    catalog: pd.DataFrame,
    data_dir: Path,
    out: Path,
    augment: ShopperAugment | None = None,
    thumb: int = 96,
) -> Path | None:
    """Rows of thumbnails: shopper photo | its product | the top-3 results (for the worst queries)."""
    if not result.worst:
        return None
    augment = augment or ShopperAugment()
    path_of = dict(zip(catalog["product_id"], catalog["image_path"]))
    sheet = Image.new("RGB", (5 * thumb, len(result.worst) * thumb), "white")
    for r, q in enumerate(result.worst):
        tiles = [shopper_photo(data_dir, path_of[q["product_id"]], augment)]
        for pid in [q["product_id"], *q["results"]]:
            with Image.open(data_dir / path_of[pid]) as im:
                tiles.append(to_rgb(im))
        for c, tile in enumerate(tiles[:5]):
            sheet.paste(tile.resize((thumb, thumb)), (c * thumb, r * thumb))
    sheet.save(out)
    return out


def comparison_table(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    champion_label: str = "champion",
    challenger_label: str = "challenger",
) -> str:
    """Markdown table of the headline metrics with deltas (champion measured on the same eval set)."""
    names = [m for m in HEADLINE if m in challenger] + sorted(
        m for m in set(challenger) - set(HEADLINE) if not m.startswith("heldout_")
    )  # those: robustness_table
    lines = [f"| metric | {challenger_label} | {champion_label} | delta |", "|---|---|---|---|"]
    for m in names:
        c = challenger[m]
        if champion and m in champion:
            lines.append(f"| {m} | {c:.4f} | {champion[m]:.4f} | {c - champion[m]:+.4f} |")
        else:
            lines.append(f"| {m} | {c:.4f} | - | - |")
    return "\n".join(lines)


def robustness_table(
    challenger: dict[str, float], champion: dict[str, float] | None = None, champion_label: str = "champion"
) -> str:
    """Markdown: held-out shopper photos per condition (R@1, R@10, category P@10), the champion's R@1 beside
    the challenger's, and the train-recipe vs held-out line."""
    rows = table_of(challenger)
    if not rows:
        return ""
    theirs = table_of(champion or {})
    lines = [f"| held-out condition | R@1 | R@10 | category P@10 | {champion_label} R@1 |", "|---|---|---|---|---|"]
    for cond, m in rows.items():
        other = theirs.get(cond, {}).get("recall_at_1")
        lines.append(
            f"| {cond} | {m['recall_at_1']:.3f} | {m['recall_at_10']:.3f} | {m['category_precision_at_10']:.3f} | "
            f"{'-' if other is None else f'{other:.3f}'} |"
        )
    if "shopper_recall_at_1" in challenger and "combined" in rows:
        lines += ["", gap_line(challenger)]
    return "\n".join(lines)


def gap_line(metrics: dict[str, float]) -> str:
    """Train recipe vs held-out recipe: how much of the flow's own shopper score does not carry over."""
    train, held = metrics.get("shopper_recall_at_1"), metrics.get("heldout_combined_recall_at_1")
    if train is None or held is None:
        return ""
    gap = f"generalisation gap {train - held:+.3f}"
    return f"train-recipe vs held-out-recipe shopper R@1: {train:.3f} vs {held:.3f} ({gap})"


def write_report(
    out: Path,
    result: EvalResult,
    champion: EvalResult | None,
    champion_version: int | None,
    catalog: pd.DataFrame,
    data_dir: Path,
    extra: dict | None = None,
) -> str:
    """Everything a reviewer looks at, into `out`: evaluation.json, comparison.md and the plots.
    Returns the comparison table (markdown)."""
    out.mkdir(parents=True, exist_ok=True)
    label = f"champion v{champion_version}" if champion is not None else "champion"
    (out / "evaluation.json").write_text(
        json.dumps(
            result.as_dict()
            | (extra or {})
            | {"champion": {"version": champion_version, **(champion.as_dict() if champion else {})}},
            indent=2,
        )
    )
    table = comparison_table(result.metrics, champion.metrics if champion else None, label)
    (out / "comparison.md").write_text(
        table + "\n\n" + robustness_table(result.metrics, champion.metrics if champion else None, label) + "\n"
    )
    recall_curves_plot(result, champion, out / "recall_at_k.png", ("challenger", label))
    per_category_plot(result, out / "per_category.png")
    worst_queries_sheet(result, catalog, data_dir, out / "worst_shopper_queries.png")
    example_sheet(catalog, data_dir, out / "shopper_examples.png")
    return table
