"""Training configuration: dataclasses loaded from YAML, with ``section.key=value`` overrides.

Defaults are the paper's SRPO settings (SPEC section 8) except where a field says otherwise. Each
field states what it does and the values it accepts where it is defined (``setting``, ``checked``,
``choice``); ``validate`` reads them from there, and ``srpo_ref/configs/defaults.yaml`` lists them all
(``python -m srpo_ref.config --write-defaults srpo_ref/configs/defaults.yaml`` writes it;
tests/unit/test_config_defaults.py keeps it current).

``load_config(path, overrides)`` layers, later over earlier: the defaults, the YAML file's sections,
the file's ``per_method`` section of the run's ``method.name``, then the overrides. It rejects unknown
keys and wrong types with a message naming the key, and ``validate`` checks ranges, choices, paths
and cross-field rules before any model is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from srpo_ref.errors import ConfigError  # raised here, and caught as srpo_ref.config.ConfigError by callers
from srpo_ref.loggers import LOGGERS
from srpo_ref.distributed import SHARDINGS
from srpo_ref.losses import ENTROPY_BETA, ENTROPY_SOURCES, LOSS_AGGREGATIONS, METHODS, LossConfig
from srpo_ref.normalizers import NORMALIZERS
from srpo_ref.tasks import TASKS

# A trainer YAML's settings for one method only: per_method: {grpo: {optim: {lr: 1.0e-6}}}.
PER_METHOD = "per_method"
DEFAULTS_FILE = Path(__file__).resolve().parent / "configs" / "defaults.yaml"


def setting(default, doc: str):
    """A field with no constraint beyond its type; ``doc``: what it does, in one line."""
    return _field(default, {"doc": doc})


def checked(default, rule, must_be: str, doc: str):
    """A field whose value, unless null, must satisfy ``rule``; ``must_be`` says what that is in words
    (the error reads "<key> must be <must_be>, got <value>")."""
    return _field(default, {"doc": doc, "rule": rule, "must_be": must_be})


_ONE_OF = "{key} must be one of {joined}, got {value!r}"


def choice(default, choices, doc: str, *, error: str = _ONE_OF, listed_as: str = ""):
    """A field whose value (each item, for a list) must be in ``choices``. ``error`` formats the message
    from key, value, names (the choices as a list) and joined (comma-separated): method.name,
    data.benchmark and run.loggers keep their own wording, which scripts and tests match. ``listed_as``
    names a large registry in the defaults file instead of enumerating it."""
    return _field(default, {"doc": doc, "choices": choices, "error": error, "listed_as": listed_as})


def _field(default, metadata: dict):
    if isinstance(default, list):  # a mutable default is built afresh for each instance
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _tooluse_system_ok(value: str) -> bool:
    return value in ("none", "paraphrase") or Path(value).is_file()


@dataclass
class ModelConfig:
    path: str = setting("", "a save_pretrained directory (or a hub id when online)")
    dtype: str = choice("float32", ("float32", "bfloat16", "float16"),
                        "compute dtype of the student's and teacher's forwards")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass (less memory)")


@dataclass
class DataConfig:
    benchmark: str = choice("tiny_mcq", TASKS, "the training benchmark",
                            error="{key}: unknown benchmark {value!r}; known: {names}",
                            listed_as="a name in srpo_ref.tasks.TASKS")
    # random is for smoke tests only: a random model never earns a real reward, so no branch would run
    reward: str = choice("task", ("task", "random"),
                         "task: the benchmark's verifier; random: a seeded coin flip per rollout (in steps.jsonl)")
    data_dir: str | None = setting(None, "the benchmark mirror (null: $SRPO_DATA_DIR or the shared/data mirror)")
    max_prompt_tokens: int = checked(2048, lambda v: v > 0, "a positive number of tokens",
                                     "longer prompts are dropped (and counted) at load time")
    grader: str = choice("upstream", ("upstream", "strict"), "MCQ and Tool Use scoring (srpo_ref.rewards)")
    tooluse_system: str = checked("none", _tooluse_system_ok, "none, paraphrase or a text file",
                                  "the Tool Use system prompt (srpo_ref.tasks)")


@dataclass
class RolloutConfig:
    engine: str = choice("hf", ("hf", "vllm"), "what samples the rollouts: transformers' generate or vLLM")
    prompts_per_step: int = checked(32, lambda v: v > 0, "at least 1", "prompts sampled per training step")
    rollouts_per_prompt: int = checked(8, lambda v: v >= 2,
                                       "at least 2 (group baselines and demonstrations need siblings)",
                                       "rollouts sampled per prompt (its group)")
    temperature: float = checked(1.0, lambda v: v > 0, "> 0 (training samples; the losses divide logits by it)",
                                 "sampling temperature of the rollouts")
    top_p: float = checked(1.0, lambda v: 0 < v <= 1, "in (0, 1]", "nucleus sampling of the rollouts")
    max_response_tokens: int = checked(8192, lambda v: v > 0, "at least 1", "longest rollout response, in tokens")
    vllm_gpu_memory_utilization: float = checked(0.3, lambda v: 0 < v <= 1, "in (0, 1]",
                                                 "vllm engine: the share of GPU memory vLLM may take")
    vllm_sleep: bool = setting(True, "on GPU: free vLLM's weights and KV cache while the trainer updates")
    generation_batch_size: int = checked(256, lambda v: v > 0, "at least 1", "hf engine: sequences per generate call")
    # one engine per group of consecutive ranks (vLLM's external_launcher)
    vllm_tensor_parallel_size: int = checked(1, lambda v: v > 0, "at least 1",
                                             "vllm engine: tensor parallelism over this many ranks (1: an engine each)")
    vllm_enforce_eager: bool = setting(False, "vllm engine on GPU: eager decoding, slower, for debugging "
                                              "(false: vLLM's CUDA graphs)")


@dataclass
class OptimConfig:
    lr: float = checked(5e-6, lambda v: v > 0, "> 0", "AdamW learning rate")
    weight_decay: float = checked(0.01, lambda v: v >= 0, ">= 0", "AdamW weight decay")
    warmup_steps: int = checked(10, lambda v: v >= 0, ">= 0", "linear warm-up steps, then constant")
    grad_clip: float = checked(1.0, lambda v: v > 0, "> 0", "gradient norm clipping")
    mini_batch_prompts: int = checked(32, lambda v: v > 0, "at least 1",
                                      "prompts per optimizer update (prompts_per_step / this = updates per step)")
    micro_batch_size: int = checked(8, lambda v: v > 0, "at least 1", "sequences per forward/backward")
    shared_prefix: bool = setting(True, "each distinct prefix of a micro-batch computed once "
                                        "(srpo_ref.forward.make_batch)")
    # always costs every method the same passes, as the SDPO authors' verl does (cost parity)
    old_logprob: str = choice("auto", ("auto", "always"),
                              "auto: old log-probs only when a step makes several updates; always: every method")


@dataclass
class MethodConfig:
    name: str = choice("srpo", METHODS, "the training method (srpo_ref.losses)",
                       error="{key}: unknown method {value!r}; choose one of {names}")
    success_threshold: float = checked(0.5, lambda v: 0 <= v <= 1, "in [0, 1]",
                                       "a rollout whose reward reaches this is a success")
    std_normalize: bool = setting(False, "divide the group advantages by the group's reward std")
    beta: float | None = checked(None, lambda v: v >= 0, ">= 0 (or null for the method's default)",
                                 "entropy weighting (null: the method's default, srpo 1, others 0)")
    teacher: str = choice("ema", ("ema", "frozen", "live", "mix"),
                          "the self-teacher (mix: teacher_mix * frozen reference + (1 - teacher_mix) * live)")
    # 0.9: what a third-party verl fork's "trust-region" teacher uses
    teacher_mix: float = checked(0.9, lambda v: 0 <= v <= 1, "in [0, 1]", "lambda of teacher=mix")
    ema_rate: float = checked(0.05, lambda v: 0 <= v <= 1, "in [0, 1]", "the EMA teacher's update rate")
    # public SRPO implementations differ here (docs/method.md: "Where public SRPO implementations differ")
    weight_normalizer: str = choice("step", tuple(NORMALIZERS),
                                    "the entropy weights' normaliser: their mean over the step (SPEC section 5), "
                                    "the update or the micro-batch")
    entropy_source: str = choice(LossConfig.entropy_source, ENTROPY_SOURCES,
                                 "the distribution whose entropy sets the weights")
    max_demo_tokens: int = checked(10240, lambda v: v > 0, "at least 1",
                                   "longest demonstration in the teacher's prompt, in tokens (max_reprompt_len)")
    # the loss hyperparameters' defaults live in srpo_ref.losses.LossConfig (the paper's values)
    eps_low: float = checked(LossConfig.eps_low, lambda v: 0 <= v < 1, "in [0, 1)", "PPO clip below the ratio 1")
    eps_high: float = checked(LossConfig.eps_high, lambda v: v >= 0, ">= 0", "PPO clip above the ratio 1")
    dual_clip: float | None = checked(LossConfig.dual_clip, lambda v: v > 1, "> 1 (or null for none)",
                                      "dual-clip bound for negative advantages")
    is_clip: float = checked(LossConfig.is_clip, lambda v: v > 0, "> 0",
                             "cap of the distillation branch's importance ratio")
    topk: int | None = checked(LossConfig.topk, lambda v: v > 0, "at least 1 (or null for the full vocabulary)",
                               "distillation on the student's top-K tokens")
    alpha: float = checked(LossConfig.alpha, lambda v: 0 <= v <= 1, "in [0, 1]",
                           "the generalized JSD's mix (0: KL(teacher || student), 1: KL(student || teacher))")
    add_tail: bool = setting(LossConfig.add_tail, "with topk: add the tail bucket (the mass outside the top-K)")
    logits_chunk: int | None = checked(None, lambda v: v > 0, "at least 1 (or null for automatic)",
                                       "positions per chunk of the vocabulary-sized work (null: ~128 MB of fp32 each)")
    loss_agg: str = choice(LossConfig.loss_agg, LOSS_AGGREGATIONS,
                           "token_mean (SPEC section 6) or seq_mean_token_mean (the SDPO authors' code)")


@dataclass
class EvalConfig:
    val_every: int = checked(5, lambda v: v >= 0, ">= 0 (0: never)", "validate every this many steps")
    k: int = checked(4, lambda v: v > 0, "at least 1", "samples per question (avg@k); the paper uses 16")
    temperature: float = checked(0.6, lambda v: v >= 0, ">= 0 (0: greedy)", "validation sampling temperature")
    top_p: float = checked(0.95, lambda v: 0 < v <= 1, "in (0, 1]", "validation nucleus sampling")
    max_new_tokens: int = checked(8192, lambda v: v > 0, "at least 1", "longest validation response, in tokens")
    limit: int | None = checked(None, lambda v: v > 0, "at least 1 (or null for all)", "first N test questions")
    at_start: bool = setting(True, "validate the base model at step 0")


@dataclass
class RunConfig:
    out_dir: str = setting("runs/default", "where the run's records and checkpoints go")
    seed: int = checked(0, lambda v: v >= 0, ">= 0", "seeds sampling, data order and demonstrations")
    max_steps: int = checked(100, lambda v: v > 0, "at least 1", "training steps at most")
    budget: float | None = checked(None, lambda v: v > 0, "> 0 (or null for none)",
                                   "stop once this much training is consumed, in budget_unit (validation excluded)")
    budget_unit: str = choice("seconds", ("seconds", "flops", "tokens", "steps"),
                              "seconds (wall-clock; the paper's), flops, tokens or steps (deterministic)")
    save_every: int = checked(10, lambda v: v >= 0, ">= 0 (0: only at the end)", "checkpoint every this many steps")
    keep_checkpoints: int = checked(2, lambda v: v > 0, "at least 1", "checkpoints kept on disk")
    device: str = choice("auto", ("auto", "cpu", "cuda"), "where the run trains")
    # srpo_ref/distributed.py; hsdp shards within groups of hsdp_shard_size ranks, replicated across them
    sharding: str = choice("none", SHARDINGS,
                           "none: replicated data parallel; fsdp: FSDP2 per decoder layer; hsdp: FSDP2 on a 2-D mesh")
    hsdp_shard_size: int | None = checked(None, lambda v: v > 0, "at least 1 (or null for the ranks of one node)",
                                          "hsdp: ranks per shard group (null: $LOCAL_WORLD_SIZE)")
    threads: int | None = checked(None, lambda v: v > 0, "at least 1 (or null for torch's default)",
                                  "torch CPU threads")
    # steps.jsonl / val.jsonl are always written; wandb is offline without WANDB_API_KEY, trackio local
    loggers: list[str] = choice(["jsonl"], LOGGERS, "where the records go besides the JSONL files (srpo_ref.loggers)",
                                error="{key}: unknown logger(s) {value}; choose from {names}")
    project: str = setting("srpo-repro", "the wandb / trackio project")
    tensorboard: bool = setting(False, "deprecated: run.loggers=[jsonl,tensorboard]")
    progress: bool = setting(True, "a progress bar on stderr")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def beta(self) -> float:
        return ENTROPY_BETA[self.method.name] if self.method.beta is None else self.method.beta

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value, annotation, where: str):
    """Check ``value`` against a field annotation (str | int | float | bool | None unions, or a
    list of one of them: a single value or a comma-separated string is a list of one or more)."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(items)]
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    hints = typing.get_args(annotation) if is_union else (annotation,)
    if value is None:
        if type(None) in hints:
            return None
        raise ConfigError(f"{where}: null is not allowed (expected {annotation})")
    for h in hints:
        if h is bool and isinstance(value, bool):
            return value
        if h is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if h is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if h is float and isinstance(value, str):  # YAML 1.1 reads "1e-2" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if h is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{where}: expected {annotation}, got {type(value).__name__} {value!r}")


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        keys = sorted(f"{where}.{k}".lstrip(".") for k in unknown)
        raise ConfigError(f"unknown config key(s) {keys}; valid keys under {where or 'top level'}: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{where}.{name}".lstrip(".")
        kwargs[name] = _build(hint, value, key) if dataclasses.is_dataclass(hint) else _coerce(value, hint, key)
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> dict:
    """``["run.seed=3", "method.name=grpo"]`` -> nested dict (values parsed as YAML scalars)."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty key")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return nested


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (model, data, ...), "
                          f"got a {type(data).__name__}")
    return data


def _without_per_method(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != PER_METHOD}


def _check_per_method(per_method) -> None:
    """Every method's section is checked, not only the run's: a typo in grpo's fails an srpo run too."""
    if not isinstance(per_method, dict):
        raise ConfigError(f"{PER_METHOD}: expected a mapping of method names to sections, "
                          f"got {type(per_method).__name__}")
    for name, sections in per_method.items():
        if name not in METHODS:
            raise ConfigError(f"{PER_METHOD}.{name}: unknown method {name!r}; choose one of {list(METHODS)}")
        _build(TrainConfig, sections, f"{PER_METHOD}.{name}")
        if isinstance(sections.get("method"), dict) and "name" in sections["method"]:
            raise ConfigError(f"{PER_METHOD}.{name}.method.name: a method's section cannot change the method")


def _apply_per_method(data: dict, command_line: dict) -> dict:
    """The file's sections, then its per_method section of the run's method.name, then the command line,
    which wins over both (and its method.name picks the section)."""
    merged = _merge(data, command_line)
    per_method = merged.get(PER_METHOD) or {}
    _check_per_method(per_method)
    method = merged.get("method")
    name = method.get("name", MethodConfig.name) if isinstance(method, dict) else MethodConfig.name
    chosen = per_method.get(name, {}) if isinstance(name, str) else {}
    return _merge(_merge(_without_per_method(data), chosen), _without_per_method(command_line))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    data = _read_yaml(path) if path is not None else {}
    try:
        command_line = parse_overrides(overrides or [])
    except yaml.YAMLError as e:
        raise ConfigError(f"an override is not a valid YAML value: {str(e).splitlines()[0]}") from None
    cfg = _build(TrainConfig, _apply_per_method(data, command_line), "")
    validate(cfg)
    return cfg


def _settings(cfg: TrainConfig):
    """(section.key, value, the field's metadata) of every setting, section by section."""
    for section in dataclasses.fields(cfg):
        part = getattr(cfg, section.name)
        for f in dataclasses.fields(part):
            yield f"{section.name}.{f.name}", getattr(part, f.name), f.metadata


def _check_rules(cfg: TrainConfig) -> None:
    for key, value, meta in _settings(cfg):
        rule = meta.get("rule")
        if rule is None or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value) or not rule(value):
            raise ConfigError(f"{key} must be {meta['must_be']}, got {value!r}")


