"""Training-data preparation: SFT labels, length-bucketed batch order and the SFT table;
preference-file validation; the Ray Train run config; and the reward model's data path
(prompt-grouped order, distinct-response indexing, and a batch loss that scores each shared
response once)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rayalign.config import DataConfig, SFTConfig
from rayalign.data.preferences import read_preferences
from rayalign.data.prompts import PromptDataError
from rayalign.data.sft_data import build_sft_table
from rayalign.logprobs import pad_batch
from rayalign.losses import bradley_terry_loss
from rayalign.training.reward_model import distinct_index, load_reward_model, prompt_grouped_order, rm_batch_loss
from rayalign.training.sft import IGNORE_INDEX, length_bucketed_order, sft_labels


def test_sft_labels_mask_prompt_and_padding():
    ids, _, response = pad_batch([[5, 6, 7], [5]], [[8, 9], [10, 11, 12]], pad_id=0)
    labels = sft_labels(ids, response)
    assert labels.tolist() == [[-100, -100, -100, 8, 9], [-100, 10, 11, 12, -100]]
    assert IGNORE_INDEX == -100


def test_length_bucketing_groups_similar_lengths():
    lengths = [(i * 37) % 100 for i in range(256)]
    order = length_bucketed_order(lengths, batch_size=8, seed=0)
    assert sorted(order) == list(range(256))  # a permutation: nothing lost or repeated
    spread = [max(lengths[i] for i in order[j:j + 8]) - min(lengths[i] for i in order[j:j + 8])
              for j in range(0, 256, 8)]
    shuffled = [max(lengths[j:j + 8]) - min(lengths[j:j + 8]) for j in range(0, 256, 8)]
    assert sum(spread) < sum(shuffled) / 4
    # Batches are not in length order (training would see a length curriculum).
    firsts = [lengths[order[j]] for j in range(0, 256, 8)]
    assert firsts != sorted(firsts)


def test_length_bucketing_keeps_the_partial_batch_last():
    order = length_bucketed_order([3, 1, 2, 9, 8], batch_size=2, seed=1, window_batches=1)
    assert len(order) == 5 and sorted(order) == list(range(5))
    # random.Random(1) shuffles range(5) to [2, 3, 4, 0, 1]: windows [2, 3] (lengths 2, 9) and [4, 0]
    # (8, 3), sorted by length to [2, 3] and [0, 4]; row 1 is the partial batch. The odd row out must
    # close the order, so the full batches stay aligned on batch boundaries.
    assert order[-1] == 1
    assert sorted([order[0:2], order[2:4]]) == [[0, 4], [2, 3]]


def test_sft_table_appends_eos_and_truncates(tiny_model, tmp_path, ray_local):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"prompt": "the film", "response": "was great"}) + "\n"
                    + json.dumps({"prompt": "the plot " * 40, "response": "bad"}) + "\n")
    data = DataConfig(chat_template=False, instruction="{prompt}")
    table, dropped = build_sft_table(SFTConfig(data=str(path), max_seq_len=64), data, tok)
    assert dropped == 1 and table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["prompt_token_ids"] == tok("the film", add_special_tokens=False)["input_ids"]
    assert row["response_token_ids"][-1] == tok.eos_token_id
    short, _ = build_sft_table(SFTConfig(data=str(path), max_seq_len=len(row["prompt_token_ids"]) + 1), data, tok)
    assert short.to_pylist()[0]["response_token_ids"] == row["response_token_ids"][:1]
    with pytest.raises(PromptDataError, match="fits sft.max_seq_len"):
        build_sft_table(SFTConfig(data=str(path), max_seq_len=8), DataConfig(chat_template=False,
                                                                               instruction="{prompt} " * 20), tok)


def test_preference_file_errors_name_the_problem(tiny_model, tmp_path, ray_local):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    data = DataConfig(chat_template=False)
    bad = tmp_path / "prefs.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    with pytest.raises(PromptDataError, match="line 1: missing column 'rejected'"):
        read_preferences(str(bad), data, 0.5, tok)
    bad.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c", "split": "test"}) + "\n")
    with pytest.raises(PromptDataError, match="split must be 'train' or 'heldout'"):
        read_preferences(str(bad), data, 0.5, tok)
    bad.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c", "split": "train"}) + "\n")
    with pytest.raises(PromptDataError, match="no heldout pairs"):
        read_preferences(str(bad), data, 0.5, tok)


USER = {"role": "user", "content": "What color is the sky?"}
BLUE = {"role": "assistant", "content": "It is blue."}
GREEN = {"role": "assistant", "content": "It is green."}
TEMPLATED = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"  # tests/conftest.py's chat template


def test_sft_reads_every_demonstration_format(tiny_model, tmp_path, ray_local):
    from transformers import AutoTokenizer

    from tests.conftest import build_tokenizer

    tok, data = AutoTokenizer.from_pretrained(tiny_model), DataConfig(instruction="{prompt}")
    path = tmp_path / "sft.jsonl"  # one format per row: each row is recognised by its own columns
    path.write_text("".join(json.dumps(row) + "\n" for row in [
        {"prompt": "the film", "completion": " was great"}, {"messages": [USER, BLUE]},
        {"prompt": [USER], "completion": [BLUE]}, {"text": "the film was great"}]))
    table, dropped = build_sft_table(SFTConfig(data=str(path), max_seq_len=64), data, tok)
    rows = table.select(["prompt", "response"]).to_pylist()
    assert dropped == 0 and rows == [
        {"prompt": TEMPLATED.format("the film"), "response": " was great"},
        {"prompt": TEMPLATED.format(USER["content"]), "response": "It is blue."},
        {"prompt": TEMPLATED.format(USER["content"]), "response": "It is blue."},
        {"prompt": "", "response": "the film was great"}]  # plain text: all of it learned, nothing templated
    text = table.to_pylist()[3]
    assert text["prompt_token_ids"] == []
    assert text["response_token_ids"] == tok("the film was great", add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id]
    # A tokenizer with a BOS token starts plain text with it.
    bos_tok = build_tokenizer(tmp_path / "bos", bos=True)
    with_bos, _ = build_sft_table(SFTConfig(data=str(path), max_seq_len=64), data, bos_tok)
    assert with_bos.to_pylist()[3]["prompt_token_ids"] == [bos_tok.bos_token_id]
    path.write_text(json.dumps({"messages": [USER]}) + "\n")
    with pytest.raises(PromptDataError, match="sft.jsonl, line 1: messages must be a conversation that ends with "
                                              "the assistant message to learn"):
        build_sft_table(SFTConfig(data=str(path)), data, tok)


def test_preferences_read_explicit_and_implicit_prompts(tiny_model, tmp_path, ray_local):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    # One column has one type in Parquet: text pairs in one file, conversations in another. Explicit and
    # implicit rows share a file (an implicit row's prompt is null).
    more = [{"prompt": "The sky is", "chosen": f" blue {i}.", "rejected": f" grey {i}."} for i in range(8)]
    pq.write_table(pa.Table.from_pylist([{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
                                         {"prompt": None, "chosen": "The sky is blue.",
                                          "rejected": "The sky is green."}, *more]), tmp_path / "prefs-0.parquet")
    pq.write_table(pa.Table.from_pylist([{"prompt": [USER], "chosen": [BLUE], "rejected": [GREEN], "split": "heldout"},
                                         {"chosen": [USER, BLUE], "rejected": [USER, GREEN], "split": "heldout"}]),
                   tmp_path / "prefs-1.parquet")
    table = read_preferences(str(tmp_path / "prefs-*.parquet"), DataConfig(instruction="{prompt}"), 0.5, tok)
    text = {"prompt_id": "prompt-63460e4223f8a4b2", "prompt": TEMPLATED.format("The sky is"), "split": "train",
            "chosen": " blue.", "rejected": " green."}
    chat = {"prompt_id": "prompt-be982607f47cfdb8", "prompt": TEMPLATED.format(USER["content"]), "split": "heldout",
            "chosen": "It is blue.", "rejected": "It is green."}
    # An implicit prompt is the explicit one; pairs of a prompt share its id, so a split keeps them together.
    assert table.to_pylist() == [text, text, *({**text, "chosen": r["chosen"], "rejected": r["rejected"]}
                                               for r in more), chat, chat]


def test_train_run_config_carries_checkpoints_restarts_and_storage(tmp_path):
    from rayalign.config import TrainConfig
    from rayalign.training.trainer import train_run_config

    cfg = TrainConfig.model_validate({"keep_checkpoints": 3, "resources": {"max_failures": 2}})
    run = train_run_config(cfg, "run-train-abc", tmp_path)
    assert run.name == "run-train-abc" and run.storage_path == str((tmp_path / "ray_train").resolve())
    assert run.checkpoint_config.num_to_keep == 3 and run.failure_config.max_failures == 2
    shared = TrainConfig.model_validate({"resources": {"storage_path": "s3://bucket/train"}})
    assert train_run_config(shared, "x", tmp_path).storage_path == "s3://bucket/train"


def test_prompt_grouped_order_keeps_each_prompt_contiguous():
    ids = ["a", "b", "a", "c", "b", "a", "c"]
    order = prompt_grouped_order(ids, seed=3)
    assert sorted(order) == list(range(len(ids)))
    runs = [ids[i] for k, i in enumerate(order) if k == 0 or ids[i] != ids[order[k - 1]]]
    assert sorted(runs) == ["a", "b", "c"]  # one run per prompt
    assert order == prompt_grouped_order(ids, seed=3)
    assert any(prompt_grouped_order(ids, seed=s) != order for s in range(10))


def test_distinct_index_hand_example():
    assert distinct_index(["x", "y", "x", "z", "y"]) == (["x", "y", "z"], [0, 1, 0, 2, 1])


def test_rm_loss_scores_a_shared_response_once_with_the_same_loss_and_gradient(tiny_model):
    """Pairs sharing responses: one forward per distinct sequence gives the loss and gradient
    that scoring every pair's two sequences separately gives."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    torch.manual_seed(0)
    model = load_reward_model(tiny_model, tokenizer).eval()
    batch = {"prompt": ["P1 ", "P1 ", "P1 ", "P2 "], "chosen": ["good", "good", "fine", "yes"],
             "rejected": ["bad", "fine", "bad", "no"]}
    loss, stats = rm_batch_loss(model, batch, torch.device("cpu"), tokenizer)
    loss.backward()
    shared = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    def reward(text):
        enc = tokenizer([text], return_tensors="pt", add_special_tokens=False)
        return model(**enc).logits[0, 0]

    separate = torch.stack([bradley_terry_loss(reward(p + c), reward(p + r))
                            for p, c, r in zip(batch["prompt"], batch["chosen"], batch["rejected"])]).mean()
    separate.backward()
    assert loss.item() == pytest.approx(separate.item(), abs=1e-5)
    for a, p in zip(shared, model.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-5, rtol=1e-4)
    # 8 sequences in 4 pairs, 5 distinct: "P1 good", "P1 fine" and "P1 bad" each appear twice.
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"])
               for t in ["P1 good", "P1 bad", "P1 fine", "P2 yes", "P2 no"]]
    assert stats["tokens"] == sum(lengths)


