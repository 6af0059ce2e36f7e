"""The pipeline's analysis, from the runs' own records: tables, compute cost, figures, the paper's
claims with their verdicts, and the report's sections. Each module uses only those above it here:

    stats         95% t-intervals, the verdict rule and its text, mean ± std cells, the cost-verdict rule
    records       reading runs, evaluations and the paper's numbers; phases and budget units
    windows       budget windows over validations: best, last minus step 0, the base row
    sections      the budgets line, the task-choice section, the pre-checks table
    tables        Table 1, SRPO's margins against the paper's, Table 2, final evaluations
    cost          cost per step by phase and window, execution policy, the cost table
    plots         the paper-style figures (PNG and PDF)
    paper_claims  every claim of the paper a profile can check, with its verdict and evidence
"""

from evals.report.cost import BREAKDOWN_PHASES, configuration_differences, cost_markdown, cost_table
from evals.report.paper_claims import claims
from evals.report.plots import figures
from evals.report.records import PHASES, UNIT_LABELS, UNITS, load_evals, load_paper, load_runs
from evals.report.sections import budget_text, precheck_markdown, task_choice_markdown
from evals.report.stats import COST_VERDICT_RULE, _t975, interval, interval_text, verdict
from evals.report.tables import (eval_markdown, final_eval_table, shape_comparison, table1, table1_markdown,
                                 table2)
from evals.report.windows import base_validation, best_within, per_seed_best, per_seed_gain_over_base

__all__ = [
    "BREAKDOWN_PHASES", "COST_VERDICT_RULE", "PHASES", "UNITS", "UNIT_LABELS", "_t975", "base_validation",
    "best_within", "budget_text", "claims", "configuration_differences", "cost_markdown", "cost_table",
    "eval_markdown", "figures", "final_eval_table", "interval", "interval_text", "load_evals", "load_paper",
    "load_runs", "per_seed_best", "per_seed_gain_over_base", "precheck_markdown", "shape_comparison", "table1",
    "table1_markdown", "table2", "task_choice_markdown", "verdict",
]
