"""Table 1, Table 2, the shape comparison, the final-evaluation and math/code tables, graders."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))
from _log import to_log  # noqa: E402

from evals import report  # noqa: E402
from srpo_ref import tasks  # noqa: E402

to_log(snakemake)
cfg, out = snakemake.config, snakemake.output
steps, val = report.load_runs(Path(snakemake.params.runs))
evals = report.load_evals(Path(snakemake.params.evals))
paper = report.load_paper(Path(snakemake.params.paper))
ref = cfg.get("report", {}).get("reference_model", "Qwen3-8B")
paper_models = {m: s.get("paper_name") for m, s in cfg["models"].items()}
budgets = cfg["budgets"]
unit = cfg.get("budget_unit", "seconds")
train = cfg["train"]

main_val = val[val["benchmark"].isin(train["benchmarks"])] if not val.empty else val
main_evals = evals[evals["benchmark"].isin(train["benchmarks"])] if not evals.empty else evals
t1 = report.table1(main_val, main_evals, budgets, train["methods"], paper["table1_avg16"], paper_models, unit)
t1.to_csv(out.table1_csv, index=False)
Path(out.table1).write_text(report.table1_markdown(t1, budgets))

shape = report.shape_comparison(t1, paper["table1_avg16"], budgets, ref)
Path(out.shape).write_text(shape.to_markdown(index=False, floatfmt="+.3f") + "\n" if not shape.empty
                           else "_SRPO, GRPO and SDPO runs are needed._\n")

variants = [m for m in ["srpo"] + train.get("ablations", []) if m in set(val.get("method", []))]
t2 = report.table2(val, budgets, variants, train.get("ablation_benchmarks", []), paper["table2_ablations"], ref, unit)
t2.to_csv(out.table2_csv, index=False)
Path(out.table2).write_text(t2.to_markdown(index=False, floatfmt=".3f") + "\n" if not t2.empty
                            else "_No ablation runs in this profile._\n")

final = report.final_eval_table(evals)
final.to_csv(out.evals_csv, index=False)
Path(out.evals).write_text(report.eval_markdown(final, cfg["evaluation"]["benchmarks"]))
Path(out.mathcode).write_text(report.eval_markdown(final, list(tasks.MATHCODE_BENCHMARKS),
                                                   "_Math and code benchmarks are not evaluated in this profile "
                                                   "(see config evaluation.extra_benchmarks)._"))

lines = ["| benchmark | grader | rows | gold scored 1 | wrong scored 0 | gold upstream cannot score | failures | "
         "code tests run in |",
         "|---|---|---|---|---|---|---|---|"]
for g in snakemake.input.graders:
    r = json.loads(Path(g).read_text())
    where = "–"
    if r.get("judge"):  # code rows: the judge process (proxy) or the in-process fallback
        # (docs/judge.md: The code judge)
        where = ", ".join(f"{k} {v}" for k, v in sorted(r["judge"].items()))
        if r.get("in_process_rows"):
            where += " (" + ", ".join(sorted(r["in_process_rows"])) + ")"
    for mode, m in r["by_grader"].items():
        lines.append(f"| {r['benchmark']} | {mode} | {r['rows']} | {m['gold_scored_1']} | {m['wrong_scored_0']} | "
                     f"{', '.join(m['known_unscorable']) or '–'} | {', '.join(m['failures'][:3]) or '–'} | {where} |")
Path(out.graders).write_text("\n".join(lines) + "\n" if snakemake.input.graders
                             else "_No grader self-check in this profile._\n")
print(t1.to_string())
