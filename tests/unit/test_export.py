"""`lambda-dpo export`: a standalone checkpoint that plain transformers loads and steers.

The steering text is written here by hand, from the rule the exported model card states (not with
lambda-dpo's conditioning code), and the exported model is run in a fresh Python process where
importing lambda_dpo or peft fails: its greedy replies under two lambdas must equal
`lambda_dpo.generation.generate`'s on the training directory, token for token.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lambda_dpo.cli import main
from lambda_dpo.conditioning import LambdaText
from lambda_dpo.export import EmbeddingNotExportableError, export_model
from lambda_dpo.generation import generate, load_steerable, steered_prompt_ids
from lambda_dpo.saved_model import write_model_files
from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

ASPECTS = ["conciseness", "informativeness"]
PROMPTS = ["Tell me about rain.", "What is bread?"]
NEW_TOKENS = 16
PROBE = list(range(0, 50000, 2500))  # token ids whose next-token log-probs are compared as well
# Two lambdas and their text, written by hand from the exported card's rule: one line per aspect with
# a weight that rounds to >= 0.01, heaviest first, "<sentence> (weight W.WW)", joined by "\n".
# The sentences are the card's table: conciseness was given its own, informativeness has the built-in.
HAND_WRITTEN = {
    "conciseness=1.0": "Be brief. (weight 1.00)",
    "conciseness=0.25,informativeness=0.75": "Give a detailed, thorough answer. (weight 0.75)\nBe brief. (weight 0.25)",
}


def data_file(path: Path) -> str:
    with open(path, "w") as f:
        for topic in ["rain", "the moon", "bread", "rivers"]:
            replies = [f"{topic.capitalize()} is nice.",
                       f"{topic.capitalize()} has a long history: people studied it and wrote about it at length."]
            f.write(json.dumps({"prompt": f"Tell me about {topic}.", "responses": replies,
                                "ratings": {"conciseness": [5, 1], "informativeness": [1, 5]}}) + "\n")
    return str(path)


def train_tiny(tmp_path, model_dir, **overrides):
    fields = dict(model_name_or_path=model_dir, train_file=data_file(tmp_path / "data.jsonl"), eval_fraction=0,
                  aspects=ASPECTS, output_dir=str(tmp_path / "model"), reference_cache_dir=None, use_lora=True,
                  learning_rate=1e-2, beta=0.5, max_steps=3, per_device_train_batch_size=2, lambda_source="grid",
                  conditioning="prompt", lambda_text="instructions", aspect_instructions={"conciseness": "Be brief."},
                  model_dtype="float32", logging_steps=3, seed=0, lr_scheduler_type="constant", warmup_steps=0)
    fields.update(overrides)
    return train(load_config(None, **fields))


# Runs in a fresh interpreter where lambda_dpo and peft cannot be imported: only transformers.
PLAIN = textwrap.dedent("""
    import json, sys
    sys.modules["lambda_dpo"] = None  # any import of lambda_dpo (or peft) now raises ImportError
    sys.modules["peft"] = None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out_dir, cases, n_new = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    PROBE = json.loads(sys.argv[4])
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir).eval()
    results = []
    for system, prompt in cases:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=n_new)  # greedy: generation_config.json
            first = model(**ids).logits[0, -1].log_softmax(-1)[PROBE].tolist()  # next-token log-probs on a few ids
        new = out[0, ids["input_ids"].shape[1]:]
        results.append({"prompt_ids": ids["input_ids"][0].tolist(), "new_ids": new.tolist(), "first": first,
                        "text": tok.decode(new, skip_special_tokens=True).strip()})
    print(json.dumps({"results": results, "dtype": str(model.dtype), "gen": model.generation_config.to_dict()}))
