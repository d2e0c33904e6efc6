"""`lambda-dpo evaluate`: a saved model's listwise figures on a file equal what training reported."""

import json

import pytest

from lambda_dpo.cli import main
from lambda_dpo.evaluate_saved import evaluate_saved
from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

DATA = "examples/tiny_listwise.jsonl"


@pytest.mark.parametrize("mode", [dict(use_lora=True), dict(use_lora=False),
                                  dict(use_lora=True, conditioning="embedding", embedding_init="instructions")],
                         ids=["lora-prompt", "full-prompt", "lora-embedding"])
def test_saved_model_reproduces_the_trainers_eval_figures(tiny_llama_dir, tmp_path, mode):
    """Training evaluates on eval_file with its in-memory model; evaluating the saved directory on
    the same file (reference recomputed: adapter off, or the base checkpoint for full weights)
    gives the same figures."""
    cfg = load_config(None, train_file=DATA, eval_file=DATA, model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=3, learning_rate=5e-2, beta=0.5,
                      reference_cache_dir=None, model_dtype="float32", seed=0, **mode)
    result = train(cfg)
    expected = {k.removeprefix("eval_"): v for k, v in result.eval_metrics.items() if "/" in k}
    got = evaluate_saved(tmp_path / "m", DATA, reference_cache_dir=None)
    assert got["n_lists"] == 24 and got["aspects"] == list(result.aspects)
    assert set(got["metrics"]) == set(expected)
    for key, value in expected.items():
        assert got["metrics"][key] == pytest.approx(value, abs=1e-6), key
    assert len({round(v, 6) for k, v in expected.items() if k.endswith("/kendall")}) > 1  # the model did move
    for kind in ("random", "shortest", "longest"):
        assert set(got["baselines"][kind]) == {f"{a}/top1" for a in result.aspects}


def test_cli_prints_a_table_and_json(tiny_llama_dir, tmp_path, capsys):
    cfg = load_config(None, train_file=DATA, eval_fraction=0, model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=1, reference_cache_dir=None, model_dtype="float32")
    train(cfg)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m"), DATA, "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"24 lists of {DATA}")
    assert "helpfulness" in out and "mean" in out and "shortest top1" in out
    assert main(["evaluate", str(tmp_path / "m"), DATA, "--no-cache", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_lists"] == 24


def test_a_file_without_the_models_aspects_is_a_clear_error(tiny_llama_dir, tmp_path):
    cfg = load_config(None, train_file=DATA, eval_fraction=0, model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=1, reference_cache_dir=None, model_dtype="float32")
    train(cfg)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"prompt": "hi", "responses": ["a", "b"], "ratings": {"style": [1, 2]}}) + "\n")
    with pytest.raises(ValueError, match=f"{other}: no list rates aspect.*the data rates: style"):
        evaluate_saved(tmp_path / "m", other, reference_cache_dir=None)


def test_float32_scoring_of_a_bf16_model_uses_its_own_reference(tiny_llama_dir, tmp_path):
    """--dtype float32 loads policy and reference in fp32, and the reference cache is keyed by the
    dtype: the fp32 evaluation computes its own reference instead of reading the bf16 one."""
    import torch

    from lambda_dpo.evaluate_saved import prepare_saved

    cfg = load_config(None, train_file=DATA, eval_fraction=0, model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=1, reference_cache_dir=None, model_dtype="bfloat16")
    train(cfg)
    cache = tmp_path / "cache"
    bf16 = evaluate_saved(tmp_path / "m", DATA, reference_cache_dir=str(cache))
    fp32 = evaluate_saved(tmp_path / "m", DATA, reference_cache_dir=str(cache), dtype="float32")
    assert (bf16["dtype"], fp32["dtype"]) == ("bfloat16", "float32")
    assert len(list(cache.rglob("*.safetensors"))) == 2
    sm, _, items, _, _ = prepare_saved(tmp_path / "m", DATA, reference_cache_dir=str(cache), dtype="float32")
    assert sm.model.get_base_model().get_input_embeddings().weight.dtype == torch.float32
    assert items[0].ref_logps.dtype == torch.float32


