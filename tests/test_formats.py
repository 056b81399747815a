"""The dataset formats users bring (rayalign.data.formats): recognised from the columns and
normalised, against exact expected values; and every example of docs/data.md reads."""

import json
import re
from pathlib import Path

import pytest

from rayalign.data.formats import (RowError, as_completion, as_text, detect, implicit_prompt, preference_record,
                                   prompt_record, raw_text, sft_record, text_id)

USER = {"role": "user", "content": "What color is the sky?"}
BLUE = {"role": "assistant", "content": "It is blue."}
GREEN = {"role": "assistant", "content": "It is green."}
# sha256 of the text, its first 16 hex digits (sha256sum of 'The sky is'; of the message list as
# sorted-key JSON for the conversation).
SKY_ID, QUESTION_ID = "prompt-63460e4223f8a4b2", "prompt-be982607f47cfdb8"


def test_the_format_comes_from_the_columns():
    assert detect("prompts", {"prompt": "x", "extra": 1}) == "prompt-only"
    assert detect("preferences", {"prompt": "a", "chosen": "b", "rejected": "c"}) == "explicit prompt"
    assert detect("preferences", {"chosen": "b", "rejected": "c"}) == "implicit prompt"
    assert detect("sft", {"prompt": "a", "completion": "b"}) == "prompt-completion"
    assert detect("sft", {"prompt": "a", "response": "b"}) == "prompt-response"
    assert detect("sft", {"messages": []}) == "conversational"
    assert detect("sft", {"text": "a"}) == "language modeling"
    # The nearest format names the column it lacks: the old "SFT demands a response column" is gone.
    with pytest.raises(RowError) as err:
        detect("sft", {"prompt": "a"})
    assert str(err.value) == ("missing column 'completion' (has ['prompt']); rows look like "
                              '{"prompt": "...", "completion": "..."} or another format of docs/data.md')
    with pytest.raises(RowError, match="missing column 'rejected'"):
        detect("preferences", {"prompt": "a", "chosen": "b"})
    # A null is no value: Parquet rows of one format carry the other formats' columns as nulls.
    assert detect("preferences", {"prompt": None, "chosen": "b", "rejected": "c"}) == "implicit prompt"
    assert detect("sft", {"prompt": None, "completion": None, "messages": []}) == "conversational"
    with pytest.raises(RowError, match="^empty prompt; remove the row or give it text$"):
        detect("prompts", {"prompt": None})


def test_text_and_conversations_are_validated():
    assert as_text("The sky is", "prompt") == "The sky is"
    # Messages keep role and content only (datasets' struct columns add null fields).
    assert as_text([{**USER, "tool_calls": None}], "prompt") == [USER]
    for empty in ("", "   ", None, []):
        with pytest.raises(RowError, match="^empty prompt; remove the row or give it text$"):
            as_text(empty, "prompt")
    with pytest.raises(RowError, match="^prompt must be text or a list of {role, content} messages, got int$"):
        as_text(3, "prompt")
    with pytest.raises(RowError, match='^prompt: message 2 must look like {"role": "user", "content": "..."}'):
        as_text([USER, {"role": "assistant"}], "prompt")
    with pytest.raises(RowError, match=r"^prompt: message 1 \(user\) is empty"):
        as_text([{"role": "user", "content": " "}], "prompt")
    assert as_completion([BLUE], "chosen") == "It is blue."
    with pytest.raises(RowError, match=r"chosen must be text or one assistant message, got the roles \['user'\]"):
        as_completion([USER], "chosen")


def test_implicit_prompt_is_the_shared_prefix_as_trl_extracts_it():
    # TRL's own example: the space before the point of difference stays with the completions.
    assert implicit_prompt("The sky is blue.", "The sky is green.") == ("The sky is", " blue.", " green.")
    assert implicit_prompt("x=1", "x=2") == ("x=", "1", "2")
    assert implicit_prompt([USER, BLUE], [USER, GREEN]) == ([USER], [BLUE], [GREEN])
    with pytest.raises(RowError, match="share no prompt"):
        implicit_prompt("blue", "green")
    with pytest.raises(RowError, match="do not differ after a shared prompt"):
        implicit_prompt("The sky", "The sky is blue.")
    with pytest.raises(RowError, match="both be text or both be conversations"):
        implicit_prompt("The sky is blue.", [USER, GREEN])


def test_ids_come_from_the_prompt_text():
    assert text_id("prompt", "The sky is") == SKY_ID
    assert text_id("prompt", [USER]) == text_id("prompt", [{"content": USER["content"], "role": "user"}]) == QUESTION_ID
    assert prompt_record({"prompt": "The sky is"}) == {"prompt_id": SKY_ID, "prompt": "The sky is"}
    assert prompt_record({"prompt_id": 7, "prompt": [USER]}) == {"prompt_id": "7", "prompt": [USER]}
    assert raw_text([USER]) == '[{"role": "user", "content": "What color is the sky?"}]'


def test_preference_rows_of_every_format():
    text = {"prompt_id": SKY_ID, "prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "split": None}
    assert preference_record({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}) == text
    # The implicit-prompt row is the same pair, under the same prompt id.
    assert preference_record({"chosen": "The sky is blue.", "rejected": "The sky is green."}) == text
    chat = {"prompt_id": QUESTION_ID, "prompt": [USER], "chosen": "It is blue.", "rejected": "It is green.",
            "split": "heldout"}
    assert preference_record({"prompt": [USER], "chosen": [BLUE], "rejected": [GREEN], "split": "heldout"}) == chat
    assert preference_record({"chosen": [USER, BLUE], "rejected": [USER, GREEN], "split": "heldout"}) == chat
    with pytest.raises(RowError, match="^split must be 'train' or 'heldout', got 'test'$"):
        preference_record({**text, "split": "test"})


def test_demonstration_rows_of_every_format():
    assert sft_record({"prompt": "The sky is", "completion": " blue."}) == {"prompt": "The sky is",
                                                                           "completion": " blue."}
    assert sft_record({"prompt": [USER], "completion": [BLUE]}) == {"prompt": [USER], "completion": "It is blue."}
    assert sft_record({"prompt": "a", "response": "b"}) == {"prompt": "a", "completion": "b"}
    system = {"role": "system", "content": "Be brief."}
    assert sft_record({"messages": [system, USER, BLUE]}) == {"prompt": [system, USER], "completion": "It is blue."}
    assert sft_record({"text": "The sky is blue."}) == {"prompt": None, "completion": "The sky is blue."}
    for messages in ([USER, BLUE, USER], [BLUE]):
        with pytest.raises(RowError, match="ends with the assistant message to learn"):
            sft_record({"messages": messages})
    with pytest.raises(RowError, match="text must be a string"):
        sft_record({"text": [USER]})


def test_every_example_in_the_docs_reads():
    docs = (Path(__file__).parents[1] / "docs" / "data.md").read_text()
    reader = {"Prompts": prompt_record, "Preferences": preference_record, "Demonstrations": sft_record}
    examples = {}
    for section in docs.split("\n### ")[1:]:  # each kind's section, its examples read as that kind
        kind = section.split()[0]
        examples[kind] = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", section, re.S)]
        for row in examples[kind]:
            reader[kind](row)
    assert {kind: len(rows) for kind, rows in examples.items()} == {"Prompts": 2, "Preferences": 4,
                                                                     "Demonstrations": 4}
