"""Warm-up targets of function-calling items (data/fc_warmup.py): both modes are graded correct by
the training verifier through the Hermes parser, read back in the mode they were written in, keep
parallel calls in the one block the rollout stops at, and are prompted exactly as rollouts are."""

import json

import pytest

from toolrl_jax.data import function_calling as fc
from toolrl_jax.data.fc_warmup import (
    call_block,
    describe_functions_of,
    fc_completion,
    fc_sft_example,
    fc_tokenizer_texts,
    thought,
)
from toolrl_jax.data.modes import detect_mode
from toolrl_jax.data.pipeline import AddPrompt, EncodeSFT
from toolrl_jax.data.sft import encode_sft_example
from toolrl_jax.tools.syntax.hermes import HermesSyntax
from toolrl_jax.tools.syntax.xml_tags import XmlSyntax
from toolrl_jax.verifiers import grade

SYNTAX = HermesSyntax((), open_names=True)


@pytest.fixture(scope="module")
def records():
    recs = fc.generate("train", 120, seed=0, hard_fraction=0.5, split_seed=0,
                       heldout_fraction=0.2)
    assert {r["metadata"]["category"] for r in recs} == {"easy", "hard", "irrelevance"}
    return recs


@pytest.mark.parametrize("mode_tag", [False, True])
@pytest.mark.parametrize("mode", ["short", "long"])
def test_targets_are_correct_and_in_their_mode(records, mode, mode_tag):
    for r in records:
        text = fc_completion(r, mode, mode_tag=mode_tag)
        verdict = grade(text, r, parse_calls=SYNTAX.answer_calls)
        assert verdict.correct, (r["id"], text)
        # As scoring reads it: an answer call is recorded with an empty result (not tool use).
        assert detect_mode(text, SYNTAX, calls=[]) == mode, text
        assert text.startswith("<think>") == (mode == "long" or mode_tag)


def test_parallel_calls_are_one_block_the_rollout_stops_after(records):
    r = next(r for r in records if len(json.loads(r["answer"])) == 2)
    text = fc_completion(r, "short")
    assert text.count("<tool_call>") == 1
    # The engine ends the row at the first complete call: that must be the end of the text.
    assert SYNTAX.find_call_end(text) == len(text)
    calls = SYNTAX.answer_calls(text)
    assert len(calls) == 2 and {next(iter(c)) for c in calls} == {"get_weather"}
    # Written as two blocks, the second call would be cut off and the item graded wrong.
    two_blocks = "\n".join(call_block([c]) for c in fc.gold_calls(r))
    assert not grade(two_blocks[: SYNTAX.find_call_end(two_blocks)], r,
                     parse_calls=SYNTAX.answer_calls).correct


def test_thought_spells_out_converted_values_and_no_call(records):
    r = next(r for r in records if "minutes" in r["question"])
    minutes = int(r["question"].split()[-2])
    assert thought(r) == f"The request needs one call: set_timer with seconds = {60 * minutes}."
    irrelevant = next(r for r in records if r["metadata"]["category"] == "irrelevance")
    assert "make no call" in thought(irrelevant)
    boxed = fc_completion(irrelevant, "short", answer_style="boxed")
    assert boxed.startswith(r"\boxed{") and grade(boxed, irrelevant, "boxed",
                                                  SYNTAX.answer_calls).correct


def test_example_prompt_matches_the_rollout_prompt(records, tokenizer):
    describe = describe_functions_of(SYNTAX)
    for r in records[:6]:
        for mode_tag in (False, True):
            example = fc_sft_example(r, "long", describe_functions=describe, mode_tag=mode_tag)
            encoded = encode_sft_example(tokenizer, example)
            prompt = AddPrompt((), tokenizer, describe, mode_tag=mode_tag).map(r)["prompt_ids"]
            assert encoded["tokens"][: encoded["prompt_len"]].tolist() == prompt.tolist()
            target = encoded["tokens"][encoded["loss_mask"] == 1][:-1]  # without the EOS
            assert tokenizer.decode(target) == fc_completion(r, "long", mode_tag=mode_tag)
    with pytest.raises(ValueError, match="brings its own functions"):
        fc_sft_example(records[0], "short", describe_functions=None)
    assert describe_functions_of(XmlSyntax(("calculator",))) is None


def test_encode_sft_routes_function_calling_items_by_policy(records, tokenizer, small_cfg):
    import dataclasses

    cfg = dataclasses.replace(small_cfg, sft_policy="by_difficulty")
    enc = EncodeSFT(cfg, tokenizer, (), describe_functions=SYNTAX.describe_functions,
                    mode_tag=True)
    for r in records[:10]:
        out = enc.map(r)
        assert out["mode"] == ("short" if r["difficulty"] == "easy" else "long")
        target = tokenizer.decode(out["tokens"][out["loss_mask"] == 1][:-1])
        assert target == fc_completion(r, out["mode"], mode_tag=True)


def test_tokenizer_texts_only_for_function_calling_items(records):
    texts = list(fc_tokenizer_texts(records[:3], SYNTAX.describe_functions))
    assert len(texts) == 1 + 3 * 3 and "<tools>" in texts[1]
    assert list(fc_tokenizer_texts([{"id": "x", "task": "arithmetic"}], None)) == []
