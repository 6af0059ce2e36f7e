"""The self-teacher's input (SPEC section 4).

The teacher is the same model (an EMA copy) shown one correct sibling solution in its prompt.
It generates nothing: it re-scores the student's own response tokens. Its input is

    system messages of the prompt, unchanged
    user: "{prompt}\\nCorrect solution:\\n\\n{demo}\\n\\nCorrectly solve the original question."
    chat template with the generation prompt (thinking off for Qwen3)
    + the student's response token ids

``demo`` is the sibling's decoded response with ``<think>...</think>`` removed, truncated to
``max_demo_tokens`` tokens when too long; the template text around it is never cut.
"""

from __future__ import annotations

import re

TEACHER_TEMPLATE = "{prompt}\nCorrect solution:\n\n{demo}\n\nCorrectly solve the original question."
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_OPEN_THINK = re.compile(r"<think>.*\Z", re.DOTALL)


def strip_think(text: str) -> str:
    """Remove every ``<think>...</think>`` block (and an unclosed trailing ``<think>...``)."""
    text = _THINK.sub("", text)
    return _OPEN_THINK.sub("", text).strip()


def truncate_to_tokens(text: str, tokenizer, max_tokens: int | None) -> str:
    """The first ``max_tokens`` tokens of ``text`` (decoded), or ``text`` unchanged when it fits."""
    if tokenizer is None or max_tokens is None:
        return text
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def build_teacher_messages(
    prompt_messages: list[dict], demo_text: str, tokenizer=None, max_demo_tokens: int | None = 10240
) -> list[dict]:
    """Chat messages for the self-teacher: system messages kept, one user message holding the
    original question and the demonstration. The question is the content of the last user
    message of ``prompt_messages``."""
    users = [m for m in prompt_messages if m["role"] == "user"]
    if not users:
        raise ValueError("prompt_messages has no user message")
    demo = truncate_to_tokens(strip_think(demo_text), tokenizer, max_demo_tokens)
    systems = [dict(m) for m in prompt_messages if m["role"] == "system"]
    content = TEACHER_TEMPLATE.format(prompt=users[-1]["content"], demo=demo)
    return systems + [{"role": "user", "content": content}]


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of ``messages`` with the chat template and generation prompt, thinking off."""
    out = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, enable_thinking=False, return_dict=False
    )
    if isinstance(out, dict) or hasattr(out, "input_ids"):
        out = out["input_ids"]
    return list(out)


def teacher_input_ids(
    tokenizer, prompt_messages: list[dict], demo_text: str, response_ids: list[int], max_demo_tokens: int | None = 10240
) -> tuple[list[int], int]:
    """``(ids, prompt_len)``: the teacher's prompt ids followed by the student's response ids."""
    prompt_ids = chat_prompt_ids(tokenizer, build_teacher_messages(prompt_messages, demo_text, tokenizer,
                                                                   max_demo_tokens))
    return prompt_ids + list(response_ids), len(prompt_ids)
