"""The model directory's files: written by training, read back by generation (no model needed)."""

import json
import re

import pytest
import yaml

from lambda_dpo.conditioning import LambdaText
from lambda_dpo.saved_model import (CONFIG_FILE, MODEL_CARD, MODEL_FORMAT, MODEL_META, base_model_source, mark_incomplete,
                                  model_card, portable_base_model, read_model_meta, saved_dtype, saved_lambda_text,
                                  write_model_files)
from lambda_dpo.training.config import load_config


def test_written_files_read_back(tmp_path):
    cfg = load_config(None, output_dir=str(tmp_path), model_name_or_path=str(tmp_path), conditioning="prompt",
                      model_dtype="float32", lambda_text="instructions")
    text = LambdaText("instructions", {"a": "Say a."})
    write_model_files(tmp_path, cfg, ("a", "b"), {"eval_mean/ndcg": 0.5}, text)
    meta = read_model_meta(tmp_path)
    assert meta["format"] == MODEL_FORMAT and meta["aspects"] == ["a", "b"] and meta["conditioning"] == "prompt"
    # every aspect's sentence is saved as training rendered it, the built-in default for b included
    assert saved_lambda_text(meta) == LambdaText("instructions", {"a": "Say a.", "b": "Focus on b."})
    assert saved_dtype(meta) == "float32"
    assert base_model_source(meta) == str(tmp_path)  # the resolved path still exists
    assert yaml.safe_load((tmp_path / CONFIG_FILE).read_text())["lambda_text"] == "instructions"
    card = (tmp_path / MODEL_CARD).read_text()
    assert "Say a. (weight 0.50)" in card and "--lambda a=0.50,b=0.50" in card and "| eval_mean/ndcg | 0.5000 |" in card

    mark_incomplete(tmp_path)
    assert not (tmp_path / MODEL_META).exists() and (tmp_path / CONFIG_FILE).exists()
    with pytest.raises(FileNotFoundError, match="not a lambda-dpo model directory"):
        read_model_meta(tmp_path)


def test_files_from_before_a_field_existed_get_its_default(tmp_path):
    (tmp_path / MODEL_META).write_text(json.dumps({"aspects": ["a"], "base_model": "m",
                                                   "base_model_path": str(tmp_path / "gone")}))
    meta = read_model_meta(tmp_path)
    assert saved_dtype(meta) == "float32" and saved_lambda_text(meta) == LambdaText("weights")
    assert base_model_source(meta) == "m"


@pytest.mark.parametrize("conditioning, says", [("embedding", "soft-prompt vectors"),
                                                ("none", "trained without lambda conditioning")])
def test_model_card_says_how_each_conditioning_is_steered(tmp_path, conditioning, says):
    cfg = load_config(None, output_dir=str(tmp_path), model_name_or_path=str(tmp_path), conditioning=conditioning,
                      model_dtype="float32")
    write_model_files(tmp_path, cfg, ("a", "b"), {}, LambdaText())
    card = (tmp_path / MODEL_CARD).read_text()
    assert says in card and ("(weight" not in card)


def test_saved_sentences_outlive_a_change_of_the_library_defaults(tmp_path, monkeypatch):
    from lambda_dpo import conditioning

    cfg = load_config(None, output_dir=str(tmp_path), model_name_or_path=str(tmp_path), conditioning="prompt",
                      model_dtype="float32", lambda_text="instructions")
    aspects = ("conciseness", "informativeness", "wit")
    text = LambdaText("instructions", {"conciseness": "Be brief."})
    write_model_files(tmp_path, cfg, aspects, {}, text)
    lam = {"conciseness": 0.2, "informativeness": 0.5, "wit": 0.3}
    rendered = text.render(lam)
    assert rendered == ("Give a detailed, thorough answer. (weight 0.50)\nFocus on wit. (weight 0.30)\n"
                        "Be brief. (weight 0.20)")
    assert read_model_meta(tmp_path)["lambda_text"]["instructions"] == {
        "conciseness": "Be brief.", "informativeness": "Give a detailed, thorough answer.", "wit": "Focus on wit."}

    # a later version of the library words its defaults differently
    monkeypatch.setattr(conditioning, "DEFAULT_ASPECT_INSTRUCTIONS",
                        {"informativeness": "Say a lot.", "wit": "Be witty."})
    assert text.render(lam) != rendered  # what an unsaved default would now read
    assert saved_lambda_text(read_model_meta(tmp_path)).render(lam) == rendered  # what the model was trained on