def _check_choices(cfg: TrainConfig) -> None:
    for key, value, meta in _settings(cfg):
        choices = meta.get("choices")
        if choices is None:
            continue
        if isinstance(value, list):
            unknown = [v for v in value if v not in choices]
            if unknown:
                raise ConfigError(_choice_error(meta, key, unknown))
        elif value not in choices:
            raise ConfigError(_choice_error(meta, key, value))


def _choice_error(meta, key: str, value) -> str:
    choices = meta["choices"]
    return meta["error"].format(key=key, value=value, names=list(choices), joined=", ".join(choices))


def _check_cross_field_rules(cfg: TrainConfig) -> None:
    m, r, o = cfg.method, cfg.rollout, cfg.optim
    if r.prompts_per_step % o.mini_batch_prompts:
        raise ConfigError(f"rollout.prompts_per_step ({r.prompts_per_step}) must be a multiple of "
                          f"optim.mini_batch_prompts ({o.mini_batch_prompts})")
    if m.name == "adv_mix" and cfg.beta != 0:
        # adv_mix trains both branches on one sample; the step-wide weight normaliser is applied
        # to the distillation gradients alone, which needs the branches on disjoint samples.
        raise ConfigError("method.beta must be 0 for adv_mix (its samples carry both branches)")
    if m.weight_normalizer == "step" and cfg.beta > 0 and r.prompts_per_step // o.mini_batch_prompts > 1:
        # the step's mean needs every update's teacher entropies before the first update
        raise ConfigError("method.weight_normalizer=step needs one optimizer update per step with entropy weights "
                          f"(here {r.prompts_per_step // o.mini_batch_prompts}); set method.weight_normalizer=update")
    if m.entropy_source == "topk_tail" and m.topk is None:
        raise ConfigError("method.entropy_source=topk_tail needs method.topk")
    if cfg.run.budget_unit == "steps" and cfg.run.budget is not None and cfg.run.budget != int(cfg.run.budget):
        raise ConfigError(f"run.budget must be a whole number of steps with budget_unit=steps, got {cfg.run.budget}")


