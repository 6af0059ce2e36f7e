"""lm-evaluation-harness glue: datasets come from srpo_ref.tasks (same prompts as training and
srpo-eval) and every response is scored by srpo_ref.rewards (one implementation of each reward).

Data directory: $SRPO_DATA_DIR, else the shared/data mirror beside the checkout, else upstream.
"""

import json
import os
from functools import partial

from srpo_ref import rewards, tasks


def _load(name, **kwargs):
    import datasets

    examples = tasks.load_task(name, "test", kwargs.get("data_dir") or os.environ.get("SRPO_DATA_DIR"))
    rows = [{"id": ex.id, "system": next((m["content"] for m in ex.messages if m["role"] == "system"), ""),
             "user": next(m["content"] for m in ex.messages if m["role"] == "user"),
             "gold": json.dumps(ex.gold), "kind": ex.kind} for ex in examples]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


for _name in tasks.TASKS:
    globals()[f"load_{_name}"] = partial(_load, _name)


def process_results(doc, results):
    """avg@k: the mean reward over the question's samples (``results[0]`` holds all ``repeats``
    samples under the template's ``take_first_k`` filter; a single string is one sample)."""
    samples = results[0] if isinstance(results[0], list) else [results[0]]
    gold = json.loads(doc["gold"])
    return {"acc": sum(rewards.score(doc["kind"], s, gold) for s in samples) / len(samples)}
