"""PNG plots (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from loadgen.records import LATE, OK, Records
from loadgen.traces import Trace


def _bins(duration: float, target: int = 120) -> float:
    """A bin width giving about `target` bins, rounded to 1/2/5 x 10^k seconds."""
    raw = max(duration, 1e-3) / target
    k = 10 ** np.floor(np.log10(raw))
    return float(min((m * k for m in (1, 2, 5, 10)), key=lambda w: abs(w - raw)))


def plot_trace(trace: Trace, path: str | Path) -> None:
    w = _bins(trace.duration)
    edges = np.arange(0, trace.duration + w, w)
    counts, _ = np.histogram(trace.arrivals, edges)
    gaps = np.diff(trace.arrivals)
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6), constrained_layout=True)
    a.step(edges[:-1], counts / w, where="post")
    a.set(xlabel="time (s)", ylabel=f"arrivals/s ({w:g} s bins)", title=trace.source)
    if len(gaps) > 1 and gaps.mean() > 0:
        cv2 = gaps.var() / gaps.mean() ** 2
        b.hist(gaps * 1e3, bins=100, log=True)
        b.set(xlabel="inter-arrival (ms)", ylabel="count",
              title=f"{len(trace)} requests, mean {trace.mean_rate:.1f} q/s, gap CV² {cv2:.2f}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rate_accuracy(rec: Records, path: str | Path, title: str = "") -> None:
    """Offered rate over time with the mean accuracy served and SLO attainment per bin."""
    if not len(rec):
        return
    t0 = float(rec.arrival.min())
    span = float(rec.arrival.max()) - t0
    w = _bins(span)
    edges = t0 + np.arange(0, span + w, w)
    offered, _ = np.histogram(rec.arrival, edges)
    served = (rec.status == OK) | (rec.status == LATE)
    acc_sum, _ = np.histogram(rec.arrival[served], edges, weights=rec.accuracy[served])
    n_served, _ = np.histogram(rec.arrival[served], edges)
    n_ok, _ = np.histogram(rec.arrival[rec.status == OK], edges)
    x = edges[:-1] - t0
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_served > 0, acc_sum / n_served, np.nan)
        att = np.where(offered > 0, n_ok / offered, np.nan)
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, constrained_layout=True)
    a.step(x, offered / w, where="post", color="tab:gray", label="offered")
    a.set(ylabel=f"q/s ({w:g} s bins)", title=title or "offered rate and served accuracy")
    a2 = a.twinx()
    a2.plot(x, acc * 100, color="tab:blue", marker=".", lw=1, label="mean serving accuracy")
    a2.set_ylabel("accuracy (%)", color="tab:blue")
    if np.isfinite(acc).any():
        a2.set_ylim(np.nanmin(acc) * 100 - 1, np.nanmax(acc) * 100 + 1)
    a2.ticklabel_format(axis="y", useOffset=False)
    b.plot(x, att, color="tab:green", marker=".", lw=1)
    b.set(xlabel="time (s)", ylabel="SLO attainment", ylim=(-0.02, 1.02))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency_cdf(runs: Mapping[str, Records], path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for name, rec in runs.items():
        served = (rec.status == OK) | (rec.status == LATE)
        lat = np.sort((rec.finish[served] - rec.arrival[served]) * 1e3)
        if len(lat):
            ax.plot(lat, np.arange(1, len(lat) + 1) / len(rec), label=name)
    ax.set(xlabel="latency (ms)", ylabel="fraction of all requests answered",
           title="latency CDF (drops never reach 1)", ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tradeoff(rows: Sequence[Mapping], path: str | Path, title: str = "") -> None:
    """SLO attainment vs mean serving accuracy, one point per policy."""
    fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
    for i, r in enumerate(rows):
        if r["mean_serving_accuracy"] is None:
            continue
        fixed = r["policy"].startswith("fixed:")
        ax.scatter(r["mean_serving_accuracy"] * 100, r["slo_attainment"],
                   marker="o" if fixed else "*", s=40 if fixed else 140,
                   color="tab:gray" if fixed else None, zorder=3)
        ax.annotate(r["policy"], (r["mean_serving_accuracy"] * 100, r["slo_attainment"]),
                    fontsize=7, xytext=(4, 3 if i % 2 else -9), textcoords="offset points")
    ax.set(xlabel="mean serving accuracy (%)", ylabel="SLO attainment",
           title=title or "trade-off: SLO attainment vs accuracy")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(rows: Sequence[Mapping], path: str | Path) -> None:
    """Per rate (row of panels): attainment and accuracy against CV², one line per policy."""
    rates = sorted({r["rate"] for r in rows})
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    fig, axes = plt.subplots(len(rates), 2, figsize=(11, 3.2 * len(rates)), squeeze=False,
                             constrained_layout=True)
    for row, rate in zip(axes, rates, strict=True):
        for p in policies:
            pts = sorted((r["cv2"], r["slo_attainment"], r["mean_serving_accuracy"])
                         for r in rows if r["rate"] == rate and r["policy"] == p)
            if not pts:
                continue
            cv2, att, acc = zip(*pts, strict=True)
            style = {"lw": 2.5} if not p.startswith("fixed:") else {"lw": 1, "ls": "--"}
            row[0].plot(cv2, att, marker="o", label=p, **style)
            row[1].plot(cv2, [a * 100 if a is not None else np.nan for a in acc], marker="o",
                        label=p, **style)
        row[0].set(xscale="log", xlabel="CV²", ylabel="SLO attainment",
                   title=f"{rate:g} q/s")
        row[1].set(xscale="log", xlabel="CV²", ylabel="mean serving accuracy (%)",
                   title=f"{rate:g} q/s")
        ticks = sorted({r["cv2"] for r in rows})
        for a in row:
            a.set_xticks(ticks, [f"{c:g}" for c in ticks])
            a.minorticks_off()
            a.grid(alpha=0.3)
    axes[0][1].legend(fontsize=7, loc="best")
    fig.savefig(path, dpi=110)
    plt.close(fig)
