import numpy as np

from toolrl_jax.data import synthetic
from toolrl_jax.data.sft import encode_prompt, encode_sft_example, make_sft_example
from toolrl_jax.data.trajectories import split_segments

from .conftest import TOOLS

RECORD = {
    "id": "arithmetic-train-00007",
    "question": "What is 437*86?",
    "answer": "37582",
    "task": "arithmetic",
    "difficulty": "hard",
    "trajectory": "<think>Use the calculator for 437*86.</think>\n"
    "<calculator>437*86</calculator>\n<result>\n37582\n</result>\n<answer>37582</answer>",
    "metadata": {},
}


def test_make_sft_example_modes():
    long = make_sft_example(RECORD, policy="always_long", p_long=0.5, seed=0, tools=TOOLS)
    assert long.mode == "long" and long.completion == RECORD["trajectory"]
    assert [s.kind for s in long.segments] == ["model", "tool_result", "model"]
    assert [m["role"] for m in long.messages] == ["system", "user"]
    short = make_sft_example(RECORD, policy="always_short", p_long=0.5, seed=0, tools=TOOLS)
    assert short.mode == "short" and short.completion == "<answer>37582</answer>"
    no_trace = {**RECORD, "trajectory": ""}
    forced = make_sft_example(no_trace, policy="always_long", p_long=0.5, seed=0, tools=TOOLS)
    assert forced.mode == "short"  # nothing to show in long mode


def test_encode_masks_tool_results(tokenizer):
    example = make_sft_example(RECORD, policy="always_long", p_long=0.5, seed=0, tools=TOOLS)
    enc = encode_sft_example(tokenizer, example)
    tokens, mask, kinds = enc["tokens"], enc["loss_mask"], enc["segment_kinds"]
    assert tokens.dtype == np.int32 and mask.dtype == np.int8 and len(tokens) == len(mask)
    p = enc["prompt_len"]
    # Prompt = the chat template with generation prompt, tokenised as the rollout does.
    prompt_text = tokenizer.apply_chat_template(list(example.messages),
                                                add_generation_prompt=True, tokenize=False)
    assert tokenizer.decode(tokens[:p]) == prompt_text
    assert not mask[:p].any()
    # Everything decodes to prompt + completion + EOS.
    assert tokenizer.decode(tokens) == prompt_text + RECORD["trajectory"] + "<|im_end|>"
    # Loss only on model text (and the EOS), never on the tool result.
    assert tokenizer.decode(tokens[mask == 1]) == (
        "<think>Use the calculator for 437*86.</think>\n<calculator>437*86</calculator>"
        "<answer>37582</answer><|im_end|>")
    assert tokenizer.decode(tokens[kinds == 2]) == "\n<result>\n37582\n</result>\n"
    assert enc["mode"] == "long" and not enc["is_short"]
    assert tokens[-1] == tokenizer.eos_token_id and mask[-1] == 1


def test_segments_tokenise_as_the_rollout_appends_them(tokenizer):
    # Tokenising segment by segment equals the rollout's view: model tokens up to the call's
    # end tag, then the separately encoded result block.
    segs = split_segments(RECORD["trajectory"])
    ids = [tokenizer.encode(s.text, add_special_tokens=False) for s in segs]
    assert tokenizer.decode(ids[0])[-len("</calculator>"):] == "</calculator>"
    assert tokenizer.decode(ids[1]) == "\n<result>\n37582\n</result>\n"


def test_short_example_is_short(tokenizer):
    example = make_sft_example(RECORD, policy="always_short", p_long=0.5, seed=0, tools=TOOLS)
    enc = encode_sft_example(tokenizer, example)
    completion = enc["tokens"][enc["prompt_len"]:]
    assert tokenizer.decode(completion) == "<answer>37582</answer><|im_end|>"
    assert enc["loss_mask"][enc["prompt_len"]:].all() and enc["is_short"]


def test_prompt_ids_and_random_policy_mix(tokenizer, small_cfg):
    records = synthetic.synthetic_split(small_cfg, "train")
    examples = [make_sft_example(r, policy="random", p_long=0.5, seed=0, tools=TOOLS)
                for r in records]
    modes = [e.mode for e in examples]
    assert 0.35 < modes.count("long") / len(modes) < 0.65
    # Random ignores difficulty: both modes occur for easy and hard items.
    pairs = {(r["difficulty"], e.mode) for r, e in zip(records, examples, strict=True)}
    assert pairs == {("easy", "long"), ("easy", "short"), ("hard", "long"), ("hard", "short")}
    ids = encode_prompt(tokenizer, examples[0].messages)
    assert ids.dtype == np.int32 and tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
