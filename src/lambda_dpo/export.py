"""A trained model directory -> a standalone checkpoint that plain transformers loads and any
serving stack steers by writing lambda's text into the system message.

`export_model(MODEL_DIR, OUT_DIR)` writes into OUT_DIR

    model.safetensors, config.json    the weights: a LoRA adapter merged into its base
                                      (peft's merge_and_unload), or a full fine-tune's weights
    generation_config.json            greedy decoding, stopping where `generate` stops
    tokenizer files                   with the chat template used in training, left padding
    README.md                         a model card: the aspects and exactly how lambda is written

so that `AutoModelForCausalLM.from_pretrained(OUT_DIR)` needs neither lambda-dpo nor peft. OUT_DIR
holds no lambda_dpo.json: it is a plain checkpoint, not a lambda-dpo model directory.

Precision: the weights are merged in float32 and saved in float32 unless `dtype` asks for
bfloat16 / float16. The base is first loaded in the dtype it was trained in (`model_dtype`), so a
base trained in the bf16 mixed mode contributes exactly the bf16 weights the adapter was trained
against; float32 holds those and the fp32 LoRA delta without rounding, a half-precision export
rounds the merged sum (half the size on disk).

Only conditioning "prompt" (lambda as text) and "none" (one fixed mixture) can be exported:
"embedding" feeds lambda through a learned map to soft-prompt vectors, which no text can carry.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from .conditioning import EMBEDDING_FILE
from .saved_model import (MODEL_CARD, base_model_lines, base_model_source, read_model_meta, saved_dtype,
                        saved_lambda_text, steering_examples, steering_rule_section)
from .models import load_model, load_tokenizer
from .precision import MODEL_DTYPES

EXPORT_DTYPES = tuple(d for d in MODEL_DTYPES if d != "auto")  # a checkpoint is written in one dtype
DEFAULT_MAX_NEW_TOKENS = 128  # generate's default


class EmbeddingNotExportableError(ValueError):
    """The model reads lambda through learned soft-prompt vectors, which no standalone checkpoint carries."""


def export_model(model_dir: str | Path, out_dir: str | Path, *, dtype: str = "float32",
                 overwrite: bool = False, trust_remote_code: bool = False) -> Path:
    """Write a standalone checkpoint of the lambda-dpo model in `model_dir` into `out_dir` (module doc).

    Raises FileNotFoundError when `model_dir` is not a lambda-dpo model directory,
    EmbeddingNotExportableError for conditioning "embedding", and ValueError for a bad dtype or an
    `out_dir` that is not empty (unless `overwrite`). The files are written into a temporary
    directory next to `out_dir` and moved into place at the end, so an interrupted export leaves
    no half-written checkpoint.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    meta = read_model_meta(model_dir)  # says what to do when this is not a model directory
    if meta["conditioning"] == "embedding":
        raise EmbeddingNotExportableError(
            f"{model_dir} was trained with conditioning: embedding, so lambda reaches it as soft-prompt vectors "
            f"computed by a learned map ({EMBEDDING_FILE}), not as text: a standalone checkpoint has no input "
            "through which lambda could be given, so it would silently lose steering. Steer this model with "
            "`lambda-dpo generate --model DIR --lambda ...` (or lambda_dpo.generation), or retrain it with "
            "`conditioning: prompt`, whose lambda text any serving stack can write, and export that")
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"export dtype {dtype!r} is not one of {', '.join(EXPORT_DTYPES)}")
    if out_dir.resolve() == model_dir.resolve():
        raise ValueError(f"the export directory {out_dir} is the model directory itself; choose another")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite or not out_dir.is_dir():
            raise ValueError(f"{out_dir} exists and is not an empty directory; choose another path "
                             "(or pass --overwrite to replace its contents)")

    tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code)
    model = _merged_model(model_dir, meta, trust_remote_code).to(getattr(torch, dtype)).eval()
    _set_generation_config(model, tokenizer)
    model.config.use_cache = True
    tokenizer.padding_side = "left"  # batched generation pads on the left; training padded on the right

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / MODEL_CARD).write_text(export_card(meta, dtype))
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _merged_model(model_dir: Path, meta: dict, trust_remote_code: bool) -> torch.nn.Module:
    """The trained weights as one plain transformers model, in float32."""
    trained_dtype = saved_dtype(meta)
    if not meta["adapter"]:
        return load_model(str(model_dir), dtype=trained_dtype, trust_remote_code=trust_remote_code).float()
    from peft import PeftModel

    # The base in the dtype it was trained in (exactly the weights the adapter saw), then fp32 for the merge.
    base = load_model(base_model_source(meta), dtype=trained_dtype, trust_remote_code=trust_remote_code).float()
    return PeftModel.from_pretrained(base, str(model_dir)).merge_and_unload()


