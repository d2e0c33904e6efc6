"""How the policy is told lambda (design.md section 4).

- "none": the prompt is left as is. One model for one mixture; lambda at inference does nothing.
- "prompt": lambda is written as text into the system message, so any chat model and any
  serving stack can be steered with no code change. `generate` applies the same rendering.

The reference model is always scored on the unconditioned prompt, so its log-probs do not
depend on lambda and are computed once.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from .data.schema import Message
from .tokenization import encode_prompt

CONDITIONING_MODES = ("none", "prompt")

LAMBDA_HEADER = "Preference weights for your reply (higher means that quality matters more):"


def format_lambda(lam: Mapping[str, float]) -> str:
    """'helpfulness=0.70, honesty=0.30' with aspects in the given order, two decimals."""
    return ", ".join(f"{aspect}={weight:.2f}" for aspect, weight in lam.items())


def condition_prompt(prompt: Sequence[Message], lam: Mapping[str, float] | None, mode: str) -> list[dict]:
    """Return the chat messages the policy sees under `lam`.

    With mode "prompt", the weights go at the end of the system message (a new system message
    is inserted when the conversation has none). Every aspect is listed, zero weights included,
    so the model sees the same slots for every lambda.
    """
    messages = [dict(m) for m in prompt]
    if mode == "none" or lam is None:
        return messages
    if mode != "prompt":
        raise ValueError(f"conditioning mode {mode!r} is not one of {CONDITIONING_MODES}")
    text = f"{LAMBDA_HEADER} {format_lambda(lam)}."
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{text}"
    else:
        messages.insert(0, {"role": "system", "content": text})
    return messages


def conditioned_prompt_ids(tokenizer, tokens, lam: Mapping[str, float] | None, mode: str) -> tuple[int, ...]:
    """Prompt ids the policy sees for a TokenizedList under `lam` (the stored ids when mode is none)."""
    if mode == "none" or lam is None:
        return tokens.prompt_ids
    return tuple(encode_prompt(tokenizer, condition_prompt(tokens.prompt, lam, mode)))
