import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from srpo_ref.config import ConfigError, load_config
from srpo_ref.run import main


def test_overrides_and_method_default_beta(tiny_base):
    cfg = load_config(None, [f"model.path={tiny_base}", "method.name=srpo_no_dw", "run.seed=3", "optim.lr=1e-3"])
    assert cfg.run.seed == 3 and cfg.optim.lr == 1e-3 and cfg.beta == 0.0
    assert load_config(None, [f"model.path={tiny_base}"]).beta == 1.0


@pytest.mark.parametrize(
    "override, message",
    [
        ("method.nmae=srpo", "unknown config key"),
        ("optim.lr=fast", "optim.lr: expected"),
        ("method.name=ppo", "unknown method"),
        ("data.benchmark=nope", "unknown benchmark"),
        ("rollout.rollouts_per_prompt=1", "at least 2"),
    ],
)
def test_bad_config_values_are_named(tiny_base, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"model.path={tiny_base}", override])


def test_cli_reports_missing_model_and_config(tmp_path, capsys):
    assert main([f"model.path={tmp_path / 'nowhere'}"]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


# Every way a config can be wrong gets one line naming the key, exit 2, before anything loads.
BAD_OVERRIDES = [
    ("optim.mini_batch_prompts=0", "optim.mini_batch_prompts must be at least 1"),
    ("optim.mini_batch_prompts=3", "multiple of optim.mini_batch_prompts"),
    ("eval.k=0", "eval.k must be at least 1"),
    ("rollout.prompts_per_step=-4", "rollout.prompts_per_step must be at least 1"),
    ("rollout.max_response_tokens=-1", "rollout.max_response_tokens"),
    ("optim.lr=-1e-3", "optim.lr must be > 0"),
    ("optim.lr=.nan", "optim.lr must be > 0"),
    ("rollout.top_p=-0.5", "rollout.top_p must be in"),
    ("rollout.top_p=1.5", "rollout.top_p must be in"),
    ("optim.micro_batch_size=-1", "optim.micro_batch_size must be at least 1"),
    ("rollout.temperature=0", "rollout.temperature must be > 0"),
    ("run.max_steps=-3", "run.max_steps must be at least 1"),
    ("run.max_steps=0", "run.max_steps must be at least 1"),
    ("run.budget=-5", "run.budget must be > 0"),
    ("run.budget_unit=hours", "run.budget_unit must be one of"),
    ("run.budget_unit=steps", None),  # fine without a budget
    ("method.topk=0", "method.topk must be at least 1"),
    ("method.alpha=1.5", "method.alpha must be in"),
    ("method.ema_rate=2", "method.ema_rate must be in"),
    ("method.dual_clip=0.5", "method.dual_clip must be > 1"),
    ("method.loss_agg=sum", "method.loss_agg must be one of"),
    ("method.teacher=oracle", "method.teacher must be one of"),
    ("method.teacher_mix=1.5", "method.teacher_mix must be in"),
    ("eval.limit=0", "eval.limit must be at least 1"),
    ("eval.top_p=0", "eval.top_p must be in"),
    ("eval.val_every=-1", "eval.val_every must be >= 0"),
    ("run.seed=-1", "run.seed must be >= 0"),
    ("run.keep_checkpoints=0", "run.keep_checkpoints must be at least 1"),
    ("run.device=tpu", "run.device must be one of"),
    ("data.grader=lenient", "data.grader must be one of"),
    ("data.max_prompt_tokens=0", "data.max_prompt_tokens"),
    ("data.tooluse_system=/nonexistent.txt", "data.tooluse_system"),
    ("model.dtype=int8", "model.dtype must be one of"),
    ("rollout.engine=sglang", "rollout.engine must be one of"),
    ("optim.warmup_steps=1.5", "optim.warmup_steps: expected"),
    ("run.max_steps=true", "run.max_steps: expected"),
    ("method=srpo", "expected a mapping"),
    ("method.name.x=1", "method.name: expected"),
    ("=3", "empty key"),
    ("rollout.temperature", "not of the form"),
]


@pytest.mark.parametrize("override, message", BAD_OVERRIDES)
def test_bad_input_table(tiny_base, override, message, capsys):
    if message is None:
        load_config(None, [f"model.path={tiny_base}", override])
        return
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, [f"model.path={tiny_base}", override])
    assert main([f"model.path={tiny_base}", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("srpo-train: error:") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "must hold a mapping"),
    ("model: [unclosed\n", "not valid YAML"),
    ("model: 3\n", "model: expected a mapping"),
])
def test_bad_yaml_files(tmp_path, text, message, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    assert main(["--config", str(path)]) == 2


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("{not json\n", "malformed JSON"),
    ('{"prompt": "p", "answer": "A", "system": "s"}\n', "row 1 has no field 'idx'"),
])
def test_bad_data_files_exit_2_with_file_and_row(tiny_base, tmp_path, content, message, capsys):
    folder = tmp_path / "sciknoweval" / "physics"
    folder.mkdir(parents=True)
    (folder / "train.json").write_text(content)
    assert main([f"model.path={tiny_base}", "data.benchmark=physics", f"data.data_dir={tmp_path}",
                 f"run.out_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "train.json" in err
    assert not (tmp_path / "out").exists()


REPO = Path(__file__).resolve().parents[2]
HUB_MODEL = "model.path=org/model"  # a hub id: no model directory needed to validate


def test_per_method_section_lies_between_the_file_and_the_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 1.0e-4, mini_batch_prompts: 32}\n"
                    "per_method:\n  grpo:\n    optim: {lr: 1.0e-6, mini_batch_prompts: 8}\n")
    srpo = load_config(path, [HUB_MODEL])
    grpo = load_config(path, [HUB_MODEL, "method.name=grpo"])
    assert (srpo.optim.lr, srpo.optim.mini_batch_prompts) == (1e-4, 32)
    assert (grpo.optim.lr, grpo.optim.mini_batch_prompts) == (1e-6, 8)
    assert load_config(path, [HUB_MODEL, "method.name=grpo", "optim.lr=3e-6"]).optim.lr == 3e-6  # the command line wins
    assert "per_method" not in grpo.to_dict()  # what the run records is the resolved config
    path.write_text(path.read_text() + "method: {name: grpo}\n")  # the file's own method.name picks it too
    assert load_config(path, [HUB_MODEL]).optim.lr == 1e-6


