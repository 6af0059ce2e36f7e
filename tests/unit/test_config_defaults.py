"""srpo_ref/configs/defaults.yaml is generated from the config dataclasses: a changed default, range,
choice or doc fails here until the file is regenerated with
``python -m srpo_ref.config --write-defaults srpo_ref/configs/defaults.yaml``."""

import dataclasses

import yaml

from srpo_ref.config import DEFAULTS_FILE, TrainConfig, defaults_yaml, main


def test_committed_defaults_file_is_current():
    assert DEFAULTS_FILE.read_text() == defaults_yaml(), (
        "stale: python -m srpo_ref.config --write-defaults srpo_ref/configs/defaults.yaml")


def test_defaults_file_reads_back_as_the_defaults():
    assert yaml.safe_load(DEFAULTS_FILE.read_text()) == TrainConfig().to_dict()


def test_write_defaults_command(tmp_path):
    assert main(["--write-defaults", str(tmp_path / "defaults.yaml")]) == 0
    assert (tmp_path / "defaults.yaml").read_text() == defaults_yaml()


def test_every_setting_says_what_it_does():
    for section in dataclasses.fields(TrainConfig()):
        for f in dataclasses.fields(getattr(TrainConfig(), section.name)):
            assert f.metadata.get("doc"), f"{section.name}.{f.name} has no doc"
