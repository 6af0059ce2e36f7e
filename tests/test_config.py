import pytest

from srpo_ref.config import ConfigError, load_config
from srpo_ref.trainer import main


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
