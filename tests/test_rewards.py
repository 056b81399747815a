import pyarrow as pa
import pytest
import ray

from rayalign.actors.rewards import RewardModelScorer, VaderReward
from rayalign.actors.runtime import map_with_actors
from rayalign.config import ActorResources
from tests.conftest import save_tiny


def scored_batch():
    return pa.table({"prompt": ["Review: ", "Review: ", "Review: "],
                     "response": ["A wonderful, moving film.", "Dull and awful.", "It is a film."]})


def test_vader_scores_sentiment():
    out = VaderReward()(scored_batch())
    positive, negative, neutral = out["reward"].to_pylist()
    assert positive > 0.5 and negative < -0.5 and neutral == 0.0
    assert out["reward_model"].to_pylist() == ["vader"] * 3


@pytest.fixture(scope="module", params=["llama", "qwen2", "gpt2"])
def reward_checkpoint(request, tmp_path_factory, tiny_reward_model) -> str:
    """Sequence-classification reward models of three architectures (GPT-2 pools its last token
    differently from Llama and Qwen2, where padding bugs show)."""
    if request.param == "llama":
        return tiny_reward_model
    return save_tiny(request.param, "reward", tmp_path_factory.mktemp(f"{request.param}-rm"), seed=1)


def test_reward_model_scorer_is_batch_invariant(reward_checkpoint):
    scorer = RewardModelScorer(reward_checkpoint, batch_size=2)
    batch = scored_batch()
    together = scorer(batch)["reward"].to_pylist()
    alone = [scorer(batch.slice(i, 1))["reward"].to_pylist()[0] for i in range(3)]
    assert together == pytest.approx(alone, abs=1e-5)  # right padding must not change a score
    assert len(set(round(r, 6) for r in together)) == 3


def test_reward_model_needs_a_single_output(tmp_path, tiny_model):
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    from tests.conftest import tiny_llama_config

    tok = AutoTokenizer.from_pretrained(tiny_model)
    LlamaForSequenceClassification(tiny_llama_config(tok, num_labels=2)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels=1"):
        RewardModelScorer(str(tmp_path))


def test_reward_model_actor_pool_in_ray_data(ray_local, tiny_reward_model):
    ds = ray.data.from_arrow(scored_batch())
    res = ActorResources(min_actors=1, max_actors=2, batch_size=2, torch_threads=1)
    out = map_with_actors(ds, RewardModelScorer, {"model_path": tiny_reward_model}, res).to_arrow_refs()
    table = pa.concat_tables(ray.get(out))
    assert table.num_rows == 3 and set(table.column_names) >= {"prompt", "response", "reward", "reward_model"}
    direct = RewardModelScorer(tiny_reward_model)(scored_batch())
    assert sorted(table["reward"].to_pylist()) == pytest.approx(sorted(direct["reward"].to_pylist()), abs=1e-5)


def test_reward_model_scores_what_reward_model_training_saw(tmp_path, tiny_reward_model):
    """A reward model trained on sequences cut to max_seq_len (from the left) scores the same cut:
    the reward_model stage saves max_seq_len as the tokenizer's model_max_length."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rayalign.training.reward_model import rm_batch_loss

    shutil.copytree(tiny_reward_model, tmp_path / "rm")
    tok = AutoTokenizer.from_pretrained(tmp_path / "rm")
    tok.model_max_length = 8
    tok.save_pretrained(tmp_path / "rm")
    prompt, response = "review: the plot was dull and the acting was weak but ", "the ending was great fun"
    scorer = RewardModelScorer(str(tmp_path / "rm"))
    [score] = scorer.score([prompt], [response])
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    ids = tok(prompt + response, add_special_tokens=False)["input_ids"]
    assert len(ids) > 8
    with torch.no_grad():
        last8 = model(input_ids=torch.tensor([ids[-8:]])).logits[0, 0].item()
    assert score == pytest.approx(last8, abs=1e-5)
    # Training encodes the same 8 tokens (a self-pair: one distinct sequence).
    _, stats = rm_batch_loss(model, {"prompt": [prompt], "chosen": [response], "rejected": [response]},
                             torch.device("cpu"), tok)
    assert stats["tokens"] == 8