def test_eval_dtype_float32_scores_the_bf16_weights_in_fp32_and_restores_them(tiny_llama_dir, tmp_path,
                                                                                monkeypatch):
    """eval_dtype: float32 in a bf16 run: scoring sees fp32 weights, the figures equal `evaluate
    --dtype float32` of the saved model and do not depend on the eval batch size, and the weights go
    back to bf16 bit for bit."""
    import torch

    from lambda_dpo.training import trainer as trainer_module

    seen = []
    real = trainer_module.evaluate_lists
    monkeypatch.setattr(trainer_module, "evaluate_lists", lambda model, *a, **k: (
        seen.append(model.get_base_model().get_input_embeddings().weight.dtype), real(model, *a, **k))[1])
    cfg = load_config(None, train_file=DATA, eval_file=DATA, model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=2, learning_rate=5e-2, beta=0.5,
                      reference_cache_dir=str(tmp_path / "cache"), model_dtype="bfloat16", eval_dtype="float32")
    result = train(cfg)
    trainer = result.trainer
    expected = {k.removeprefix("eval_"): v for k, v in result.eval_metrics.items() if "/" in k}
    base = trainer.model.get_base_model()
    before = {n: p.detach().clone() for n, p in base.named_parameters() if p.dtype == torch.bfloat16}
    assert before  # a bf16 run
    assert seen == [torch.float32]
    trainer.args.per_device_eval_batch_size = 5
    again = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items() if "/" in k}
    for n, p in base.named_parameters():
        if n in before:
            assert p.dtype == torch.bfloat16 and torch.equal(p, before[n]), n
    got = evaluate_saved(tmp_path / "m", DATA, reference_cache_dir=str(tmp_path / "cache"), dtype="float32")
    for key, value in expected.items():
        assert again[key] == pytest.approx(value, abs=1e-6), key
        assert got["metrics"][key] == pytest.approx(value, abs=1e-6), key


def test_eval_dtype_float32_with_bf16_full_fine_tuning_is_a_config_error():
    with pytest.raises(ValueError, match="eval_dtype: float32 needs use_lora: true"):
        load_config(None, train_file=DATA, output_dir="o", use_lora=False, model_dtype="bfloat16", eval_dtype="float32")


def _delta_figures(model, collator, items, a, b):
    from lambda_dpo.evaluation.delta import delta_summary, lambda_deltas
    from lambda_dpo.targets import ratings_tensor

    aspects = list(collator.aspects)
    ratings, mask = ratings_tensor([it.tokens.source for it in items], aspects)
    delta = lambda_deltas(model, collator, items, {a: 1.0}, {b: 1.0}, batch_size=3)
    return delta_summary(delta, ratings[..., aspects.index(a)], ratings[..., aspects.index(b)], mask)


@pytest.mark.parametrize("use_lora", [True, False], ids=["lora", "full"])
def test_steering_figures_are_delta_of_the_model_and_of_the_base_given_the_same_text(tiny_llama_dir, tmp_path,
                                                                                    use_lora):
    """--steering a,b: mean |Delta| and Spearman of Delta for the saved model equal those of the
    trainer's in-memory model, and the base's those of the untrained weights (the adapter switched
    off, or the checkpoint training started from) under the same collator."""
    from lambda_dpo.models import load_model

    cfg = load_config(None, train_file=DATA, eval_file=DATA, model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=3, learning_rate=5e-2, beta=0.5,
                      reference_cache_dir=None, model_dtype="float32", seed=0, use_lora=use_lora,
                      **({} if use_lora else {"optim": "sgd"}))
    result = train(cfg)
    trainer = result.trainer
    got = evaluate_saved(tmp_path / "m", DATA, reference_cache_dir=None, steering=("conciseness", "helpfulness"))
    steering = got["steering"]
    assert steering["pair"] == ["conciseness", "helpfulness"]
    items = trainer.eval_dataset.items
    model_fig = _delta_figures(trainer.model, trainer.data_collator, items, "conciseness", "helpfulness")
    base_fig = _delta_figures(load_model(tiny_llama_dir, dtype="float32").eval(), trainer.data_collator, items,
                              "conciseness", "helpfulness")  # the untrained checkpoint, loaded afresh
    for who, expected in (("model", model_fig), ("base", base_fig)):
        assert steering[who]["replies"] == expected["replies"] and steering[who]["lists"] == expected["lists"]
        assert steering[who]["mean_abs_delta"] == pytest.approx(expected["mean_abs_delta"], rel=1e-5), who
        assert steering[who]["spearman"] == pytest.approx(expected["spearman"], abs=1e-6), who
    assert base_fig["mean_abs_delta"] > 0  # the two vertices' texts differ
    assert steering["model"]["mean_abs_delta"] != pytest.approx(base_fig["mean_abs_delta"], rel=1e-3)  # trained


