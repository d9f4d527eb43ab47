"""The policy study's figures: attainment vs accuracy per cell, and the default's margins."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_tradeoffs(results: Sequence[dict], default: str, out: Path) -> list[Path]:
    """One figure per (trace, workers): a panel per (load, SLO), each policy a point; the
    default a red star, the policies that beat it ringed."""
    files = []
    for row in dict.fromkeys(_row(r) for r in results):
        cells = [r for r in results if _row(r) == row]
        loads = sorted({r["load"] for r in cells})
        slos = sorted({r["slo_x"] for r in cells})
        fig, axes = plt.subplots(len(loads), len(slos), figsize=(3.6 * len(slos),
                                 2.9 * len(loads)), squeeze=False, constrained_layout=True)
        for r in cells:
            ax = axes[loads.index(r["load"])][slos.index(r["slo_x"])]
            by = {b["by"] for b in r["verdict"]["dominated_by"]}
            for p in r["policies"]:
                acc, att = p["mean_serving_accuracy"], p["slo_attainment"]
                if acc is None:
                    continue
                name = p["policy"]
                if name == default:
                    ax.scatter(acc * 100, att, marker="*", s=160, color="tab:red", zorder=5)
                else:
                    fixed = name.startswith("fixed:")
                    ax.scatter(acc * 100, att, marker="o" if fixed else "D", s=16 if fixed
                               else 30, color="tab:gray" if fixed else "tab:blue", zorder=3,
                               edgecolors="black" if name in by else "none")
                if not name.startswith("fixed:") or name in by:
                    ax.annotate(name.replace("fixed:", "")[:16], (acc * 100, att), fontsize=6,
                                xytext=(3, 2), textcoords="offset points")
            mark = " DOMINATED" if by else ""
            ax.set_title(f"load {r['load'] * 100:g}%, SLO {r['slo_x']:g}x "
                         f"({r['slo_ms']:.0f} ms){mark}", fontsize=8,
                         color="tab:red" if by else "black")
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        for ax in axes[-1]:
            ax.set_xlabel("mean serving accuracy (%)", fontsize=8)
        for ax in axes[:, 0]:
            ax.set_ylabel("SLO attainment", fontsize=8)
        fig.suptitle(f"{row}: attainment vs accuracy (red star: {default})", fontsize=10)
        path = out / f"tradeoff_{row}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path)
    return files


def plot_margins(results: Sequence[dict], default: str, path: Path) -> Path:
    """Heat maps of the default's margin over the best comparable other policy (attainment,
    accuracy; points): rows (trace, workers), columns (load, SLO). Negative is beaten."""
    rows = list(dict.fromkeys(_row(r) for r in results))
    cols = sorted({(r["load"], r["slo_x"]) for r in results})
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.75 * len(cols) + 2.5),
                             2 * (0.45 * len(rows) + 1.6)), squeeze=False,
                             constrained_layout=True)
    for ax, key, label, lim in ((axes[0][0], "margin_attain_pts", "attainment", 5.0),
                                (axes[1][0], "margin_acc_pts", "accuracy", 2.0)):
        m = np.full((len(rows), len(cols)), np.nan)
        for r in results:
            v = r["verdict"][key]
            if v is not None:
                m[rows.index(_row(r)), cols.index((r["load"], r["slo_x"]))] = v
        im = ax.imshow(np.clip(m, -lim, lim), cmap="RdYlGn", vmin=-lim, vmax=lim,
                       aspect="auto")
        for (i, j), v in np.ndenumerate(m):
            if not math.isnan(v):
                ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(cols)), [f"{ld * 100:g}%\n{s:g}x" for ld, s in cols],
                      fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(f"{default}'s {label} margin over the best comparable single-subnet "
                     f"policy (points; < 0: beaten)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_study(results: Sequence[dict], summ: dict, out: Path) -> list[Path]:
    return [*plot_tradeoffs(results, summ["default"], out),
            plot_margins(results, summ["default"], out / "margins.png")]


def _row(r: dict) -> str:
    return r["row"]