def test_card_metrics_leave_out_what_is_no_metric(tmp_path):
    cfg = load_config(None, output_dir=str(tmp_path), model_name_or_path=str(tmp_path), model_dtype="float32")
    write_model_files(tmp_path, cfg, ("a", "b"), {"eval_mean/ndcg": 0.5, "epoch": 3.0, "eval_runtime": 1.5,
                                                  "eval_samples_per_second": 9.0}, LambdaText())
    assert read_model_meta(tmp_path)["eval_metrics"] == {"eval_mean/ndcg": 0.5}
    card = (tmp_path / MODEL_CARD).read_text()
    assert "| eval_mean/ndcg | 0.5000 |" in card and "epoch" not in card and "runtime" not in card
    # a model saved before the filter: its card is written without them as well
    meta = dict(read_model_meta(tmp_path), eval_metrics={"eval_mean/ndcg": 0.5, "epoch": 3.0})
    assert "epoch" not in model_card(meta)


def _github_placeholder(card: str) -> bool:
    return re.search(r"https://github\.com/(?![\w-])", card) is not None


def test_card_names_the_embedded_base_model_by_its_hub_id_never_by_a_cache_path(tmp_path, monkeypatch):
    from lambda_dpo.export import export_card
    from lambda_dpo.models import DEFAULT_MODEL, PROVENANCE_FILE, SMOLLM2_HUB_ID

    cache = tmp_path / "cache"
    converted = cache / DEFAULT_MODEL  # what provision_smollm2 leaves: checked by its provenance file alone
    converted.mkdir(parents=True)
    (converted / PROVENANCE_FILE).write_text("{}")
    monkeypatch.setenv("LAMBDA_DPO_CACHE", str(cache))
    # as configured, and as training records it (the loaded model's _name_or_path: the converted directory)
    for name in (DEFAULT_MODEL, str(converted)):
        out = tmp_path / f"m-{len(name)}"
        cfg = load_config(None, output_dir=str(out), model_name_or_path=name, model_dtype="float32",
                          conditioning="prompt", lambda_text="instructions")
        write_model_files(out, cfg, ("a", "b"), {}, LambdaText("instructions"))
        meta = read_model_meta(out)
        assert (meta["base_model_id"], meta["base_model_origin"]) == (SMOLLM2_HUB_ID, "embedded")
        for card in ((out / MODEL_CARD).read_text(), export_card(meta, "float32")):
            assert f"\nbase_model: {SMOLLM2_HUB_ID}\n" in card and "embedded in lambda-dpo" in card
            assert str(tmp_path) not in card and ".cache" not in card
            assert not _github_placeholder(card)
        # on a machine without that directory the adapter's base is the embedded model, converted there
        moved = dict(meta, base_model_path=str(tmp_path / "gone"), base_model=str(tmp_path / "gone"))
        assert base_model_source(moved) == DEFAULT_MODEL


def test_card_names_a_local_base_by_its_directory_and_a_hub_cache_copy_by_its_id(tmp_path):
    local = tmp_path / "my-base"
    local.mkdir()
    assert portable_base_model(str(local)) == ("my-base", "local")
    snapshot = tmp_path / "hub" / "models--Org--Some-Model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert portable_base_model(str(snapshot)) == ("Org/Some-Model", "hub")
    assert portable_base_model("Org/Other") == ("Org/Other", "hub")

    cfg = load_config(None, output_dir=str(tmp_path / "m"), model_name_or_path=str(local), model_dtype="float32")
    write_model_files(tmp_path / "m", cfg, ("a", "b"), {}, LambdaText())
    card = (tmp_path / "m" / MODEL_CARD).read_text()
    assert "\nbase_model: my-base  # a local directory's name, not a hub id\n" in card
    assert "a local checkpoint directory where this model was trained" in card and str(tmp_path) not in card