def test_steering_without_conditioning_is_zero_and_a_bad_pair_is_named(tiny_llama_dir, tmp_path, capsys):
    cfg = load_config(None, train_file=DATA, eval_fraction=0, model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=1, reference_cache_dir=None, model_dtype="float32",
                      conditioning="none", lambda_source="fixed")
    train(cfg)
    st = evaluate_saved(tmp_path / "m", DATA, reference_cache_dir=None, steering=("honesty", "conciseness"))["steering"]
    assert st["model"]["mean_abs_delta"] == 0.0 and st["base"] is None and "conditioning 'none'" in st["base_note"]
    assert evaluate_saved(tmp_path / "m", DATA, reference_cache_dir=None,
                          steering="honesty, conciseness")["steering"]["pair"] == ["honesty", "conciseness"]
    with pytest.raises(ValueError, match="steering pair honesty,style: name two different aspects of the model "
                                         r"\(helpfulness, honesty, conciseness\)"):
        evaluate_saved(tmp_path / "m", "no-such-file.jsonl", reference_cache_dir=None, steering=("honesty", "style"))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m"), DATA, "--no-cache", "--steering", "honesty,conciseness"]) == 0
    out = capsys.readouterr().out
    assert "Delta = log pi(y | x, honesty vertex) - log pi(y | x, conciseness vertex)" in out
    assert "model: mean |Delta| 0.000 nats" in out
    assert main(["evaluate", str(tmp_path / "m"), DATA, "--no-cache", "--steering", "honesty"]) == 2
    assert "steering pair honesty: name two different aspects of the model" in capsys.readouterr().err


def test_cut_replies_are_scored_as_trained_and_older_models_as_they_were(tiny_llama_dir, tmp_path):
    """A saved model scores replies marked as truncated as its run did (without an end of turn); a
    model saved before the marks were read (no `score_cut_ends` in its config.yaml) scores them with it."""
    import yaml

    from lambda_dpo.evaluate_saved import prepare_saved

    records = [json.loads(line) for line in open(DATA)]
    for i, rec in enumerate(records):
        rec["truncated"] = [(i + j) % 3 == 0 for j in range(len(rec["responses"]))]
    data = tmp_path / "cut.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = load_config(None, train_file=str(data), eval_file=str(data), model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=2, learning_rate=5e-2, beta=0.5,
                      reference_cache_dir=None, model_dtype="float32", seed=0)
    result = train(cfg)
    expected = {k.removeprefix("eval_"): v for k, v in result.eval_metrics.items() if "/" in k}
    got = evaluate_saved(tmp_path / "m", data, reference_cache_dir=None)["metrics"]
    assert all(got[k] == pytest.approx(v, abs=1e-6) for k, v in expected.items())
    config = tmp_path / "m" / "config.yaml"
    saved = yaml.safe_load(config.read_text())
    assert saved["score_cut_ends"] is False
    _, _, items, now, _ = prepare_saved(tmp_path / "m", data, reference_cache_dir=None)
    del saved["score_cut_ends"]
    config.write_text(yaml.safe_dump(saved))
    _, _, old_items, old, _ = prepare_saved(tmp_path / "m", data, reference_cache_dir=None)
    assert now.score_cut_ends is False and old.score_cut_ends is True
    n_cut = sum(sum(r["truncated"]) for r in records)
    changed = sum(a != b for x, y in zip(items, old_items) for a, b in zip(x.tokens.response_ids, y.tokens.response_ids))
    assert n_cut > 0 and changed == n_cut  # every cut reply, and only those, loses its end of turn


def test_vertex_share_reaches_training_and_an_old_checkpoint_with_cut_replies_is_not_resumed_silently(
        tiny_llama_dir, tmp_path):
    """`lambda_vertex_share` is the share the trainer's lambda source draws with; resuming a checkpoint
    whose saved arguments predate `score_cut_ends` on data with cut replies is a config error."""
    import torch

    records = [json.loads(line) for line in open(DATA)]
    for rec in records:
        rec["truncated"] = [j == 0 for j in range(len(rec["responses"]))]
    data = tmp_path / "cut.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    common = dict(train_file=str(data), eval_fraction=0, model_name_or_path=tiny_llama_dir,
                  output_dir=str(tmp_path / "m"), reference_cache_dir=None, model_dtype="float32",
                  conditioning="prompt", lambda_text="instructions", lambda_vertex_share=0.75, save_strategy="steps",
                  save_steps=2)
    result = train(load_config(None, max_steps=2, **common))
    source = result.trainer.prepared.source
    vertex = source.points.max(dim=1).values == 1
    assert torch.isclose(source.probs[vertex].sum(), torch.tensor(0.75))
    ckpt = tmp_path / "m" / "checkpoint-2"
    assert json.loads((ckpt / "lambda_dpo_scoring.json").read_text()) == {"score_cut_ends": False}
    (ckpt / "lambda_dpo_scoring.json").unlink()  # as saved before the option existed
    with pytest.raises(ValueError, match="saved before score_cut_ends existed"):
        train(load_config(None, max_steps=4, resume_from_checkpoint="latest", **common))
    train(load_config(None, max_steps=4, resume_from_checkpoint="latest", score_cut_ends=True, **common))
