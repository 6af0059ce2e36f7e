"""The paper-style figures, written as PNG and PDF without a timestamp inside: validation accuracy
against the budget's unit, the training curves (response length, seconds per step, routing,
teacher entropy, training accuracy) and where a step's cost goes, by phase.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evals.report.records import PHASES, UNITS


_NO_DATE = {"png": None, "pdf": {"CreationDate": None}}  # reproducible files: no timestamp inside
METHOD_COLORS = {"grpo": "#1f77b4", "sdpo": "#d62728", "srpo": "#2ca02c", "srpo_no_dw": "#9467bd", "adv_mix": "#ff7f0e",
                 "sdpo_failed_only": "#8c564b", "sdpo_correct_only": "#e377c2"}


def _band_plot(ax, df: pd.DataFrame, x: str, y: str, method: str, window: int = 1):
    """Mean over seeds (after a rolling mean within each run) with a min-max band."""
    curves = []
    for _, run in df.groupby(["benchmark", "seed"]):
        run = run.sort_values(x)
        curves.append(pd.Series(run[y].rolling(window, min_periods=1).mean().values, index=run[x].values))
    if not curves:
        return
    grid = sorted(set().union(*[set(c.index) for c in curves]))
    mat = pd.concat([c.reindex(grid).interpolate(limit_area="inside") for c in curves], axis=1)
    color = METHOD_COLORS.get(method)
    ax.plot(grid, mat.mean(axis=1), label=method, color=color, lw=1.8)
    if mat.shape[1] > 1:
        ax.fill_between(grid, mat.min(axis=1), mat.max(axis=1), color=color, alpha=0.18, lw=0)


def figures(steps: pd.DataFrame, val: pd.DataFrame, cost: pd.DataFrame, methods: list[str], out_dir: Path,
            time_unit: str = "s", unit: str = "seconds") -> list[Path]:
    """Writes PNG and PDF figures; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = ({"s": 1.0, "min": 60.0, "h": 3600.0}[time_unit] if unit == "seconds"
             else {"flops": 1e9, "tokens": 1e3, "steps": 1.0}[unit])
    xlabel = (f"training wall-clock ({time_unit})" if unit == "seconds"
              else {"flops": "training GFLOPs", "tokens": "training tokens (thousands)",
                    "steps": "training steps"}[unit])
    written = []

    def save(fig, name):
        fig.tight_layout()
        for ext in ("png", "pdf"):
            fig.savefig(out_dir / f"{name}.{ext}", dpi=130, metadata=_NO_DATE[ext])
        plt.close(fig)
        written.append(out_dir / f"{name}.png")

    if not val.empty:
        _accuracy_figures(plt, val, methods, unit, scale, xlabel, save)
    if not steps.empty:
        _training_curves(plt, steps, methods, out_dir, written)
    if not cost.empty:
        _cost_figures(plt, cost, unit, save)
    return written


def _accuracy_figures(plt, val: pd.DataFrame, methods: list[str], unit: str, scale: float, xlabel: str, save) -> None:
    """Validation accuracy against the budget's unit, per model: one panel per benchmark and the average."""
    v = val.assign(t=val[UNITS[unit]] / scale)
    for model in v["model"].unique():
        vm = v[v["model"] == model]
        bench = sorted(vm["benchmark"].unique())
        fig, axes = plt.subplots(1, len(bench) + 1, figsize=(4.2 * (len(bench) + 1), 3.4), squeeze=False)
        for ax, b in zip(axes[0], bench + ["average"]):
            for m in methods:
                d = vm[vm["method"] == m]
                if b == "average":
                    d = d.groupby(["seed", "step"], as_index=False).agg(avg_at_k=("avg_at_k", "mean"), t=("t", "mean"),
                                                                        n=("benchmark", "nunique"))
                    d = d[d["n"] == len(bench)].assign(benchmark="average")
                else:
                    d = d[d["benchmark"] == b]
                if len(d):
                    _band_plot(ax, d, "t", "avg_at_k", m, window=2)
            ax.set_title(b if b != "average" else f"average of {len(bench)}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation avg@k")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"{model}: validation accuracy against {xlabel.split(' (')[0]} "
                     "(rolling mean; band = min-max over seeds)", fontsize=10)
        save(fig, f"accuracy_vs_cost_{model}")