@pytest.mark.parametrize("loss", ["dpo", "ipo_token_mean"])
def test_the_shared_prompt_batch_loss_equals_two_sequences_per_pair(tiny_model, loss):
    from transformers import AutoModelForCausalLM

    from rayalign.config import TrainConfig
    from rayalign.training.preference import preference_batch_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    batch = {"prompt_token_ids": [[1, 20, 30], [1, 40], [1, 20, 30, 31]],
             "chosen_token_ids": [[50, 60, 61], [70], [80, 81, 82, 83]],
             "rejected_token_ids": [[55, 56], [75, 76, 77, 78], [85, 86]],
             "chosen_ref_logprob": [-9.0, -4.0, -15.0], "rejected_ref_logprob": [-7.0, -13.0, -8.0]}
    settings = {"loss": "ipo", "ipo_token_mean": True} if loss == "ipo_token_mean" else {"loss": loss}
    results = []
    for share in (True, False):
        cfg = TrainConfig(share_prompt=share, **settings)
        value, stats = preference_batch_loss(model, batch, torch.device("cpu"), cfg, pad_id=0, use_reference=True)
        model.zero_grad()
        value.backward()
        stats = {k: float(v) for k, v in stats.items()}
        results.append((value.item(), stats, [p.grad.clone() for p in model.parameters()]))
    (shared, shared_stats, shared_grads), (padded, padded_stats, padded_grads) = results
    assert shared == pytest.approx(padded, abs=1e-5)
    assert shared_stats == pytest.approx(padded_stats, abs=1e-4)
    assert shared_stats["tokens"] == 2 * (3 + 2 + 4) + (3 + 1 + 4) + (2 + 4 + 2)
    for a, b in zip(shared_grads, padded_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
