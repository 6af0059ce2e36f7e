"""results/<profile>/report.md: tables, figures, the paper's claims checked one by one, provenance."""

import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(snakemake.scriptdir)))
from _log import to_log  # noqa: E402

from srpo_ref import report  # noqa: E402
from srpo_ref.trainer import provenance  # noqa: E402

to_log(snakemake)
cfg = snakemake.config
out = Path(snakemake.output[0])
tables = Path(snakemake.input.cost).parent
figdir = Path(snakemake.input.figures)
steps, val = report.load_runs(Path(snakemake.params.runs))
train = cfg["train"]
budgets = cfg["budgets"]
last = budgets[-1]["label"]
t1 = pd.read_csv(tables / "table1.csv") if (tables / "table1.csv").stat().st_size > 1 else pd.DataFrame()
cost = pd.read_csv(tables / "cost.csv") if (tables / "cost.csv").stat().st_size > 1 else pd.DataFrame()


def slope(df, col):
    d = df.dropna(subset=[col])
    if len(d) < 3:
        return float("nan")
    x, y = d["step"].astype(float), d[col].astype(float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / max(((x - x.mean()) ** 2).sum(), 1e-12))


claims = []


def claim(text, ok, evidence, noise=False):
    mark = "n/a" if ok is None else ("within seed noise" if noise else ("reproduced" if ok else "not reproduced"))
    claims.append(f"| {text} | {mark} | {evidence} |")


if not t1.empty:
    avg = t1[(t1["benchmark"] == "average")]
    for model in avg["model"].unique():
        a = avg[avg["model"] == model]
        get = lambda m, b: a[(a["method"] == m) & (a["budget"] == b)]["ours_mean"]
        spread = lambda m, b: float(a[(a["method"] == m) & (a["budget"] == b)]["ours_std"].fillna(0).iloc[0])
        s = get("srpo", last)
        for other, paper_margin in (("grpo", "+3.4"), ("sdpo", "+6.3")):
            o = get(other, last)
            if len(s) and len(o):
                sv, ov = float(s.iloc[0]), float(o.iloc[0])
                noise = abs(sv - ov) <= spread("srpo", last) + spread(other, last)
                claim(f"{model}: SRPO beats {other.upper()} on the average at {last} (paper 8B: {paper_margin})", sv > ov,
                      f"SRPO {sv * 100:.1f} ± {spread('srpo', last) * 100:.1f} vs {other.upper()} {ov * 100:.1f} ± {spread(other, last) * 100:.1f}", noise)
        first = budgets[0]["label"]
        f = {m: get(m, first) for m in ("grpo", "sdpo", "srpo")}
        if all(len(v) for v in f.values()):
            f = {m: float(v.iloc[0]) for m, v in f.items()}
            claim(f"{model}: SDPO rises faster than GRPO early ({first})", f["sdpo"] > f["grpo"],
                  f"SDPO {f['sdpo'] * 100:.1f} vs GRPO {f['grpo'] * 100:.1f}")
        if len(budgets) >= 2:
            d_prev, d_last = get("sdpo", budgets[-2]["label"]), get("sdpo", last)
            if len(d_prev) and len(d_last):
                claim(f"{model}: SDPO stalls (its best at {budgets[-2]['label']} equals its best at {last})",
                      abs(float(d_last.iloc[0]) - float(d_prev.iloc[0])) < 1e-9,
                      f"{float(d_prev.iloc[0]) * 100:.1f} → {float(d_last.iloc[0]) * 100:.1f}")
evals = report.load_evals(Path(snakemake.params.work) / "evals")
if not evals.empty and not val.empty:
    for (model, b), g in val[val["method"] == "sdpo"].groupby(["model", "benchmark"]):
        best = g.groupby("seed")["avg_at_k"].max().mean()
        fin = evals[(evals["model"] == model) & (evals["method"] == "sdpo") & (evals["benchmark"] == b) & (evals["train_benchmark"] == b)]["avg_at_k"]
        if len(fin):
            claim(f"{model}/{b}: SDPO collapses late (final checkpoint well below its best validation)", fin.mean() < best - 0.05,
                  f"best validation {best * 100:.1f}, final {fin.mean() * 100:.1f}")