def _training_curves(plt, steps: pd.DataFrame, methods: list[str], out_dir: Path, written: list) -> None:
    """Response length, seconds per step, routing, teacher entropy and accuracy over training steps."""
    bench = sorted(steps["benchmark"].unique())

    def per_benchmark(panels, name, title):
        """One row per metric, one column per benchmark; curves over training steps."""
        fig, axes = plt.subplots(len(panels), len(bench), figsize=(4.6 * len(bench) + 1.6, 3.1 * len(panels)),
                                 squeeze=False)
        for row, (col, label, only_routed) in enumerate(panels):
            for j, b in enumerate(bench):
                ax = axes[row][j]
                for m in methods:
                    if only_routed and m == "grpo":
                        continue
                    d = steps[(steps["method"] == m) & (steps["benchmark"] == b)].dropna(subset=[col])
                    if len(d):
                        _band_plot(ax, d, "step", col, m, window=3)
                ax.set_title(f"{b}: {label}", fontsize=9)
                ax.set_xlabel("training step")
                ax.grid(alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        for row in axes:
            for ax in row:
                for handle, legend_label in zip(*ax.get_legend_handles_labels()):
                    if legend_label not in labels:
                        handles.append(handle), labels.append(legend_label)
        fig.legend(handles, labels, loc="center right", fontsize=8)
        fig.suptitle(f"{title} (rolling mean of 3 steps; band = min-max over seeds)", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1 - 1.3 / fig.get_figwidth(), 1))
        for ext in ("png", "pdf"):
            fig.savefig(out_dir / f"{name}.{ext}", dpi=130, metadata=_NO_DATE[ext])
        plt.close(fig)
        written.append(out_dir / f"{name}.png")

    per_benchmark([("response_length_mean", "mean response length (tokens)", False)], "response_length",
                  "Response length over training")
    per_benchmark([("seconds_step", "seconds per step", False)], "seconds_per_step", "Seconds per training step")
    per_benchmark([("frac_sdpo", "fraction routed to SDPO", True),
                   ("teacher_entropy_mean", "teacher entropy on SDPO tokens (nats)", True),
                   ("accuracy", "training accuracy", False)], "routing_and_entropy",
                  "Routing, teacher entropy and training accuracy")


def _cost_figures(plt, cost: pd.DataFrame, unit: str, save) -> None:
    """Where a step's cost goes, by phase, per model (the last window)."""
    last = cost[cost["budget"] == cost["budget"].iloc[-1]] if "budget" in cost else cost
    last = last[last["benchmarks"] == last["benchmarks"].iloc[0]]  # the main block
    for model in last["model"].unique():
        c = last[last["model"] == model].set_index("method")
        fig, ax = plt.subplots(figsize=(8.0, 3.8))
        bottom = pd.Series(0.0, index=c.index)
        # the profile's own unit: seconds for wall-clock budgets; otherwise the deterministic
        # FLOPs (seconds then depend on the machine's load)
        prefix, divisor, ylabel, what = (("s_", 1.0, "seconds per step", "time") if unit == "seconds"
                                         else ("flops_", 1e9, "GFLOPs per step", "compute"))
        for ph in PHASES:
            vals = c[f"{prefix}{ph}"].fillna(0.0) / divisor
            if vals.sum() > 0:
                ax.bar(c.index, vals, bottom=bottom, label=ph)
                bottom += vals
        ax.set_ylabel(ylabel)
        ax.set_title(f"{model}: where a step's {what} goes (window {last['budget'].iloc[0]})", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3, axis="y")
        save(fig, f"cost_phases_{model}")
