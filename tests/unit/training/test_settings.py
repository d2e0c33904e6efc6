"""Settings resolved once: the user's config is never written to; what ran is a frozen record, logged once
and saved with the model; lambda_dpo.json's format is versioned and the previous format still reads."""

import copy
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import TESTS

from lambda_dpo.conditioning import LambdaText
from lambda_dpo.saved_model import (MODEL_FORMAT, MODEL_META, base_model_source, read_model_meta, saved_dtype,
                                    saved_lambda_text, saved_rating_scales)
from lambda_dpo.training.config import load_config
from lambda_dpo.training.settings import ResolvedSettings, saved_settings

DATA = "examples/tiny_listwise.jsonl"
FIXTURES = TESTS / "fixtures"
ASPECTS = ["helpfulness", "honesty", "conciseness"]
SENTENCES = {"helpfulness": "Be as helpful as you can.", "honesty": "Be honest and say when you are unsure.",
             "conciseness": "Answer in one short sentence."}


def _as_asked(cfg) -> dict:
    return copy.deepcopy(dataclasses.asdict(cfg))


def test_train_leaves_the_config_as_asked_and_saves_and_logs_what_ran(tiny_llama_dir, tmp_path, caplog, one_thread):
    from lambda_dpo.training.run import train

    cfg = load_config(None, train_file=DATA, eval_fraction=0.25, model_name_or_path=tiny_llama_dir, max_steps=1,
                      output_dir=str(tmp_path / "m"), reference_cache_dir=None, seed=0, conditioning="embedding",
                      embedding_init="instructions", embedding_tokens=1, rating_scale="minmax")
    asked = _as_asked(cfg)
    with caplog.at_level(logging.INFO, logger="lambda_dpo.training"):
        result = train(cfg)
    assert _as_asked(cfg) == asked  # every field, auto values included, as the user wrote it
    assert (cfg.model_dtype, cfg.attn_implementation, cfg.layout, cfg.embedding_tokens) == ("auto", "auto", "auto", 1)

    resolved = result.trainer.resolved
    assert resolved.model_dtype in ("float32", "bfloat16") and resolved.attn_implementation in ("sdpa", "eager")
    assert resolved.layout == "packed" and resolved.layout_why.startswith("auto: ")
    assert resolved.embedding_tokens > 1  # the longest instruction sentence sets the soft prompt's length
    assert resolved.aspects == tuple(ASPECTS) and resolved.lambda_text.instructions == SENTENCES
    assert set(resolved.rating_scale) == set(ASPECTS) and resolved.rating_scale["helpfulness"]["scale"] == "minmax"
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.layout = "prompt_cache"

    # logged once, as one block, before the reference pass
    assert caplog.text.count("resolved settings (what runs") == 1
    assert "\n  layout: packed (auto: " in caplog.text and f"\n  embedding_tokens: {resolved.embedding_tokens}\n" \
        in caplog.text
    # saved with the model, and read back as the same record; config.yaml holds the config as asked
    meta = read_model_meta(tmp_path / "m")
    assert meta["format"] == MODEL_FORMAT and meta["resolved"]["layout"] == "packed"
    assert saved_settings(tmp_path / "m") == resolved
    assert ResolvedSettings.from_dict(resolved.as_dict()) == resolved
    saved = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())
    assert {k: saved[k] for k in ("model_dtype", "attn_implementation", "layout", "embedding_tokens")} == {
        "model_dtype": "auto", "attn_implementation": "auto", "layout": "auto", "embedding_tokens": 1}


def test_the_trainer_built_from_python_leaves_its_args_as_asked(tiny_llama_dir, tmp_path, one_thread):
    from lambda_dpo.models import load_model
    from lambda_dpo.training import LambdaDPOTrainer

    records = [json.loads(line) for line in open(DATA)][:6]
    cfg = load_config(None, output_dir=str(tmp_path / "o"), max_steps=1, reference_cache_dir=None)
    asked = _as_asked(cfg)
    by_name = LambdaDPOTrainer(model=tiny_llama_dir, args=cfg, train_dataset=records)
    assert _as_asked(cfg) == asked and by_name.resolved.base_model == tiny_llama_dir
    passed = LambdaDPOTrainer(model=load_model(tiny_llama_dir), args=cfg, train_dataset=records)
    assert _as_asked(cfg) == asked
    assert (passed.resolved.model_dtype, passed.resolved.model_dtype_why) == ("float32", "auto: the model passed in")
    assert passed.resolved.base_model == tiny_llama_dir  # the model's own name, not the config's default


