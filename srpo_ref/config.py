"""Training configuration: dataclasses loaded from YAML, with ``section.key=value`` overrides.

Defaults are the paper's SRPO settings (SPEC section 8) except where a field says otherwise.
``load_config(path, overrides)`` rejects unknown keys and wrong types with a message naming the
key, and ``validate`` checks paths and cross-field rules before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from srpo_ref.losses import ENTROPY_BETA, METHODS, LossConfig


class ConfigError(ValueError):
    pass


@dataclass
class ModelConfig:
    path: str = ""  # a save_pretrained directory (or a hub id when online)
    dtype: str = "float32"  # float32 | bfloat16 (compute dtype of student and teacher forwards)
    gradient_checkpointing: bool = False


@dataclass
class DataConfig:
    benchmark: str = "tiny_mcq"  # a name in srpo_ref.tasks.TASKS
    # task: the benchmark's verifier. random: a seeded coin flip per rollout, for smoke tests
    # only (a random model never earns a real reward, so no branch would run); recorded in steps.jsonl
    reward: str = "task"
    data_dir: str | None = None  # default: $SRPO_DATA_DIR or the shared/data mirror
    max_prompt_tokens: int = 2048  # longer prompts are dropped (and counted) at load time
    grader: str = "upstream"  # upstream | strict (srpo_ref.rewards: MCQ and Tool Use scoring)
    tooluse_system: str = "none"  # none | paraphrase | path to a text file (srpo_ref.tasks)


@dataclass
class RolloutConfig:
    engine: str = "hf"  # hf | vllm
    prompts_per_step: int = 32
    rollouts_per_prompt: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_response_tokens: int = 8192
    vllm_gpu_memory_utilization: float = 0.3
    vllm_sleep: bool = True  # on GPU: free vLLM's weights and KV cache while the trainer updates
    generation_batch_size: int = 256  # hf engine: sequences per generate call
    # vllm engine: tensor parallelism over this many consecutive ranks (one engine per group of
    # ranks, vLLM's external_launcher); 1: one engine per rank
    vllm_tensor_parallel_size: int = 1
    # vllm engine on GPU: CUDA graphs for decoding (false: vLLM's default capture; true: eager,
    # slower, for debugging)
    vllm_enforce_eager: bool = False


@dataclass
class OptimConfig:
    lr: float = 5e-6
    weight_decay: float = 0.01
    warmup_steps: int = 10  # linear warm-up, then constant
    grad_clip: float = 1.0
    mini_batch_prompts: int = 32  # prompts per optimizer update (prompts_per_step / this = updates per step)
    micro_batch_size: int = 8  # sequences per forward/backward
    shared_prefix: bool = True  # each distinct prefix of a micro-batch computed once (srpo_ref.trainer.make_batch)
    # auto: old log-probs only when a step makes several updates (exactly on-policy otherwise);
    # always: every method recomputes them, as the SDPO authors' verl does (cost parity)
    old_logprob: str = "auto"


@dataclass
class MethodConfig:
    name: str = "srpo"  # grpo | sdpo | srpo | srpo_no_dw | adv_mix | sdpo_failed_only | sdpo_correct_only
    success_threshold: float = 0.5
    std_normalize: bool = False
    beta: float | None = None  # entropy weighting; None = the method's default (srpo 1, others 0)
    teacher: str = "ema"  # ema | frozen | live | mix (teacher_mix * frozen reference + (1 - teacher_mix) * live student logits)
    teacher_mix: float = 0.9  # lambda of teacher=mix (a third-party verl fork's "trust-region" teacher uses 0.9)
    ema_rate: float = 0.05
    # the entropy weights' normaliser: the mean raw weight over the step (SPEC section 5), the
    # optimizer update, or each micro-batch (README: "Where public SRPO implementations differ")
    weight_normalizer: str = "step"  # step | update | micro_batch
    entropy_source: str = LossConfig.entropy_source  # full | topk_tail: the distribution whose entropy H is
    max_demo_tokens: int = 10240  # max_reprompt_len
    # loss hyperparameters: defaults live in srpo_ref.losses.LossConfig (the paper's values)
    eps_low: float = LossConfig.eps_low
    eps_high: float = LossConfig.eps_high
    dual_clip: float | None = LossConfig.dual_clip
    is_clip: float = LossConfig.is_clip
    topk: int | None = LossConfig.topk
    alpha: float = LossConfig.alpha
    add_tail: bool = LossConfig.add_tail
    logits_chunk: int | None = None  # positions per chunk of the vocabulary-sized work (None: about 128 MB of fp32 each)
    loss_agg: str = LossConfig.loss_agg  # token_mean (SPEC section 6) | seq_mean_token_mean (the SDPO authors' code)


@dataclass
class EvalConfig:
    val_every: int = 5
    k: int = 4  # samples per question (avg@k); the paper uses 16
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 8192
    limit: int | None = None  # first N test questions (None: all)
    at_start: bool = True  # validate the base model at step 0


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    seed: int = 0
    max_steps: int = 100
    budget: float | None = None  # stop once this much training is consumed, in budget_unit (validation excluded)
    budget_unit: str = "seconds"  # seconds (wall-clock; the paper's) | flops | tokens | steps (deterministic)
    save_every: int = 10
    keep_checkpoints: int = 2
    device: str = "auto"  # auto | cpu | cuda
    # none (replicated data parallel) | fsdp (FSDP2 per decoder layer over all ranks) | hsdp
    # (FSDP2 on a 2-D mesh: sharded within groups of hsdp_shard_size ranks, replicated across
    # them); srpo_ref/distributed.py
    sharding: str = "none"
    hsdp_shard_size: int | None = None  # hsdp: ranks per shard group (None: $LOCAL_WORLD_SIZE, one node)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    # where the records go besides steps.jsonl / val.jsonl (always written): any of jsonl,
    # tensorboard, wandb (offline without WANDB_API_KEY), trackio (local); srpo_ref/loggers.py
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    project: str = "srpo-repro"  # the wandb / trackio project
    tensorboard: bool = False  # deprecated: run.loggers=[jsonl,tensorboard]
    progress: bool = True


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
    hints = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
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
        raise ConfigError(f"unknown config key(s) {sorted(f'{where}.{k}'.lstrip('.') for k in unknown)}; valid keys under {where or 'top level'}: {sorted(names)}")
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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections (model, data, ...), got a {type(data).__name__}")
    try:
        data = _merge(data, parse_overrides(overrides or []))
    except yaml.YAMLError as e:
        raise ConfigError(f"an override is not a valid YAML value: {str(e).splitlines()[0]}") from None
    cfg = _build(TrainConfig, data, "")
    validate(cfg)
    return cfg


# (key, check, what it must be): every numeric field has a range, checked before anything loads.
_POS, _NONNEG = (lambda v: v > 0), (lambda v: v >= 0)
_RANGES = [
    ("data.max_prompt_tokens", _POS, "a positive number of tokens"),
    ("rollout.prompts_per_step", _POS, "at least 1"),
    ("rollout.rollouts_per_prompt", lambda v: v >= 2, "at least 2 (group baselines and demonstrations need siblings)"),
    ("rollout.temperature", _POS, "> 0 (training samples; the losses divide logits by it)"),
    ("rollout.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("rollout.max_response_tokens", _POS, "at least 1"),
    ("rollout.vllm_gpu_memory_utilization", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("rollout.generation_batch_size", _POS, "at least 1"),
    ("optim.lr", _POS, "> 0"),
    ("optim.weight_decay", _NONNEG, ">= 0"),
    ("optim.warmup_steps", _NONNEG, ">= 0"),
    ("optim.grad_clip", _POS, "> 0"),
    ("optim.mini_batch_prompts", _POS, "at least 1"),
    ("optim.micro_batch_size", _POS, "at least 1"),
    ("method.success_threshold", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("method.beta", _NONNEG, ">= 0 (or null for the method's default)"),
    ("method.ema_rate", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("method.max_demo_tokens", _POS, "at least 1"),
    ("method.eps_low", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("method.eps_high", _NONNEG, ">= 0"),
    ("method.dual_clip", lambda v: v > 1, "> 1 (or null for none)"),
    ("method.is_clip", _POS, "> 0"),
    ("method.topk", _POS, "at least 1 (or null for the full vocabulary)"),
    ("method.alpha", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("method.logits_chunk", _POS, "at least 1 (or null for automatic)"),
    ("eval.val_every", _NONNEG, ">= 0 (0: never)"),
    ("eval.k", _POS, "at least 1"),
    ("eval.temperature", _NONNEG, ">= 0 (0: greedy)"),
    ("eval.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("eval.max_new_tokens", _POS, "at least 1"),
    ("eval.limit", _POS, "at least 1 (or null for all)"),
    ("run.seed", _NONNEG, ">= 0"),
    ("run.max_steps", _POS, "at least 1"),
    ("run.budget", _POS, "> 0 (or null for none)"),
    ("run.save_every", _NONNEG, ">= 0 (0: only at the end)"),
    ("run.keep_checkpoints", _POS, "at least 1"),
    ("run.threads", _POS, "at least 1 (or null for torch's default)"),
    ("run.hsdp_shard_size", _POS, "at least 1 (or null for the ranks of one node)"),
    ("rollout.vllm_tensor_parallel_size", _POS, "at least 1"),
]
_CHOICES = [
    ("model.dtype", ("float32", "bfloat16", "float16")),
    ("data.grader", ("upstream", "strict")),
    ("rollout.engine", ("hf", "vllm")),
    ("method.teacher", ("ema", "frozen", "live", "mix")),
    ("method.weight_normalizer", ("step", "update", "micro_batch")),
    ("method.entropy_source", ("full", "topk_tail")),
    ("method.loss_agg", ("token_mean", "seq_mean_token_mean")),
    ("optim.old_logprob", ("auto", "always")),
    ("run.budget_unit", ("seconds", "flops", "tokens", "steps")),
    ("run.device", ("auto", "cpu", "cuda")),
    ("run.sharding", ("none", "fsdp", "hsdp")),
    ("data.reward", ("task", "random")),
]


def _get(cfg: TrainConfig, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def validate(cfg: TrainConfig, check_paths: bool = True) -> None:
    """Ranges, choices and cross-field rules of the whole config (and, with ``check_paths``, the
    model directory): one ConfigError naming the key, before anything loads."""
    import math as _math

    from srpo_ref.tasks import TASKS

    for key, ok, what in _RANGES:
        v = _get(cfg, key)
        if v is None:
            continue
        if isinstance(v, float) and not _math.isfinite(v) or not ok(v):
            raise ConfigError(f"{key} must be {what}, got {v!r}")
    for key, choices in _CHOICES:
        if _get(cfg, key) not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {_get(cfg, key)!r}")
    from srpo_ref.loggers import LOGGERS

    unknown = [n for n in cfg.run.loggers if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"run.loggers: unknown logger(s) {unknown}; choose from {list(LOGGERS)}")
    m, r, o = cfg.method, cfg.rollout, cfg.optim
    if m.name not in METHODS:
        raise ConfigError(f"method.name: unknown method {m.name!r}; choose one of {list(METHODS)}")
    if cfg.data.benchmark not in TASKS:
        raise ConfigError(f"data.benchmark: unknown benchmark {cfg.data.benchmark!r}; known: {list(TASKS)}")
    if r.prompts_per_step % o.mini_batch_prompts:
        raise ConfigError(f"rollout.prompts_per_step ({r.prompts_per_step}) must be a multiple of optim.mini_batch_prompts ({o.mini_batch_prompts})")
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
    if not 0.0 <= m.teacher_mix <= 1.0:
        raise ConfigError(f"method.teacher_mix must be in [0, 1], got {m.teacher_mix!r}")
    if cfg.run.budget_unit == "steps" and cfg.run.budget is not None and cfg.run.budget != int(cfg.run.budget):
        raise ConfigError(f"run.budget must be a whole number of steps with budget_unit=steps, got {cfg.run.budget}")
    if cfg.data.tooluse_system not in ("none", "paraphrase") and not Path(cfg.data.tooluse_system).is_file():
        raise ConfigError(f"data.tooluse_system must be none, paraphrase or a text file, got {cfg.data.tooluse_system!r}")
    if check_paths:
        if not cfg.model.path:
            raise ConfigError("model.path is required (a save_pretrained directory)")
        p = Path(cfg.model.path)
        looks_local = p.is_absolute() or cfg.model.path.startswith(".") or p.exists() or len(p.parts) != 2
        if looks_local and not (p / "config.json").exists():
            raise ConfigError(f"model.path {cfg.model.path!r} is not a model directory (no config.json there)")
