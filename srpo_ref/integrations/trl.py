"""SRPO (Sample-Routed Policy Optimization) for TRL: ``SRPOTrainer`` and ``SRPOConfig``.

Built on TRL's experimental ``SDPOTrainer`` (``trl.experimental.sdpo``), which blends
``(1 - w) * policy loss + w * distillation`` over every sample. SRPO instead routes each sample
to one branch (SPEC section 2), exactly as ``srpo_ref.losses.route_samples(method="srpo")``:

- correct samples, and failed samples without a correct sibling, train on the clipped policy
  gradient (Dr. GRPO advantages ``r_i - mean_group(r)``);
- failed samples with a correct sibling are distilled from the self-teacher, which re-scores the
  sample's own response with one correct sibling's response as demonstration in its prompt
  (``srpo_ref.teacher``: the same prompt format as the reference trainer);
- distilled tokens are weighted by ``exp(-beta * H)`` of the teacher, over its mean raw value.

The loss itself is **not** re-implemented here: every micro-batch calls the trainer's own
``srpo_ref.update.micro_batch_loss`` (``losses.srpo_objective`` with ``LossConfig``), and the
weight normaliser is the trainer's strategy (``srpo_ref.normalizers``); the loss is divided by the
valid response tokens of the whole optimizer update (all gradient-accumulation micro-batches and
ranks; or sequences, under ``loss_agg="seq_mean_token_mean"``), as in our trainer.

What SDPOTrainer keeps doing unchanged: datasets, ``RepeatSampler`` grouping, generation (HF
``generate``, vLLM colocate/server), reward functions, buffering of a generation batch over
``steps_per_generation`` micro-batches, old log-probs when a generation batch serves several
updates, the teacher models (EMA copy + ``SyncTeacherModelCallback``, frozen copy, the live
student, and the PEFT adapter variants), ``accelerate`` / DeepSpeed / FSDP wrapping, logging.

What is overridden (and why):

- ``teacher_context_builder`` (``SRPOTeacherContextBuilder.build``): routing, demonstration
  draw, Dr. GRPO advantages (replacing SDPO's std-scaled ones) and the teacher prompts, which
  are only built for the distilled samples;
- ``compute_loss``: the student forward, a teacher forward on the distilled rows only, the
  weight normaliser and ``srpo_objective`` (SDPO's blend is gone);
- ``SRPOConfig.__post_init__``: maps ``teacher`` to SDPO's ``teacher_model_kind`` and rejects
  SDPO options that have no meaning under SRPO.

Usage (see ``examples/trl_srpo.py``)::

    from srpo_ref.integrations.trl import SRPOConfig, SRPOTrainer

    args = SRPOConfig(output_dir="out", num_generations=8, per_device_train_batch_size=32)
    trainer = SRPOTrainer(model="Qwen/Qwen3-8B", reward_funcs=my_reward, args=args, train_dataset=ds)
    trainer.train()
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from srpo_ref import losses
from srpo_ref.normalizers import NORMALIZERS, normalizer
from srpo_ref.record import accumulate_metrics, weight_statistics
from srpo_ref.teacher import TEACHER_TEMPLATE, strip_think, teacher_input_ids, truncate_to_tokens
from srpo_ref.update import TeacherOutputs, lean_teacher, micro_batch_loss

with warnings.catch_warnings():  # TRL warns on every import from trl.experimental
    warnings.simplefilter("ignore")
    from accelerate.utils import gather_object
    from trl.data_utils import is_conversational
    from trl.experimental.sdpo import SDPOConfig, SDPOTrainer
    from trl.experimental.sdpo.sdpo_trainer import SuccessfulRolloutTeacherContextBuilder
    from trl.trainer.utils import pad

__all__ = ["SRPOConfig", "SRPOTrainer", "SRPOTeacherContextBuilder", "srpo_micro_batch_loss", "raw_weight_sum",
           "teacher_for_loss", "teacher_logits_for", "routing_from_inputs", "WEIGHT_NORMALIZERS", "TEACHERS"]

WEIGHT_NORMALIZERS = tuple(NORMALIZERS)
TEACHERS = ("ema", "frozen", "live", "mix")
_TEACHER_KIND = {"ema": "ema", "frozen": "base", "live": "live", "mix": "base"}  # SDPO's teacher_model_kind
ROUTE_KEYS = ("srpo_grpo_coef", "srpo_sdpo_coef", "srpo_correct", "srpo_has_teacher")
_SUM_KEYS = ("tokens_count", "grpo_loss_sum", "sdpo_tokens_count", "sdpo_loss_sum", "teacher_entropy_sum",
             "weight_sum", "weight_sq_sum", "raw_weight_sum")


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class SRPOConfig(SDPOConfig):
    r"""
    Configuration class for [`SRPOTrainer`]: [`~trl.experimental.sdpo.SDPOConfig`] plus the SRPO
    options below. Defaults of the inherited loss fields are the SRPO paper's (`epsilon_high=0.28`,
    `distillation_mode="topk_logits"`, `distillation_topk=100`, `distillation_alpha=0.5`,
    `distillation_add_tail=True`, `scale_rewards="none"`, `success_reward_threshold=0.5`).

    Inherited fields and their SRPO meaning: `epsilon` / `epsilon_high` (PPO clip range),
    `distillation_is_clip` (cap of the importance factor of the distillation branch),
    `distillation_topk` / `distillation_alpha` / `distillation_add_tail` (the divergence:
    generalized JSD on the student's top-K plus a tail bucket; `distillation_mode="full_logits"`
    uses the whole vocabulary), `success_reward_threshold` (`c_i = 1[r_i >= threshold]`),
    `scale_rewards` (`"none"`: Dr. GRPO advantages `r - mean_group(r)`; `"group"`: divided by
    the unbiased group std + 1e-6), `teacher_update_rate` / `teacher_sync_steps` (the EMA),
    `max_reprompt_len` (the demonstration is cut to this many tokens; the prompt around it never).
    `loss_type`, `beta`, `dont_reprompt_on_self_success`, `use_successful_as_teacher` and the
    reprompt templates are not used (the teacher prompt is `srpo_ref.teacher`'s).

    Parameters:
        entropy_beta (`float`, *optional*, defaults to `1.0`):
            `beta` of the teacher-confidence weights `exp(-beta * H)` on distilled tokens. `0` turns
            the weighting off ("srpo_no_dw").
        weight_normalizer (`str`, *optional*, defaults to `"step"`):
            What the raw weights are divided by: their mean over the distilled tokens of
            `"step"` (the generation step: every micro-batch and rank trained on one generation
            batch; requires exactly one optimizer update per generation step), `"update"` (the
            optimizer update: every gradient-accumulation micro-batch and rank) or
            `"micro_batch"` (each micro-batch on its own).
        entropy_source (`str`, *optional*, defaults to `"full"`):
            `H` of the weights: the teacher's entropy over the full vocabulary (`"full"`) or over
            its top-K + tail distribution at the student's top-K ids (`"topk_tail"`).
        teacher (`str`, *optional*, defaults to `"ema"`):
            `"ema"` (an EMA of the student, `teacher_update_rate`), `"frozen"` (the initial
            model), `"live"` (the current student) or `"mix"` (logits
            `teacher_mix * frozen + (1 - teacher_mix) * live`, both on the teacher's input).
            Sets SDPO's `teacher_model_kind`.
        teacher_mix (`float`, *optional*, defaults to `0.9`):
            `lambda` of `teacher="mix"`.
        dual_clip (`float` or `None`, *optional*, defaults to `3.0`):
            Dual-clip constant of the policy loss on negative advantages (`None`: off).
        loss_agg (`str`, *optional*, defaults to `"token_mean"`):
            `"token_mean"`: the summed token losses over the update's valid response tokens
            (SPEC section 6). `"seq_mean_token_mean"`: each sequence's token mean, averaged over
            the update's sequences (the SDPO authors' effective objective).
    """

    entropy_beta: float = field(default=1.0, metadata={"help": "beta of the entropy weights exp(-beta * H)."})
    weight_normalizer: str = field(
        default="step",
        metadata={"help": "Mean raw weight the weights are divided by: step | update | micro_batch."},
    )
    entropy_source: str = field(
        default="full", metadata={"help": "Entropy of the weights: full (vocabulary) | topk_tail."}
    )
    teacher: str = field(default="ema", metadata={"help": "Self-teacher: ema | frozen | live | mix."})
    teacher_mix: float = field(default=0.9, metadata={"help": "lambda of teacher=mix (weight of the frozen model)."})
    dual_clip: float | None = field(default=3.0,
                                    metadata={"help": "Dual-clip constant of the policy loss (None: off)."})
    loss_agg: str = field(
        default="token_mean", metadata={"help": "Loss aggregation: token_mean | seq_mean_token_mean."}
    )
    # SDPO fields with the SRPO paper's defaults
    teacher_model_kind: str | None = field(
        default=None, metadata={"help": "Set from `teacher` (ema -> ema, frozen/mix -> base, live -> live)."}
    )
    success_reward_threshold: float = field(
        default=0.5, metadata={"help": "A rollout is correct when its reward is at least this."}
    )
    epsilon_high: float | None = field(default=0.28, metadata={"help": "Upper clip epsilon of the policy loss."})
    distillation_mode: str = field(
        default="topk_logits", metadata={"help": "topk_logits (student's top-K + tail) | full_logits."}
    )
    distillation_topk: int | None = field(default=100, metadata={"help": "K of the top-K distillation."})
    distillation_alpha: float = field(default=0.5, metadata={"help": "alpha of the generalized JSD."})
    distillation_add_tail: bool = field(default=True, metadata={"help": "Add the tail bucket to the top-K."})
    scale_rewards: str = field(
        default="none", metadata={"help": "none: Dr. GRPO advantages; group: divided by the group std."}
    )

    def __post_init__(self):
        kind = _TEACHER_KIND.get(self.teacher)
        if kind is None:
            raise ValueError(f"`teacher` must be one of {TEACHERS}, got {self.teacher!r}.")
        if self.teacher_model_kind not in (None, kind):
            raise ValueError(
                f"`teacher_model_kind` is set from `teacher` in SRPOConfig ({self.teacher!r} -> {kind!r}); "
                f"got the conflicting teacher_model_kind={self.teacher_model_kind!r}. Set `teacher` only."
            )
        self.teacher_model_kind = kind
        if self.distillation_mode == "full_logits":
            self.distillation_topk = None
        super().__post_init__()
        self._validate_srpo()

    def _validate_srpo(self) -> None:
        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"`{name}` must be one of {options}, got {getattr(self, name)!r}.")

        choice("weight_normalizer", WEIGHT_NORMALIZERS)
        choice("entropy_source", losses.ENTROPY_SOURCES)
        choice("loss_agg", losses.LOSS_AGGREGATIONS)
        choice("distillation_mode", ("topk_logits", "full_logits"))
        choice("scale_rewards", ("none", "group"))
        choice("importance_sampling_level", ("token",))
        if not 0.0 <= self.teacher_mix <= 1.0:
            raise ValueError(f"`teacher_mix` must be in [0, 1], got {self.teacher_mix}.")
        if self.distillation_mode == "topk_logits" and not self.distillation_topk:
            raise ValueError("`distillation_mode='topk_logits'` needs `distillation_topk`.")
        if self.entropy_source == "topk_tail" and self.distillation_mode != "topk_logits":
            raise ValueError("`entropy_source='topk_tail'` needs `distillation_mode='topk_logits'` (a top-K).")
        if self.distillation_weight != 1.0:
            raise ValueError(
                "SRPO routes each sample to one branch; `distillation_weight` (SDPO's blend) is not used and must "
                f"stay 1.0, got {self.distillation_weight}."
            )
        if self.use_teacher_server:
            raise ValueError("`use_teacher_server` is not supported by SRPOTrainer (it needs the teacher's full "
                             "logits).")
        if self.include_environment_feedback:
            raise ValueError("`include_environment_feedback` is not supported by SRPOTrainer (demonstrations only).")
        ga, spg = self.gradient_accumulation_steps, self.steps_per_generation
        if spg % ga != 0:
            raise ValueError(
                "SRPO divides each micro-batch's loss by the valid tokens of its whole optimizer update, so an "
                "update's micro-batches must all come from one generation batch: `steps_per_generation` "
                f"({spg}) must be a multiple of `gradient_accumulation_steps` ({ga})."
            )
        if self.weight_normalizer == "step" and spg * self.num_iterations != ga:
            raise ValueError(
                "`weight_normalizer='step'` normalises over the generation step, which needs exactly one optimizer "
                f"update per generation step (steps_per_generation * num_iterations = {spg * self.num_iterations}, "
                f"gradient_accumulation_steps = {ga}); use `weight_normalizer='update'` (or 'micro_batch')."
            )

    def loss_config(self) -> losses.LossConfig:
        """The ``LossConfig`` of ``srpo_objective``. ``temperature`` is 1: TRL's logits are already
        divided by the sampling temperature (``SDPOTrainer._forward_logits``)."""
        return losses.LossConfig(
            eps_low=self.epsilon, eps_high=self.epsilon_high, dual_clip=self.dual_clip,
            is_clip=math.inf if self.distillation_is_clip is None else self.distillation_is_clip,
            topk=self.distillation_topk if self.distillation_mode == "topk_logits" else None,
            alpha=self.distillation_alpha, add_tail=self.distillation_add_tail, temperature=1.0,
            beta=self.entropy_beta, loss_agg=self.loss_agg, entropy_source=self.entropy_source,
        )


# --------------------------------------------------------------------------------------------
# The loss path on tensors (what compute_loss calls after its forwards; tested on hand-made tensors)
# --------------------------------------------------------------------------------------------


def teacher_logits_for(teacher: str, teacher_logits: torch.Tensor, live_logits: torch.Tensor | None = None,
                       teacher_mix: float = 0.9) -> torch.Tensor:
    """The teacher's logits for ``teacher``: ``teacher_logits`` as they are, except for ``mix``,
    ``losses.mix_logits(reference=teacher_logits, student=live_logits, teacher_mix)``."""
    if teacher != "mix":
        return teacher_logits
    if live_logits is None:
        raise ValueError("teacher='mix' needs the live student's logits on the teacher's input")
    return losses.mix_logits(teacher_logits.float(), live_logits.float(), teacher_mix)


def raw_weight_sum(cfg: losses.LossConfig, mask: torch.Tensor, *, student_logits: torch.Tensor | None = None,
                   teacher_logits: torch.Tensor | None = None, teacher: losses.TeacherStats | None = None,
                   topk_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of exp(-beta H), number of tokens)`` over ``mask`` of distilled rows (``H`` per
    ``cfg.entropy_source``, from the teacher's logits or its ``TeacherStats``): the parts of the
    weight normaliser, summed over micro-batches and ranks by the caller
    (``losses.entropy_weight_sum`` of ``losses.weight_entropy``)."""
    detach = lambda x: None if x is None else x.detach()  # noqa: E731
    entropy = losses.weight_entropy(cfg, detach(student_logits), detach(teacher_logits), teacher, topk_ids)
    return losses.entropy_weight_sum(entropy, mask, cfg.beta)


@torch.no_grad()
def teacher_for_loss(cfg: losses.LossConfig, student_logits: torch.Tensor, teacher_rows: torch.Tensor,
                     rows: torch.Tensor) -> dict[str, Any]:
    """The teacher's part of ``srpo_objective``'s arguments for a micro-batch whose distilled
    ``rows`` have teacher logits ``teacher_rows`` ``[R, T, V]``. With a top-K (``cfg.topk``): the
    memory-lean ``TeacherStats`` (its log-probs at the student's top-K ids + tail, and its entropy)
    and those ids, ``[B, T, K(+1)]``, so no ``[B, T, V]`` teacher tensor is kept for the loss; the
    same loss as the full logits. Without: the full logits placed in ``[B, T, V]``. Other rows
    are zeros (``srpo_objective`` reads only the distilled rows)."""
    B = student_logits.shape[0]

    def place(x):
        out = x.new_zeros(B, *x.shape[1:])
        out[rows] = x
        return out

    lean = lean_teacher(teacher_rows, student_logits[rows], cfg)
    if lean.logits is not None:
        return {"teacher_logits": place(lean.logits)}
    return {"teacher": losses.TeacherStats(place(lean.stats.logp), place(lean.stats.entropy)),
            "topk_ids": place(lean.topk_ids)}


def routing_from_inputs(inputs: dict[str, Any]) -> losses.Routing:
    """The ``losses.Routing`` of a micro-batch from the per-sample tensors the builder stored."""
    grpo, sdpo = inputs["srpo_grpo_coef"].float(), inputs["srpo_sdpo_coef"].float()
    return losses.Routing(
        to_sdpo=sdpo > 0, has_teacher=inputs["srpo_has_teacher"] > 0,
        demo_index=torch.full(grpo.shape, -1, dtype=torch.long, device=grpo.device),
        correct=inputs["srpo_correct"] > 0, grpo_coef=grpo, sdpo_coef=sdpo,
    )


def srpo_micro_batch_loss(
    *,
    student_logits: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    advantages: torch.Tensor,
    routing: losses.Routing,
    cfg: losses.LossConfig,
    num_tokens: float,
    num_sequences: float | None = None,
    teacher_logits: torch.Tensor | None = None,
    teacher: losses.TeacherStats | None = None,
    topk_ids: torch.Tensor | None = None,
    old_logps: torch.Tensor | None = None,
    weight_normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One micro-batch's share of the update's SRPO loss: the trainer's ``update.micro_batch_loss``
    on TRL's tensors (TRL's names mapped onto it; nothing computed here). ``student_logits``
    ``[B, T, V]`` (already divided by the temperature, so ``cfg``'s is 1) over the completion
    tokens; the teacher as ``teacher_logits`` (same shape) or as ``teacher`` stats at the
    student's ``topk_ids`` (``teacher_for_loss``), meaningful on the distilled rows (neither
    when there are none); ``old_logps`` TRL's old per-token log-probs
    (``None``: exactly on-policy, ``logp.detach()``); ``weight_normalizer`` the mean raw weight
    to divide by (``None``: this micro-batch's own)."""
    return micro_batch_loss(
        student_logits=student_logits, response_ids=completion_ids, mask=completion_mask, advantages=advantages.float(),
        routing=routing, cfg=cfg, num_tokens=num_tokens, num_sequences=num_sequences,
        teacher=TeacherOutputs(teacher_logits, teacher, topk_ids), logp_old=old_logps,
        weight_normalizer=weight_normalizer,
    )


# --------------------------------------------------------------------------------------------
# Routing and the teacher's context
# --------------------------------------------------------------------------------------------


class SRPOTeacherContextBuilder(SuccessfulRolloutTeacherContextBuilder):
    """Routes the generation batch and builds the teacher's inputs (replaces SDPO's builder).

    Over the whole generation batch gathered from every rank (so every rank draws the same
    demonstrations): ``losses.route_samples(method="srpo")`` with a generator seeded from
    ``(args.seed, global_step)``, Dr. GRPO advantages (``losses.group_advantages``, written into
    the batch in place of SDPO's), and for each distilled sample the teacher prompt
    ``srpo_ref.teacher.teacher_input_ids`` with its demonstration (the drawn correct sibling's
    decoded response). Non-distilled rows get an empty teacher prompt (no teacher forward).
    """

    def build(self, output, prompts, rewards, feedbacks=None):
        tr = self.trainer
        acc, args = tr.accelerator, tr.args
        device = acc.device
        mode = "train" if tr.model.training else "eval"
        G = tr.num_generations if mode == "train" else tr.num_generations_eval
        n_local = len(prompts)
        start = acc.process_index * n_local
        pad_id = tr._tokenizer.pad_token_id

        all_rewards = acc.gather(rewards.float()).cpu()
        all_completion_ids = acc.gather(acc.pad_across_processes(output["completion_ids"], dim=1,
                                                                 pad_index=pad_id)).cpu()
        all_lengths = acc.gather(output["raw_completion_lengths"]).cpu()
        all_prompts = gather_object(prompts)
        total = all_rewards.numel()
        if total % G:
            raise ValueError(f"the generation batch ({total}) is not a whole number of groups of {G}")
        group_ids = torch.arange(total) // G
        routing = losses.route_samples(all_rewards, group_ids, "srpo", args.success_reward_threshold,
                                       generator=tr._srpo_demo_generator(mode))
        advantages = losses.group_advantages(all_rewards, group_ids, std_normalize=args.scale_rewards == "group")
        local = slice(start, start + n_local)
        output["advantages"] = advantages[local].to(device)
        for key, value in zip(ROUTE_KEYS, (routing.grpo_coef, routing.sdpo_coef, routing.correct, routing.has_teacher)):
            output[key] = value[local].float().to(device)

        teacher_prompts = []
        for g in range(start, start + n_local):
            ids: list[int] = []
            if routing.sdpo_coef[g] > 0:
                d = int(routing.demo_index[g])
                demo_text = tr._tokenizer.decode(all_completion_ids[d, : int(all_lengths[d])], skip_special_tokens=True)
                ids = tr._srpo_teacher_prompt_ids(all_prompts[g], demo_text)
            teacher_prompts.append(torch.tensor(ids, dtype=torch.long))
        prompt_ids = pad(teacher_prompts, padding_value=pad_id, padding_side="left").to(device)
        prompt_mask = pad([torch.ones_like(t) for t in teacher_prompts], padding_value=0,
                          padding_side="left").to(device)

        groups_with_success = routing.correct.view(-1, G).any(1).float().mean().item() if total else 0.0
        frac = lambda x: x.float().mean().item() if total else 0.0  # noqa: E731
        self.last_metrics = {
            "srpo/frac_correct": frac(routing.correct),
            "srpo/frac_to_distill": frac(routing.sdpo_coef > 0),
            "srpo/frac_to_policy": frac(routing.grpo_coef > 0),
            "srpo/frac_teacher_available": frac(routing.has_teacher),
            # SDPO's keys (its inactivity diagnostics read them)
            "self_distillation/success_group_fraction": groups_with_success,
            "self_distillation/success_sample_fraction": frac(routing.has_teacher),
            "self_distillation/reprompt_sample_fraction": frac(routing.sdpo_coef > 0),
        }
        return {
            "teacher_input_ids": torch.cat([prompt_ids, output["completion_ids"]], dim=1),
            "teacher_attention_mask": torch.cat([prompt_mask, output["completion_mask"]], dim=1),
            "self_distillation_mask": output["srpo_sdpo_coef"],
        }


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


@dataclass
class _UpdateState:
    """Per optimizer update: its totals (every micro-batch and rank) and metric sums."""

    n_tokens: float
    n_sequences: float
    normaliser: float | None  # precomputed mean raw weight; None: per micro-batch (or computed in the pass)
    in_pass: bool  # the update is one micro-batch per rank: its normaliser is computed in that pass
    micro_batches_left: int
    metrics: dict = field(default_factory=dict)


class SRPOTrainer(SDPOTrainer):
    """Trainer for SRPO (Sample-Routed Policy Optimization) on TRL's SDPO machinery.

    Takes the arguments of [`~trl.experimental.sdpo.SDPOTrainer`] (model, reward functions,
    dataset, PEFT config, ...) with an [`SRPOConfig`]. Each micro-batch's loss is
    ``srpo_ref.losses.srpo_objective``: the policy loss on samples routed to the policy branch,
    the entropy-weighted distillation on the others, over the update's token count. Logged
    metrics (besides TRL's): ``srpo/frac_correct``, ``srpo/frac_to_distill``,
    ``srpo/frac_to_policy``, ``srpo/frac_teacher_available`` (per generation batch),
    ``srpo/loss_policy``, ``srpo/loss_distill``, ``srpo/teacher_entropy_mean``,
    ``srpo/raw_weight_mean`` (``exp(-beta H)`` before normalising), ``srpo/weight_mean``,
    ``srpo/weight_std``, ``srpo/weight_min``, ``srpo/weight_max`` (per optimizer update).
    """

    config_cls = SRPOConfig
    _tag_names = ["trl", "srpo"]
    _name = "SRPO"
    _paper = {"title": "Sample-Routed Policy Optimization", "id": "2604.02288"}  # README; no citation block here

    def __init__(self, model, reward_funcs=None, args: SRPOConfig | None = None, *rest, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = SRPOConfig(f"{name.split('/')[-1]}-SRPO")
        if not isinstance(args, SRPOConfig):
            raise TypeError(f"SRPOTrainer needs an SRPOConfig, got {type(args).__name__}")
        super().__init__(model, reward_funcs, args, *rest, **kwargs)
        self.teacher_context_builder = SRPOTeacherContextBuilder(self)
        self.loss_config = args.loss_config()
        self._srpo_update: _UpdateState | None = None
        self._srpo_eval_draws = 0

    @property
    def normalizer(self):
        """The weight normaliser's strategy (``srpo_ref.normalizers``), read from ``args`` at each use."""
        return normalizer(self.args.weight_normalizer)

    # ------------------------------------------------------------------ teacher context

    def _srpo_demo_generator(self, mode: str) -> torch.Generator:
        """The demonstrations' draw: seeded by (seed, global step), the same on every rank."""
        salt = 0
        if mode == "eval":
            self._srpo_eval_draws += 1
            salt = 7919 * self._srpo_eval_draws
        return torch.Generator().manual_seed(self.args.seed * 1_000_003 + 2 * self.state.global_step + salt
                                             + (mode == "eval"))

    def _srpo_teacher_prompt_ids(self, prompt, demo_text: str) -> list[int]:
        """The teacher's prompt ids: ``srpo_ref.teacher.teacher_input_ids`` (chat prompts); a plain
        text prompt gets the same template as text, tokenized the way TRL tokenizes prompts."""
        max_demo = self.args.max_reprompt_len
        tok = self.processing_class if isinstance(self.processing_class, PreTrainedTokenizerBase) else self._tokenizer
        if is_conversational({"prompt": prompt}):
            ids, prompt_len = teacher_input_ids(tok, prompt, demo_text, [], max_demo)
            return ids[:prompt_len]
        demo = truncate_to_tokens(strip_think(demo_text), self._tokenizer, max_demo)
        return list(self.processing_class(text=[TEACHER_TEMPLATE.format(prompt=prompt, demo=demo)])["input_ids"][0])

    @torch.no_grad()
    def _srpo_teacher_logits(self, inputs, rows: torch.Tensor, T: int) -> torch.Tensor:
        """The teacher's logits ``[R, T, V]`` (temperature-scaled) on the distilled ``rows``: their
        teacher prompt (left padding trimmed) + their response. ``mix`` also forwards the live
        student on the same input."""
        ids, mask = inputs["teacher_input_ids"][rows], inputs["teacher_attention_mask"][rows]
        P = ids.shape[1] - T
        keep = int(mask[:, :P].sum(1).max().item()) if P > 0 else 0
        ids, mask = ids[:, P - keep :], mask[:, P - keep :]
        with self._get_teacher_context_for_self_distillation():
            logits = self._forward_logits(self.teacher_model, ids, mask, T)
        live = self._forward_logits(self.model, ids, mask, T) if self.args.teacher == "mix" else None
        return teacher_logits_for(self.args.teacher, logits, live, self.args.teacher_mix)

    # ------------------------------------------------------------------ the update's totals

    def _srpo_begin_update(self, model, inputs, training: bool) -> _UpdateState:
        """Totals of the optimizer update starting with ``inputs``: its micro-batches are this and
        the next ``current_gradient_accumulation_steps - 1`` slices of the buffered generation batch
        (on every rank). Their tokens, sequences and, with several micro-batches and a
        step/update normaliser, the mean raw weight (a no-grad teacher pre-pass)."""
        n = getattr(self, "current_gradient_accumulation_steps",
                    self.args.gradient_accumulation_steps) if training else 1
        batches = [inputs]
        if n > 1:
            spg = self.args.steps_per_generation
            first = self._step % spg
            if first + n > spg or self._buffered_inputs is None:
                raise RuntimeError(
                    f"SRPO: the optimizer update (micro-batches {first}..{first + n - 1}) runs past the generation "
                    f"batch "
                    f"({spg} micro-batches); steps_per_generation must be a multiple of gradient_accumulation_steps"
                )
            batches += [self._buffered_inputs[first + k] for k in range(1, n)]
        local = torch.tensor([sum(float(b["completion_mask"].sum()) for b in batches),
                              float(sum(b["completion_mask"].shape[0] for b in batches))],
                             device=self.accelerator.device)
        totals = self.accelerator.gather(local).view(-1, 2).sum(0).tolist()
        # the strategy's update mean: found in the pass when it is one micro-batch per rank, else
        # from a no-grad teacher pre-pass over the update's micro-batches (TRL runs the backward)
        normaliser, in_pass = None, n == 1
        if not in_pass and self.normalizer.needs_raw_weights:
            raw = torch.zeros(2, device=self.accelerator.device)
            for b in batches:
                raw += torch.stack(self._srpo_raw_weights(model, b))
            normaliser = self.normalizer.update_mean(raw[0].item(), raw[1].item(), self._srpo_all_sum)
        return _UpdateState(max(totals[0], 1.0), totals[1], normaliser, in_pass, n)

    @torch.no_grad()
    def _srpo_raw_weights(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's ``(sum exp(-beta H), count)`` over one micro-batch's distilled tokens."""
        device = self.accelerator.device
        rows = torch.nonzero(inputs["srpo_sdpo_coef"] > 0).flatten()
        if not len(rows):
            return torch.zeros((), device=device), torch.zeros((), device=device)
        T = inputs["completion_ids"].shape[1]
        teacher = self._srpo_teacher_logits(inputs, rows, T)
        student = teacher  # only read for the top-K ids of entropy_source=topk_tail
        if self.args.entropy_source == "topk_tail":
            student = self._forward_logits(model, torch.cat([inputs["prompt_ids"][rows],
                                                             inputs["completion_ids"][rows]], 1),
                                           torch.cat([inputs["prompt_mask"][rows], inputs["completion_mask"][rows]], 1),
                                           T)
        s, c = raw_weight_sum(self.loss_config, inputs["completion_mask"][rows], student_logits=student,
                              teacher_logits=teacher)
        return s.to(device), c.to(device)

    def _srpo_all_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` summed over ranks through accelerate (a collective), in the float32 TRL computes in."""
        local = x.to(self.accelerator.device, torch.float32).reshape(1, -1)
        return self.accelerator.gather(local).sum(0).double().cpu()

    # ------------------------------------------------------------------ the loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("The SRPOTrainer does not support returning outputs")
        training = self.model.training
        if not training:
            state = self._srpo_begin_update(model, inputs, training=False)
        else:
            if self._srpo_update is None or self._srpo_update.micro_batches_left <= 0:
                self._srpo_update = self._srpo_begin_update(model, inputs, training=True)
            state = self._srpo_update
        state.micro_batches_left -= 1

        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        T = completion_ids.shape[1]
        student_logits = self._forward_logits(model, torch.cat([prompt_ids, completion_ids], 1),
                                              torch.cat([prompt_mask, completion_mask], 1), T)
        routing = routing_from_inputs(inputs)
        rows = torch.nonzero(routing.sdpo_coef > 0).flatten()
        teacher: dict[str, Any] = {}
        raw = torch.zeros(2, device=student_logits.device)
        if len(rows):
            t_rows = self._srpo_teacher_logits(inputs, rows, T)
            raw = torch.stack(raw_weight_sum(self.loss_config, completion_mask[rows],
                                             student_logits=student_logits[rows],
                                             teacher_logits=t_rows)).to(raw)
            teacher = teacher_for_loss(self.loss_config, student_logits, t_rows, rows)
            del t_rows
        normaliser = state.normaliser
        if state.in_pass:  # one micro-batch per rank: the update's mean raw weight, over every rank
            normaliser = self.normalizer.update_mean(raw[0].item(), raw[1].item(), self._srpo_all_sum)
        loss, metrics = srpo_micro_batch_loss(
            student_logits=student_logits, completion_ids=completion_ids, completion_mask=completion_mask,
            advantages=inputs["advantages"], routing=routing, cfg=self.loss_config, num_tokens=state.n_tokens,
            num_sequences=state.n_sequences, old_logps=inputs.get("old_per_token_logps"), weight_normalizer=normaliser,
            **teacher,
        )
        metrics["raw_weight_sum"] = raw[0].item()
        accumulate_metrics(state.metrics, metrics)
        if state.micro_batches_left == 0:
            self._srpo_log_update(state, "train" if training else "eval")
        # gradients are averaged over ranks (DDP / DeepSpeed / FSDP): scaled here to the global sum.
        # Not divided by gradient accumulation: every share is already over the update's N.
        return loss * self.accelerator.num_processes

    def _srpo_log_update(self, state: _UpdateState, mode: str) -> None:
        """The update's metrics, summed over micro-batches and ranks (a collective)."""
        m = state.metrics
        vec = [m.get(k, 0.0) for k in _SUM_KEYS] + [m.get("weight_min", math.inf), -m.get("weight_max", -math.inf)]
        device = self.accelerator.device
        out = self.accelerator.gather(torch.tensor(vec, dtype=torch.float32, device=device).reshape(1, -1))
        sums = dict(zip(_SUM_KEYS, out[:, : len(_SUM_KEYS)].sum(0).tolist()))
        sums["weight_min"], sums["weight_max"] = out[:, -2].min().item(), -out[:, -1].min().item()
        n = state.n_tokens
        log = {"srpo/loss_policy": sums["grpo_loss_sum"] / n, "srpo/loss_distill": sums["sdpo_loss_sum"] / n}
        if sums["sdpo_tokens_count"] > 0:  # the trainer's per-distilled-token statistics (srpo_ref.record)
            log.update({f"srpo/{k}": v for k, v in weight_statistics(sums).items()})
        for k, v in log.items():
            self._metrics[mode][k].append(v)
        self._metrics[mode]["self_distillation/policy_loss"].append(log["srpo/loss_policy"])
        self._log_self_distillation_metric(mode, log["srpo/loss_distill"])