if not steps.empty:
    srpo = steps[(steps["method"] == "srpo") & steps["benchmark"].isin(train["benchmarks"])]
    if len(srpo):
        per_run = [slope(r, "frac_sdpo") for _, r in srpo.groupby(["model", "benchmark", "seed"])]
        claim("SRPO's SDPO-routed fraction falls over training", all(x < 0 for x in per_run),
              "slopes per run: " + ", ".join(f"{x:+.4f}/step" for x in per_run))
        per_run = [slope(r, "teacher_entropy_mean") for _, r in srpo.groupby(["model", "benchmark", "seed"])]
        claim("SRPO's teacher entropy rises over training", all(x > 0 for x in per_run if x == x) if per_run else None,
              "slopes per run: " + ", ".join(f"{x:+.4f}/step" for x in per_run))
        sd = steps[(steps["method"] == "sdpo") & steps["benchmark"].isin(train["benchmarks"])]
        if len(sd):
            a, b = srpo["tokens_teacher_forward"].mean(), sd["tokens_teacher_forward"].mean()
            claim("SRPO runs the teacher on fewer tokens per step than SDPO", a < b, f"{a:.0f} vs {b:.0f} tokens/step")
if not cost.empty:
    c = cost[(cost["budget"] == last) & (cost["benchmarks"] == cost["benchmarks"].iloc[0])]  # main methods, training benchmarks
    for model in c["model"].unique():
        cm = c[c["model"] == model].set_index("method")["s_per_step"]
        if "srpo" in cm and "grpo" in cm:
            claim(f"{model}: SRPO is cheaper per step than GRPO in the {last} window (paper: -17.2%)", cm["srpo"] < cm["grpo"],
                  f"{cm['srpo']:.3f} vs {cm['grpo']:.3f} s/step ({(cm['srpo'] / cm['grpo'] - 1) * 100:+.1f}%)")
        if "srpo" in cm and "sdpo" in cm:
            claim(f"{model}: SRPO is cheaper per step than SDPO in the {last} window", cm["srpo"] < cm["sdpo"],
                  f"{cm['srpo']:.3f} vs {cm['sdpo']:.3f} s/step ({(cm['srpo'] / cm['sdpo'] - 1) * 100:+.1f}%)")

read = lambda name: (tables / name).read_text()
figs = sorted(figdir.glob("*.png"))
rel = lambda p: Path(p).relative_to(out.parent)
prov = provenance()
prov.pop("argv", None)
models = {m: json.loads(Path(f"{snakemake.params.work}/models/{m}/warmup.json").read_text()).get("accuracy")
          for m, s in cfg["models"].items() if s["source"] == "tiny" and Path(f"{snakemake.params.work}/models/{m}/warmup.json").exists()}
budget_line = ", ".join(f"{b['label']} = {b['seconds']:g} s" for b in budgets)

text = f"""# SRPO reproduction report: profile `{cfg['profile']}`

Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `snakemake` from the records under `work/{cfg['profile']}/`.
Methods: {', '.join(train['methods'])}; ablations: {', '.join(train.get('ablations', [])) or 'none'}; benchmarks:
{', '.join(train['benchmarks'])}; seeds: {train['seeds']}. Budgets (training wall-clock, validation excluded): {budget_line};
the labels are the paper's windows they stand for.

## The paper's claims, checked on this profile's runs

| claim | verdict | evidence |
|---|---|---|
{chr(10).join(claims) if claims else '| (no runs) | n/a | |'}

A verdict on a tiny model and synthetic tasks says whether the mechanism behaves as described, not whether the paper's
numbers hold at 8B scale; differences smaller than the spread across seeds (the ± in the tables) mean nothing.

## Table 1: best validation avg@k within each budget

{read('table1.md')}
SRPO's margins against the paper's (benchmark average):

{read('shape_vs_paper.md')}
## Table 2: ablations (average over {', '.join(train.get('ablation_benchmarks', [])) or 'n/a'})

{read('table2.md')}
## Compute cost per step

{read('cost.md')}
## Final checkpoints, evaluated

{read('final_eval.md')}
## Math and code

{read('mathcode.md')}
## Graders on the real benchmark data (gold answer must score 1, a wrong answer 0)

{read('graders.md')}
## Figures

{chr(10).join(f'![{p.stem}]({rel(p)})' for p in figs)}

## Provenance

- base models: {json.dumps({m: s for m, s in cfg['models'].items()})}
- tiny base-model accuracy after warm-up (greedy / sampled T=1 / self-teacher with a demonstration): {json.dumps(models) if models else 'n/a'}
- code: commit `{prov['git_commit']}`{' (uncommitted changes present)' if prov['git_dirty'] else ''}
- software: Python {prov['python']}, torch {prov['torch']}, transformers {prov['transformers']}
- hardware: {prov['platform']}, {prov['cpu_count']} CPUs, GPU: {prov['cuda'] or 'none'}
- per-run config, provenance and step records: `work/{cfg['profile']}/runs/<model>/<benchmark>/<method>/seed<k>/`

<details><summary>pipeline config</summary>

```yaml
{yaml.safe_dump(dict(cfg), sort_keys=False)}```
</details>
"""
out.write_text(text)
print(text)