def _set_generation_config(model, tokenizer) -> None:
    """Greedy, `generate`'s default length, and stopping at the tokenizer's end-of-sequence token (what
    `generate` passes) as well as at any the base model's generation config already names."""
    gen = model.generation_config
    eos = gen.eos_token_id
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.insert(0, tokenizer.eos_token_id)
    gen.eos_token_id = eos[0] if len(eos) == 1 else eos
    gen.pad_token_id = tokenizer.pad_token_id
    gen.do_sample = False
    gen.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    for key in ("temperature", "top_p", "top_k"):  # sampling settings would only draw warnings under greedy
        if hasattr(gen, key):
            setattr(gen, key, None)
    model.config.pad_token_id = tokenizer.pad_token_id


# ---------------------------------------------------------------------------------------- model card


def export_card(meta: dict, dtype: str) -> str:
    """README.md of an exported checkpoint: what lambda is, and the exact text that steers the model."""
    aspects = list(meta["aspects"])
    front, base = base_model_lines(meta)
    head = f"""---
library_name: transformers
{front}
tags: [lambda-dpo, dpo, preference-alignment, steerable]
---
# lambda-DPO model (standalone export)

Trained with lambda-dpo ({meta["loss_type"]}, beta={meta["beta"]}, lambda source: {meta["lambda_source"]});
{"the LoRA adapter is merged into the base weights" if meta["adapter"] else "fully fine-tuned"}. {base}
Weights in {dtype}. A plain transformers checkpoint: `AutoModelForCausalLM.from_pretrained(THIS_DIR)` loads it,
with no lambda-dpo or peft installed.

**Aspects** (the order of lambda): {", ".join(aspects)}
"""
    if meta["conditioning"] != "prompt":
        return head + """
**Conditioning**: `none`. This model was trained without lambda conditioning: it represents one fixed
mixture of the aspects. Use it as any chat model; there is no lambda to pass.
""" + _usage(None)
    text = saved_lambda_text(meta)
    return head + """
**Conditioning**: `prompt`. The model reads lambda, the weight of each aspect, as text in the system message.
Steer it by writing that text exactly as in training.
""" + steering_rule_section(meta) + _usage(text.render(steering_examples(aspects)[-1]))


def _usage(system: str | None) -> str:
    messages = ("[{\"role\": \"system\", \"content\": system},\n            {\"role\": \"user\", \"content\": "
                "\"Your prompt\"}]" if system is not None else "[{\"role\": \"user\", \"content\": \"Your prompt\"}]")
    setup = f"system = {system!r}  # the lambda text (see above)\n" if system is not None else ""
    return f"""
## Use with transformers

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("THIS_DIR")
model = AutoModelForCausalLM.from_pretrained("THIS_DIR")
{setup}messages = {messages}
ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**ids)  # greedy, max_new_tokens={DEFAULT_MAX_NEW_TOKENS} (generation_config.json)
print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
```

With that text, `lambda-dpo generate` on the training directory gives the same greedy replies (token for token
for a model trained and exported in float32; tests/unit/test_export.py checks it).
"""