def _check_model_path(cfg: TrainConfig) -> None:
    if not cfg.model.path:
        raise ConfigError("model.path is required (a save_pretrained directory)")
    p = Path(cfg.model.path)
    # a two-part relative name that is not on disk is a hub id (org/model)
    looks_local = p.is_absolute() or cfg.model.path.startswith(".") or p.exists() or len(p.parts) != 2
    if looks_local and not (p / "config.json").exists():
        raise ConfigError(f"model.path {cfg.model.path!r} is not a model directory (no config.json there)")


def validate(cfg: TrainConfig, check_paths: bool = True) -> None:
    """Ranges, choices and cross-field rules of the whole config (and, with ``check_paths``, the
    model directory): one ConfigError naming the key, before anything loads."""
    _check_rules(cfg)
    _check_choices(cfg)
    _check_cross_field_rules(cfg)
    if check_paths:
        _check_model_path(cfg)


def _allowed(meta) -> str:
    """The field's accepted values in words, for the defaults file ("" when only its type limits it)."""
    if "must_be" in meta:
        return f"must be {meta['must_be']}"
    if "choices" in meta:
        return meta["listed_as"] or f"one of: {', '.join(meta['choices'])}"
    return ""


def _yaml_value(value) -> str:
    """A default as YAML reads it back (a scalar, or a list in flow style)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def defaults_yaml() -> str:
    """The text of srpo_ref/configs/defaults.yaml: every setting's default, with what it does and the
    values it accepts as comments above it. The file is itself a valid trainer YAML."""
    lines = [
        "# Every training setting with its default, what it does and the values it accepts. Generated from",
        "# srpo_ref/config.py by: python -m srpo_ref.config --write-defaults srpo_ref/configs/defaults.yaml",
        "# (tests/unit/test_config_defaults.py fails while this file and the dataclasses differ). A trainer YAML may",
        f"# also hold {PER_METHOD}: {{<method.name>: {{<section>: {{<key>: value}}}}}}, settings for one method",
        "# only, over its sections; section.key=value on the command line wins over both.",
    ]
    defaults = TrainConfig()
    for section in dataclasses.fields(defaults):
        part = getattr(defaults, section.name)
        lines += ["", f"{section.name}:"]
        for f in dataclasses.fields(part):
            lines.append(f"  # {f.metadata['doc']}")
            if _allowed(f.metadata):
                lines.append(f"  # {_allowed(f.metadata)}")
            lines.append(f"  {f.name}: {_yaml_value(getattr(part, f.name))}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srpo_ref.config", description="The trainer's settings and defaults.")
    ap.add_argument("--write-defaults", metavar="PATH", type=Path,
                    help=f"write every setting's default, choices and doc (the committed one: {DEFAULTS_FILE.name})")
    a = ap.parse_args(argv)
    if a.write_defaults is None:
        sys.stdout.write(defaults_yaml())
    else:
        a.write_defaults.write_text(defaults_yaml())
    return 0


if __name__ == "__main__":
    sys.exit(main())
