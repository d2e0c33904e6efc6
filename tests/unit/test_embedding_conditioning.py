"""Embedding conditioning: soft-prompt scoring equals a plain forward, training, save/load, steering."""

import json

import pytest
import torch

from lambda_dpo.conditioning import EMBEDDING_FILE, LambdaEmbedding, lambda_prefix
from lambda_dpo.generation import generate, load_steerable
from lambda_dpo.testing import tiny_model
from lambda_dpo.layouts import build_batch
from lambda_dpo.logprobs import score_batch


@pytest.mark.parametrize("layout", ["prompt_cache", "packed", "naive"])
def test_soft_prompt_scoring_equals_forward_on_concatenated_embeddings(layout):
    model = tiny_model("llama", vocab_size=97).eval()
    module = LambdaEmbedding(3, 64, n_tokens=2)
    lam = torch.tensor([[1.0, 0, 0], [0.2, 0.3, 0.5]])
    prompts, responses = [[5, 6, 7], [8, 9]], [[[10, 11], [12, 13, 14]], [[15], [16, 17], [18, 19]]]
    with torch.no_grad():
        prefix = module(lam)
        logps, _ = score_batch(model, build_batch(prompts, responses, layout, n_prefix=2), prefix_embeds=prefix)
        for b, (p, rs) in enumerate(zip(prompts, responses)):
            for i, r in enumerate(rs):
                embeds = torch.cat([prefix[b], model.get_input_embeddings()(torch.tensor(p + r))])[None]
                logp = model(inputs_embeds=embeds).logits[0].double().log_softmax(-1)
                start = 2 + len(p)
                expected = sum(logp[start - 1 + k, t].item() for k, t in enumerate(r))
                assert logps[b, i].item() == pytest.approx(expected, rel=1e-5)


def test_missing_prefix_is_a_clear_error():
    model = tiny_model("llama", vocab_size=97)
    with pytest.raises(ValueError, match="soft-prompt"):
        score_batch(model, build_batch([[1, 2]], [[[3], [4]]], "prompt_cache", n_prefix=2))