@pytest.mark.parametrize("per_method, message", [
    ("[grpo]", "per_method: expected a mapping of method names"),
    ("{ppo: {}}", "per_method.ppo: unknown method 'ppo'"),
    ("{sdpo: {optim: {lrr: 1}}}", r"unknown config key\(s\) \['per_method.sdpo.optim.lrr'\]"),  # not the run's method
    ("{grpo: {optim: {lr: fast}}}", "per_method.grpo.optim.lr: expected"),
    ("{grpo: {method: {name: sdpo}}}", "cannot change the method"),
])
def test_bad_per_method_sections_are_named(tmp_path, per_method, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"per_method: {per_method}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, [HUB_MODEL])


@pytest.mark.parametrize("profile", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_a_profile_holds_no_trainer_settings_and_its_trainer_yaml_loads_for_each_method(profile):
    """Every setting of a profile's training jobs is in the trainer YAML it names (per method in its
    per_method sections); the pipeline adds only what tells the jobs apart (workflow/rules/common.smk)."""
    train = yaml.safe_load((REPO / "config" / profile).read_text())["train"]
    assert "overrides" not in train and "method_overrides" not in train
    for method in train["methods"] + train.get("ablations", []):
        job = [HUB_MODEL, f"method.name={method}", f"data.benchmark={train['benchmarks'][0]}"]
        load_config(REPO / train["config"], job)


def test_tasks_and_loggers_import_no_config():
    """srpo_ref.config imports both at module level: neither may import it back."""
    code = "import sys, srpo_ref.tasks, srpo_ref.loggers; assert 'srpo_ref.config' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=300)