""")


def test_exported_lora_model_replies_like_generate_with_the_documented_text(tmp_path, tiny_llama_dir, one_thread):
    result = train_tiny(tmp_path, tiny_llama_dir)
    out = export_model(result.output_dir, tmp_path / "export")
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    assert not (out / "lambda_dpo.json").exists()  # a plain checkpoint, not a lambda-dpo model directory

    # The card states the rule, the aspects and their sentences, and renders the hand-written texts.
    card = (out / "README.md").read_text()
    for needle in ("conciseness, informativeness", "| conciseness | Be brief. |",
                   "| informativeness | Give a detailed, thorough answer. |", "heaviest", "rounds to at least 0.01",
                   "at the end of the system message, after a blank line", "the lambda text is the whole system message",
                   *HAND_WRITTEN.values()):
        assert needle in card, needle
        assert needle in (result.output_dir / "README.md").read_text(), needle  # the training directory's card too

    # The merge changed the weights (the adapter is not ~0 after 3 steps at lr 1e-2).
    merged, base = load_file(str(out / "model.safetensors")), load_file(str(Path(tiny_llama_dir) / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert (merged[name] - base[name]).abs().max() > 1e-3

    cases = [(system, prompt) for system in HAND_WRITTEN.values() for prompt in PROMPTS]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(out), json.dumps(cases), str(NEW_TOKENS),
                           json.dumps(PROBE)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = json.loads(proc.stdout.strip().splitlines()[-1])
    assert plain["dtype"] == "torch.float32" and plain["gen"]["do_sample"] is False

    sm = load_steerable(result.output_dir)
    tok = sm.tokenizer
    first = {}
    for (system, prompt), got in zip(cases, plain["results"]):
        lam = next(lam for lam, text in HAND_WRITTEN.items() if text == system)
        ids = steered_prompt_ids(sm, prompt, lam)
        assert got["prompt_ids"] == ids, "the card's rule does not reproduce the training prompt"
        with torch.no_grad():  # the ids `generate` decodes: same call, same settings
            ours = sm.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id)[0, len(ids):].tolist()
        assert got["new_ids"] == ours, (lam, prompt)
        assert got["text"] == generate(sm, [prompt], lam, max_new_tokens=NEW_TOKENS)[0]
        with torch.no_grad():
            logps = sm.model(input_ids=torch.tensor([ids])).logits[0, -1].log_softmax(-1)[PROBE]
        assert torch.allclose(torch.tensor(got["first"]), logps, atol=1e-5), (lam, prompt)
        first[lam, prompt] = logps
    # A tiny random model's greedy replies barely depend on the prompt, so the text's effect is checked on
    # the next-token distribution: the two lambdas' texts must change it (or the test would show nothing).
    for prompt in PROMPTS:
        a, b = (first[lam, prompt] for lam in HAND_WRITTEN)
        assert (a - b).abs().max() > 1e-4, prompt


def test_full_fine_tune_exports_its_weights(tmp_path, tiny_llama_dir, one_thread):
    result = train_tiny(tmp_path, tiny_llama_dir, use_lora=False, max_steps=2, learning_rate=1e-3)
    out = export_model(result.output_dir, tmp_path / "export", dtype="bfloat16")
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(str(out))
    assert plain.dtype == torch.bfloat16
    trained = load_file(str(result.output_dir / "model.safetensors"))
    exported = plain.state_dict()
    for name, value in trained.items():
        assert torch.equal(exported[name], value.to(torch.bfloat16)), name
    assert "fully fine-tuned" in (out / "README.md").read_text()


def fake_model_dir(path: Path, conditioning: str, text: LambdaText | None = None) -> Path:
    """A model directory without weights, its lambda written in `text` (default: the "weights" style)."""
    cfg = load_config(None, output_dir=str(path), model_name_or_path=str(path), conditioning=conditioning,
                      model_dtype="float32")
    write_model_files(path, cfg, ("a", "b"), {}, text or LambdaText("weights"))
    return path


def test_embedding_conditioning_cannot_be_exported(tmp_path, capsys):
    model_dir = fake_model_dir(tmp_path / "emb", "embedding")
    with pytest.raises(EmbeddingNotExportableError) as err:
        export_model(model_dir, tmp_path / "out")
    message = str(err.value)
    assert "soft-prompt vectors" in message and "not as text" in message  # what and why
    assert "lambda-dpo generate" in message and "conditioning: prompt" in message  # what to do
    assert not (tmp_path / "out").exists()
    assert main(["export", str(model_dir), str(tmp_path / "out")]) == 2
    assert "conditioning: embedding" in capsys.readouterr().err


def test_not_a_model_directory_and_a_busy_destination_are_clear_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "not a lambda-dpo model directory" in capsys.readouterr().err
    model_dir = fake_model_dir(tmp_path / "m", "prompt")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not an empty directory"):
        export_model(model_dir, busy)
    assert (busy / "keep.txt").exists()


def test_card_for_the_weights_and_priorities_styles_and_for_an_unconditioned_model(tmp_path):
    from lambda_dpo.conditioning import LAMBDA_HEADER
    from lambda_dpo.export import export_card
    from lambda_dpo.saved_model import read_model_meta

    meta = read_model_meta(fake_model_dir(tmp_path / "w", "prompt"))  # the "weights" style
    card = export_card(meta, "float32")
    assert f"`{LAMBDA_HEADER}`" in card and f"{LAMBDA_HEADER} a=0.25, b=0.75." in card
    card = export_card(read_model_meta(fake_model_dir(tmp_path / "p", "prompt", LambdaText("priorities"))), "float32")
    assert "`(high priority)` when W > 0.625" in card and "Focus on b. (high priority)\nFocus on a. (low priority)" in card
    assert "(weight" not in card and "Focus on a.\n```" in card  # a vertex: the sentence alone
    text = LambdaText("instructions", order="aspects")
    card = export_card(read_model_meta(fake_model_dir(tmp_path / "o", "prompt", text)), "float32")
    assert "in the aspect order above, whatever the weights" in card and "heaviest first" not in card
    assert "Focus on a. (weight 0.25)\nFocus on b. (weight 0.75)" in card  # the rendered example follows it
    card = export_card(read_model_meta(fake_model_dir(tmp_path / "g", "prompt", LambdaText("graded"))), "float32")
    assert "3 `fairly low`" in card and "Focus on b. (high priority)\nFocus on a. (fairly low priority)" in card
    card = export_card(read_model_meta(fake_model_dir(tmp_path / "n", "none")), "float32")
    assert "without lambda conditioning" in card and "(weight" not in card and LAMBDA_HEADER not in card


def _card_sentences(card: str) -> dict[str, str]:
    """The card's table of sentences, read as a user would: aspect -> sentence."""
    table = card.split("| aspect | sentence |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    return dict(re.fullmatch(r"\| (\S+) \| (.+) \|", row).groups() for row in table.splitlines())


def _by_hand(card: str, lam: dict[str, float]) -> str:
    """The lambda text written from the card alone (instructions style): its aspect order, its sentences, and
    its rule, one line per aspect whose weight rounds to at least 0.01, heaviest first (ties in aspect
    order), '<sentence> (weight W.WW)', joined by single newlines."""
    order = re.search(r"\*\*Aspects\*\* \(the order of lambda\): (.+)\n", card)[1].split(", ")
    sentences = _card_sentences(card)
    assert list(sentences) == order
    kept = sorted((a for a in order if round(lam.get(a, 0), 2) >= 0.01),
                  key=lambda a: (-round(lam[a], 2), order.index(a)))
    return "\n".join(f"{sentences[a]} (weight {lam[a]:.2f})" for a in kept)


def test_both_cards_state_the_rule_and_sentences_that_reproduce_generates_prompt(tmp_path, tiny_llama_dir):
    """A model directory (full weights: the tiny model's own) whose cards are read by hand: the sentences from
    the table, the text by the stated rule, placed where the card says, give exactly the prompt ids
    `generate` feeds the model, with and without a system message of the user's."""
    import shutil

    from lambda_dpo.export import export_card
    from lambda_dpo.saved_model import MODEL_CARD, read_model_meta

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_llama_dir, model_dir)
    aspects = ("conciseness", "informativeness", "wit")
    cfg = load_config(None, output_dir=str(model_dir), model_name_or_path=tiny_llama_dir, use_lora=False,
                      model_dtype="float32", conditioning="prompt", lambda_text="instructions",
                      aspect_instructions={"conciseness": "Be brief."})
    write_model_files(model_dir, cfg, aspects, {"eval_mean/ndcg": 0.5, "epoch": 1.0},
                      LambdaText("instructions", {"conciseness": "Be brief."}))
    sm = load_steerable(model_dir)
    cards = {"model directory": (model_dir / MODEL_CARD).read_text(),
             "export": export_card(read_model_meta(model_dir), "float32")}
    lambdas = [{"conciseness": 1.0, "informativeness": 0.0, "wit": 0.0},
               {"conciseness": 0.25, "informativeness": 0.75, "wit": 0.0},
               {"conciseness": 0.3, "informativeness": 0.3, "wit": 0.4},
               {"conciseness": 0.004, "informativeness": 0.498, "wit": 0.498}]
    for name, card in cards.items():
        assert _card_sentences(card) == {"conciseness": "Be brief.", "wit": "Focus on wit.",
                                         "informativeness": "Give a detailed, thorough answer."}, name
        for rule in ("one line per aspect whose weight rounds to at least 0.01",
                     "heaviest first (by the weight rounded to two decimals; ties in the aspect order above)",
                     "`(weight W)` with W the weight to two decimals", "joined by a single newline, with no trailing",
                     "at the end of the system message, after a blank line",
                     "the lambda text is the whole system message", "`add_generation_prompt=True`"):
            assert rule in card, (name, rule)
        assert "epoch" not in card and not re.search(r"https://github\.com/(?![\w-])", card), name
        for lam in lambdas:
            text = _by_hand(card, lam)
            for own_system in (None, "You are a careful assistant."):
                user = {"role": "user", "content": "Tell me about rain."}
                messages = ([{"role": "system", "content": f"{own_system}\n\n{text}"}, user] if own_system else
                            [{"role": "system", "content": text}, user])
                given = [{"role": "system", "content": own_system}, user] if own_system else user["content"]
                by_hand = sm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                           return_dict=False)
                assert list(by_hand) == steered_prompt_ids(sm, given, lam), (name, lam, own_system)
