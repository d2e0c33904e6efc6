"""The command line end to end on a tiny saved model: validate-data, train, evaluate, generate."""

import inspect
import json
from pathlib import Path

import pytest
import torch
import yaml

from lambda_dpo.cli import main
from lambda_dpo.data import load_lists
from lambda_dpo.generation import load_steerable, steered_prompt_ids
from lambda_dpo.lambdas import parse_lambda
from lambda_dpo.models import load_model, load_tokenizer
from lambda_dpo.layouts import build_batch
from lambda_dpo.logprobs import score_batch
from lambda_dpo.tokenization import tokenize_lists

UF = "tests/fixtures/ultrafeedback_sample.jsonl"


def write_config(path: Path, **fields) -> str:
    path.write_text(yaml.safe_dump(fields))
    return str(path)


def test_validate_data_reports_na_and_short_lists(capsys):
    assert main(["validate-data", UF]) == 0
    out = capsys.readouterr().out
    assert "ultrafeedback" in out and "N=3" in out and "missing rating" in out


def test_malformed_file_names_file_line_field_and_fix(capsys):
    assert main(["validate-data", "tests/fixtures/malformed.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "tests/fixtures/malformed.jsonl:2" in err and "Fix:" in err


def test_skip_bad_counts_every_rejection(capsys):
    assert main(["validate-data", "tests/fixtures/malformed.jsonl", "--skip-bad", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = [l for l in Path("tests/fixtures/malformed.jsonl").read_text().splitlines() if l.strip()]
    assert summary["records_read"] == len(lines)
    assert summary["lists_accepted"] + sum(r["count"] for r in summary["rejected"].values()) == len(lines)
    assert summary["rejected"]["bad_json"]["count"] == 1 and summary["rejected"]["too_few_responses"]["count"] == 1


def test_build_data_help_reaches_its_own_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build-data", "--help"])
    assert exit_info.value.code == 0
    assert "--n-prompts" in capsys.readouterr().out


def test_unknown_option_of_another_command_is_still_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["validate-data", UF, "--no-such-option"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_train_ultrafeedback_then_generate_under_two_lambdas(tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "model"
    cfg = write_config(tmp_path / "c.yaml", model_name_or_path=tiny_llama_dir, train_file=UF, eval_fraction=0.34,
                       output_dir=str(out), max_steps=3, learning_rate=1e-2, reference_cache_dir=str(tmp_path / "c"),
                       per_device_train_batch_size=2)
    assert main(["train", cfg, "logging_steps=1", "beta=0.5"]) == 0
    meta = json.loads((out / "lambda_dpo.json").read_text())
    assert meta["aspects"] == ["helpfulness", "honesty", "instruction_following", "truthfulness"]
    assert meta["conditioning"] == "prompt" and meta["beta"] == 0.5
    assert "eval_mean/ndcg" in meta["eval_metrics"] and (out / "adapter_model.safetensors").exists()
    card = (out / "README.md").read_text()
    assert "--lambda" in card and "instruction_following" in card
    capsys.readouterr()

    for lam in ("helpfulness=1", "truthfulness=1"):
        assert main(["generate", "--model", str(out), "--lambda", lam, "--max-new-tokens", "12", "Say hi"]) == 0
        assert capsys.readouterr().out.strip()

    # The model sees lambda: its next-token distribution moves when only lambda changes.
    sm = load_steerable(out)
    dists = []
    for lam in ("helpfulness=1", "truthfulness=1"):
        ids = torch.tensor([steered_prompt_ids(sm, "Say hi", lam)])
        assert sm.lambda_text.render(parse_lambda(lam, sm.aspects)) in sm.tokenizer.decode(ids[0])
        assert "(weight 1.00)" in sm.tokenizer.decode(ids[0])  # the default text: instructions with weights
        with torch.no_grad():
            dists.append(sm.model(input_ids=ids).logits[0, -1].softmax(-1))
    assert (dists[0] - dists[1]).abs().sum() > 1e-3
    assert main(["generate", "--model", str(out), "--lambda", "kindness=1", "hi"]) == 2
    assert "unknown aspect" in capsys.readouterr().err


def test_full_finetune_reference_is_the_initial_weights(tiny_llama_dir, tmp_path):
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    cache = tmp_path / "c"
    cfg = load_config(None, train_file="examples/tiny_listwise.jsonl", model_name_or_path=tiny_llama_dir,
                      use_lora=False, output_dir=str(tmp_path / "m"), max_steps=2, learning_rate=1e-2,
                      reference_cache_dir=str(cache), eval_fraction=0.0, max_train_lists=4)
    result = train(cfg)
    trained = result.trainer.model
    initial = load_model(tiny_llama_dir)
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, initial.model.layers[0].mlp.up_proj.weight)

    from safetensors.torch import load_file
    cached = load_file(str(next(cache.glob("reference-*.safetensors"))))["logps"]
    lists = load_lists("examples/tiny_listwise.jsonl")[0][:4]
    tok = load_tokenizer(tiny_llama_dir)
    tl, _ = tokenize_lists(tok, lists, cfg.max_prompt_length, cfg.max_response_length)
    with torch.no_grad():
        logps, _ = score_batch(initial, build_batch([t.prompt_ids for t in tl], [t.response_ids for t in tl], "prompt_cache"))
    expected = torch.cat([logps[i, :len(t.response_ids)] for i, t in enumerate(tl)])
    torch.testing.assert_close(cached, expected)
    assert (tmp_path / "m" / "model.safetensors").exists()


@pytest.mark.parametrize("loss_type", ["dpo_best_worst", "dpo_all_pairs", "plackett_luce", "lipo_lambda"])
def test_every_baseline_trains_on_the_same_pipeline(loss_type, tiny_gpt2_dir, tmp_path):
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    cfg = load_config(None, train_file="examples/tiny_listwise.jsonl", model_name_or_path=tiny_gpt2_dir,
                      loss_type=loss_type, output_dir=str(tmp_path / "m"), max_steps=2, eval_fraction=0.2,
                      reference_cache_dir=str(tmp_path / "c"), conditioning="none", lambda_source="fixed")
    result = train(cfg)
    assert torch.isfinite(torch.tensor(result.train_metrics["train_loss"]))
    assert 0 <= result.eval_metrics["eval_mean/top1"] <= 1


def test_generate_passes_its_batch_size(monkeypatch, capsys):
    import lambda_dpo.generation as generation

    default = inspect.signature(generation.generate).parameters["batch_size"].default
    seen = {}

    def fake_generate(sm, prompts, lam, **kw):
        seen.update(kw, prompts=prompts)
        return [f"reply to {p}" for p in prompts]

    monkeypatch.setattr(generation, "load_steerable", lambda path, trust_remote_code=False: object())
    monkeypatch.setattr(generation, "generate", fake_generate)
    assert main(["generate", "--model", "m", "--batch-size", "3", "a", "b"]) == 0
    assert seen["batch_size"] == 3 and seen["prompts"] == ["a", "b"]
    assert capsys.readouterr().out.split("\n")[:2] == ["reply to a", "reply to b"]
    assert main(["generate", "--model", "m", "c"]) == 0 and seen["batch_size"] == default == 32
