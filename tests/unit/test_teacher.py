from srpo_ref.teacher import TEACHER_TEMPLATE, build_teacher_messages, strip_think, teacher_input_ids

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]


def test_literal_template_and_system_kept():
    msgs = build_teacher_messages(PROMPT, "<think>hmm</think>It is 4.")
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1] == {
        "role": "user",
        "content": "What is 2+2?\nCorrect solution:\n\nIt is 4.\n\nCorrectly solve the original question.",
    }
    assert TEACHER_TEMPLATE.startswith("{prompt}\nCorrect solution:\n\n")


def test_strip_think_blocks():
    assert strip_think("<think>a\nb</think>x<think>c</think>y") == "xy"
    assert strip_think("answer <think>never closed") == "answer"


def test_long_demo_truncated_to_budget_template_intact(tiny_tokenizer):
    demo = " ".join(f"step{i}" for i in range(500))
    msgs = build_teacher_messages(PROMPT, demo, tiny_tokenizer, max_demo_tokens=20)
    content = msgs[-1]["content"]
    assert content.startswith("What is 2+2?\nCorrect solution:\n\n")
    assert content.endswith("\n\nCorrectly solve the original question.")
    kept = content[len("What is 2+2?\nCorrect solution:\n\n") : -len("\n\nCorrectly solve the original question.")]
    assert len(tiny_tokenizer.encode(kept, add_special_tokens=False)) <= 20
    assert demo.startswith(kept.strip()[:20])


def test_teacher_ids_end_with_student_response(tiny_tokenizer):
    response = tiny_tokenizer.encode("<answer>B</answer>", add_special_tokens=False)
    ids, plen = teacher_input_ids(tiny_tokenizer, PROMPT, "demo text", response)
    assert ids[plen:] == response
    text = tiny_tokenizer.decode(ids[:plen])
    assert text.endswith("<|im_start|>assistant\n") and "Correct solution:" in text