def test_embedding_trains_saves_reloads_and_steers(tiny_llama_dir, tmp_path):
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    cfg = load_config(None, train_file="examples/tiny_listwise.jsonl", model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=3, eval_fraction=0.2, conditioning="embedding",
                      embedding_tokens=3, reference_cache_dir=str(tmp_path / "c"), learning_rate=1e-2,
                      model_dtype="float32")  # the raw forwards below feed fp32 soft prompts to the model
    result = train(cfg)
    trained = result.trainer.model.lambda_embedding
    fresh = LambdaEmbedding(**trained.config())
    state = result.trainer.optimizer.state
    for param in trained.parameters():  # trained with the adapter: AdamW moved every weight of the map
        assert param in state and state[param]["exp_avg"].abs().sum() > 0
    assert (tmp_path / "m" / EMBEDDING_FILE).exists()
    assert json.loads((tmp_path / "m" / "lambda_dpo.json").read_text())["conditioning"] == "embedding"
    assert "eval_mean/ndcg" in result.eval_metrics

    sm = load_steerable(tmp_path / "m")
    lam = torch.tensor([[0.0, 1.0, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(lambda_prefix(sm.model, lam), trained(lam))  # round trip
        assert not torch.allclose(fresh(lam), trained(lam))
        a, b = lambda_prefix(sm.model, torch.eye(3)[:1]), lambda_prefix(sm.model, torch.eye(3)[1:2])
        ids = torch.tensor([[40, 41, 42]])
        emb = sm.model.get_input_embeddings()(ids)
        la = sm.model(inputs_embeds=torch.cat([a, emb], 1)).logits[0, -1].softmax(-1)
        lb = sm.model(inputs_embeds=torch.cat([b, emb], 1)).logits[0, -1].softmax(-1)
    assert (la - lb).abs().sum() > 1e-4  # lambda moves the next-token distribution
    replies = generate(sm, ["hi", "What is 2+2?"], "helpfulness=1", max_new_tokens=5)
    assert len(replies) == 2


def test_instructions_init_starts_each_vertex_at_its_sentence():
    """embedding_init=instructions: at vertex e_k the untrained prefix is exactly the token embeddings
    of aspect k's sentence (padded with a space to the longest one), a mixture is the same mixture of
    them, and the module's config rebuilds it."""
    from lambda_dpo.conditioning import attach_lambda_embedding
    from lambda_dpo.testing import gpt2_tokenizer

    tok = gpt2_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok))
    sentences = ["Answer in one short sentence.", "Give a detailed, thorough answer.", "Be exact."]
    module = attach_lambda_embedding(model, tok, 3, n_tokens=2, instructions=sentences)
    ids = [tok(s, add_special_tokens=False)["input_ids"] for s in sentences]
    assert module.n_tokens == max(map(len, ids)) > 2
    space = tok(" ", add_special_tokens=False)["input_ids"][-1]
    table = model.get_input_embeddings().weight
    with torch.no_grad():
        for k, row in enumerate(ids):
            padded = row + [space] * (module.n_tokens - len(row))
            torch.testing.assert_close(module(torch.eye(3)[k:k + 1])[0], table[torch.tensor(padded)], rtol=0, atol=0)
        mix = torch.tensor([[0.25, 0.75, 0.0]])
        torch.testing.assert_close(module(mix), 0.25 * module(torch.eye(3)[:1]) + 0.75 * module(torch.eye(3)[1:2]))
    rebuilt = LambdaEmbedding(**module.config())
    rebuilt.load_state_dict(module.state_dict())
    torch.testing.assert_close(rebuilt(mix), module(mix))
    with pytest.raises(ValueError, match="2 instruction sentences for 3 aspects"):
        attach_lambda_embedding(model, tok, 3, instructions=sentences[:2])


def test_instructions_init_trains_saves_and_reloads(tiny_llama_dir, tmp_path):
    from lambda_dpo.conditioning import aspect_instruction
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    cfg = load_config(None, train_file="examples/tiny_listwise.jsonl", model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=2, eval_fraction=0.2, conditioning="embedding",
                      embedding_init="instructions", embedding_tokens=1, reference_cache_dir=str(tmp_path / "c"),
                      learning_rate=1e-2, model_dtype="float32")
    result = train(cfg)
    trained = result.trainer.model.lambda_embedding
    tok = result.trainer.processing_class
    longest = max(len(tok(aspect_instruction(a), add_special_tokens=False)["input_ids"])
                  for a in result.aspects)
    assert trained.n_tokens == result.trainer.resolved.embedding_tokens == longest  # the sentences set the length
    assert cfg.embedding_tokens == 1  # the config stays as asked
    assert trained.vertices in result.trainer.optimizer.state  # V is trained with the adapter
    saved = (tmp_path / "m" / "config.yaml").read_text()
    assert "embedding_tokens: 1" in saved and "embedding_init: instructions" in saved
    assert json.loads((tmp_path / "m" / "lambda_dpo.json").read_text())["resolved"]["embedding_tokens"] == longest
    sm = load_steerable(tmp_path / "m")
    lam = torch.tensor([[0.5, 0.5, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(lambda_prefix(sm.model, lam), trained(lam))
    assert len(generate(sm, ["hi"], "helpfulness=1", max_new_tokens=3)) == 1


def test_unknown_embedding_init_is_a_config_error():
    from lambda_dpo.training.config import load_config

    with pytest.raises(ValueError, match="embedding_init='words' is not one of header, instructions"):
        load_config(None, train_file="x.jsonl", output_dir="o", embedding_init="words")


def test_resuming_with_the_other_embedding_init_is_an_error(tiny_llama_dir, tmp_path):
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    common = dict(train_file="examples/tiny_listwise.jsonl", model_name_or_path=tiny_llama_dir, eval_fraction=0,
                  output_dir=str(tmp_path / "m"), conditioning="embedding", reference_cache_dir=None,
                  model_dtype="float32", save_strategy="steps", save_steps=1)
    train(load_config(None, max_steps=1, **common))  # header init, checkpoint-1 holds its map
    assert (tmp_path / "m" / "checkpoint-1" / EMBEDDING_FILE).exists()
    with pytest.raises(ValueError, match="embedding_init='instructions', but the checkpoint .*checkpoint-1 was "
                                         "trained with the other initialisation"):
        train(load_config(None, max_steps=2, resume_from_checkpoint="latest", embedding_init="instructions", **common))
