"""The report's three plots, as PNG files (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen first

COLOURS = {"engine": "#1b7837", "nearest": "#c51b7d", "cheapest": "#2166ac", "market": "#e08214"}
DPI = 110


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version stamp: reruns diff cleanly
    plt.close(fig)
    return path


def utilisation_by_hour(outcomes: dict, path: Path, labels: dict) -> Path:
    """One panel per policy: each region's utilisation by hour of the day (CST); west solid."""
    fig, axes = plt.subplots(1, len(outcomes), figsize=(5 * len(outcomes), 4.2), sharey=True, squeeze=False)
    for ax, (policy, o) in zip(axes[0], outcomes.items(), strict=True):
        regions = o["utilisation"]["by_region"]
        for region, values in o["utilisation"]["by_hour"].items():
            west = regions[region]["is_west"]
            hours = [h for h, v in enumerate(values) if v is not None]
            ax.plot(
                hours,
                [values[h] * 100 for h in hours],
                linestyle="-" if west else "--",
                linewidth=1.8 if west else 1.1,
                label=f"{region}{' (W)' if west else ''}",
            )
        ax.set_title(labels[policy])
        ax.set_xlabel("hour of day, China Standard Time")
        ax.set_xticks(range(0, 24, 3))
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("GPUs held / listed, %")
    axes[0][-1].legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Utilisation by region over the day (solid: western hubs, dashed: eastern)")
    return _save(fig, path)


def price_latency(outcomes: dict, path: Path, labels: dict) -> Path:
    """Every settled match: RTT to its buyer against price paid as a share of the model's
    indicative price, one colour per policy, latency-class bounds marked."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for policy, o in outcomes.items():
        points = o["points"]
        ax.scatter(
            [p[0] for p in points],
            [p[1] * 100 for p in points],
            s=12,
            alpha=0.45,
            color=COLOURS.get(policy),
            label=f"{labels[policy]} ({len(points)} matches)",
        )
    for bound, name in ((10, "realtime"), (30, "interactive"), (60, "standard")):
        ax.axvline(bound, color="grey", linewidth=0.8, linestyle=":")
        ax.text(
            bound, 1.0, f" ≤{bound} ms {name}", rotation=90, va="top", fontsize=7, transform=ax.get_xaxis_transform()
        )
    ax.set_xlabel("RTT from the buyer's city to the data centre, ms")
    ax.set_ylabel("price paid / indicative price, %")
    ax.set_title("Price and latency of every match")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def served_by_policy(outcomes: dict, path: Path, labels: dict, classes) -> Path:
    """Share of asked-for GPU-hours served, per latency class and overall, one bar per policy."""
    groups = [*classes, "all"]
    width = 0.8 / len(outcomes)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (policy, o) in enumerate(outcomes.items()):
        demand = o["demand"]
        shares = [_class_share(demand["by_class"].get(cls)) for cls in classes] + [demand["served_gpu_hour_share"]]
        xs = [g + (k - (len(outcomes) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, [s * 100 for s in shares], width, label=labels[policy], color=COLOURS.get(policy))
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("GPU-hours served / asked for, %")
    ax.set_ylim(0, 110)
    ax.set_title("Served demand by policy and latency class")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _class_share(row: dict | None) -> float:
    return row["served_gpu_hours"] / row["gpu_hours"] if row and row["gpu_hours"] else 0.0