# -------------------------------------------------------------------- lambda_dpo.json format versions
# tests/fixtures/model_dir_v1*: lambda_dpo.json, config.yaml and the model card (no weights) of two tiny LoRA runs
# saved by lambda-dpo before the format became v2 (at f3c1b34), from a base model in a hub cache directory:
# model_dir_v1 with prompt conditioning, lambda_text priorities, a sentence of the user's and minmax / rank
# scales; model_dir_v1_embedding with embedding conditioning (instructions init, embedding_tokens 1) and zscore.

V1_SCALES = {
    "model_dir_v1": {"helpfulness": {"scale": "minmax", "min": 1.0, "max": 5.0}, "honesty": {"scale": "rank"},
                     "conciseness": {"scale": "as_is"}},
    "model_dir_v1_embedding": {
        "helpfulness": {"scale": "zscore", "mean": 3.433333333333333, "std": 1.8740923729160797},
        "honesty": {"scale": "zscore", "mean": 3.8392857142857144, "std": 1.4611246367376167},
        "conciseness": {"scale": "zscore", "mean": 4.5, "std": 0.8660254037844386}},
}
V1_TEXT = {"model_dir_v1": ("priorities", "Be as helpful as you can. (high priority)\n"
                                          "Answer in one short sentence. (low priority)"),
           "model_dir_v1_embedding": ("instructions", "Be as helpful as you can. (weight 0.70)\n"
                                                      "Answer in one short sentence. (weight 0.30)")}


@pytest.mark.parametrize("name", ["model_dir_v1", "model_dir_v1_embedding"])
def test_a_model_directory_of_format_v1_reads_as_it_did(name):
    """What the readers gave for these files before the format became v2 (recorded then), they give now."""
    meta = read_model_meta(FIXTURES / name)
    assert meta["format"] == "lambda-dpo-model-v1" and "resolved" not in meta
    assert meta["aspects"] == ASPECTS and meta["adapter"] is True
    assert meta["conditioning"] == ("prompt" if name == "model_dir_v1" else "embedding")
    assert saved_dtype(meta) == "float32"
    if not Path(meta["base_model_path"]).is_dir():  # the training machine's path: the hub id it was a copy of
        assert base_model_source(meta) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    style, rendered = V1_TEXT[name]
    assert saved_lambda_text(meta) == LambdaText(style, SENTENCES, "weight")
    assert saved_lambda_text(meta).render({"helpfulness": 0.7, "honesty": 0.0, "conciseness": 0.3}) == rendered
    assert saved_rating_scales(meta) == V1_SCALES[name]

    # its resolved settings: config.yaml then held the layout, kernel and soft-prompt length that ran
    settings = saved_settings(FIXTURES / name)
    assert (settings.model_dtype, settings.attn_implementation, settings.layout) == ("float32", "sdpa", "packed")
    assert settings.embedding_tokens == (None if name == "model_dir_v1" else 9)
    assert settings.aspects == tuple(ASPECTS) and settings.lambda_text == saved_lambda_text(meta)
    assert settings.rating_scale == V1_SCALES[name] and settings.eval_dtype == "float32"


def test_a_format_from_a_newer_lambda_dpo_is_refused_saying_what_to_do(tmp_path):
    from lambda_dpo.generation import load_steerable

    shutil.copytree(FIXTURES / "model_dir_v1", tmp_path / "m")
    meta = json.loads((tmp_path / "m" / MODEL_META).read_text())
    (tmp_path / "m" / MODEL_META).write_text(json.dumps({**meta, "format": "lambda-dpo-model-v9",
                                                         "lambda_dpo_version": "9.0"}))
    message = (f"{tmp_path / 'm' / MODEL_META}: format 'lambda-dpo-model-v9' \\(written by lambda-dpo 9.0\\) is not "
               "one lambda-dpo .* reads \\(lambda-dpo-model-v1, lambda-dpo-model-v2\\).*upgrade lambda-dpo")
    with pytest.raises(ValueError, match=message):
        read_model_meta(tmp_path / "m")
    with pytest.raises(ValueError, match=message):
        load_steerable(tmp_path / "m")
