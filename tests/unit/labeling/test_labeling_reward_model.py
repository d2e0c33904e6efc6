"""The reward-model judge on tiny random sequence classifiers saved to disk and loaded by transformers' real
classes: a scalar head and a three-output head with an index -> aspect map, scored in padded batches, equal to
a direct forward of the same model on the same chat-formatted text."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

from lambda_dpo.labeling.judges import RateInput, build_judge
from lambda_dpo.testing import gpt2_tokenizer

PROMPT = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a primary colour."})
REPLIES = ("Red.", "Blue is a primary colour, as are red and yellow in the painter's model.", "Yellow", "Green?")


def save_reward_model(path, num_labels: int, seed: int = 0) -> str:
    tok = gpt2_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         num_labels=num_labels)
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # scores far enough apart to tell replies apart
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def scalar_rm(tmp_path_factory):
    return save_reward_model(tmp_path_factory.mktemp("rm1"), 1)


@pytest.fixture(scope="module")
def multi_rm(tmp_path_factory):
    return save_reward_model(tmp_path_factory.mktemp("rm3"), 3, seed=1)


def direct_scores(path: str) -> torch.Tensor:
    """Each reply scored alone (no padding) by the model transformers loads, on the template's text."""
    tok = gpt2_tokenizer()
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    rows = []
    with torch.no_grad():
        for reply in REPLIES:
            text = tok.apply_chat_template([*PROMPT, {"role": "assistant", "content": reply}], tokenize=False)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            rows.append(model(torch.tensor([ids])).logits[0])
    return torch.stack(rows)


def test_a_scalar_reward_model_scores_every_reply_as_a_direct_forward_does(scalar_rm):
    judge = build_judge({"type": "reward_model", "model": scalar_rm, "aspect": "helpfulness", "batch_size": 3,
                         "device": "cpu"})
    assert judge.aspects == ("helpfulness",)
    out = judge.rate([RateInput(PROMPT, REPLIES, {})], [{"helpfulness": [0, 1, 2, 3]}])[0]
    expected = direct_scores(scalar_rm)[:, 0]
    assert torch.allclose(torch.tensor(out.values["helpfulness"]), expected, atol=1e-5)
    assert len(set(out.values["helpfulness"])) == 4 and out.reasons == {"helpfulness": {}}


def test_a_multi_output_head_maps_output_indices_to_aspects(multi_rm):
    judge = build_judge({"type": "reward_model", "model": multi_rm, "outputs": {0: "helpfulness", 2: "honesty"},
                         "batch_size": 2, "device": "cpu"})
    assert judge.aspects == ("helpfulness", "honesty")
    out = judge.rate([RateInput(PROMPT, REPLIES, {})], [{"helpfulness": [0, 1, 2, 3], "honesty": [1, 3]}])[0]
    expected = direct_scores(multi_rm)
    assert torch.allclose(torch.tensor(out.values["helpfulness"]), expected[:, 0], atol=1e-5)
    honesty = out.values["honesty"]
    assert honesty[0] is None and honesty[2] is None  # not asked for: kept ratings are not judged again
    assert torch.allclose(torch.tensor([honesty[1], honesty[3]]), expected[[1, 3], 2], atol=1e-5)


def test_a_too_long_conversation_is_missing_not_cut(scalar_rm):
    judge = build_judge({"type": "reward_model", "model": scalar_rm, "aspect": "helpfulness", "max_length": 64,
                         "device": "cpu"})
    out = judge.rate([RateInput(PROMPT, REPLIES, {})], [{"helpfulness": [0, 1]}])[0]
    assert out.values["helpfulness"][0] is not None
    assert out.values["helpfulness"][1] is None and out.reasons["helpfulness"] == {1: "too_long"}


def test_the_head_must_match_the_aspects(scalar_rm, multi_rm):
    with pytest.raises(ValueError, match="has 3 outputs, not 1"):
        build_judge({"type": "reward_model", "model": multi_rm, "aspect": "helpfulness"}).load()
    with pytest.raises(ValueError, match="name index 3, but the head has 3 outputs"):
        build_judge({"type": "reward_model", "model": multi_rm, "outputs": {3: "x"}}).load()
    with pytest.raises(ValueError, match="either aspect"):
        build_judge({"type": "reward_model", "model": scalar_rm})
    with pytest.raises(ValueError, match="dtype 'fp32' is not a torch dtype"):
        build_judge({"type": "reward_model", "model": scalar_rm, "aspect": "a", "dtype": "fp32"})
    with pytest.raises(ValueError, match="output indices"):
        build_judge({"type": "reward_model", "model": scalar_rm, "outputs": {"first": "x"}})
