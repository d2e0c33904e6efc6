"""How the policy is told lambda (docs/design.md, "How the policy sees lambda").

- "none": the prompt is left as is. One model for one mixture; lambda at inference does nothing.
- "prompt": lambda is written as text into the system message, so any chat model and any
  serving stack can be steered with no code change. `generate` applies the same rendering.
- "embedding": a small learned map from lambda to a few soft-prompt vectors placed before the
  prompt, trained with the adapter and saved next to it (`lambda_embedding.safetensors`); exact
  weights rather than text, at the cost of custom inference code (`generate` has it).

The reference model is always scored on the unconditioned prompt, so its log-probs do not
depend on lambda and are computed once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from safetensors.torch import load_file

from .atomic import atomic_save_file
from .data.schema import Message
from .tokenization import encode_prompt
from .wrappers import unwrap_model

CONDITIONING_MODES = ("none", "prompt", "embedding")
EMBEDDING_INITS = ("header", "instructions")
LAMBDA_TEXT_STYLES = ("instructions", "priorities", "graded", "weights")
LAMBDA_TEXT_ORDERS = ("weight", "aspects")
EMBEDDING_FILE = "lambda_embedding.safetensors"

LAMBDA_HEADER = "Preference weights for your reply (higher means that quality matters more):"

# Default wording per aspect for the "instructions" style: an imperative sentence a small chat model
# already follows. Aspects not listed get `"Focus on <aspect name>."`; users give their own with
# `aspect_instructions` (docs/steering.md says why words beat numbers for a 135M model).
DEFAULT_ASPECT_INSTRUCTIONS = {
    "helpfulness": "Be as helpful as you can.",
    "honesty": "Be honest and say when you are unsure.",
    "truthfulness": "Only state facts that are true.",
    "correctness": "Make sure every fact and number in your answer is correct.",
    "instruction_following": "Follow the instructions exactly.",
    "harmlessness": "Avoid anything harmful or offensive.",
    "coherence": "Keep your answer clear and well organised.",
    "complexity": "Use precise, expert-level language.",
    "verbosity": "Give a long, detailed answer.",
    "conciseness": "Answer in one short sentence.",
    "informativeness": "Give a detailed, thorough answer.",
}


def format_lambda(lam: Mapping[str, float]) -> str:
    """'helpfulness=0.70, honesty=0.30' with aspects in the given order, two decimals."""
    return ", ".join(f"{aspect}={weight:.2f}" for aspect, weight in lam.items())


def aspect_instruction(aspect: str, given: Mapping[str, str] | None = None) -> str:
    """The sentence that asks for `aspect`: the user's, else the built-in default, else from its name."""
    if given and aspect in given:
        return str(given[aspect]).strip()
    return DEFAULT_ASPECT_INSTRUCTIONS.get(aspect, f"Focus on {aspect.replace('_', ' ')}.")


def priority_tag(weight: float) -> str:
    """The "priorities" style's word for a weight W (rounded to two decimals, so never on a band's edge):
    ' (low priority)' for W < 0.375, ' (medium priority)' up to 0.625, ' (high priority)' above."""
    w = round(weight, 2)
    return f" ({'high' if w > 0.625 else 'medium' if w > 0.375 else 'low'} priority)"


# The "graded" style's word for a weight rounded to tenths (1..9; 10 is a line alone, 0 no line): a ladder of
# words a small model already orders, one step per tenth, so every tenth of weight changes the text.
GRADED_LEVELS = ("very low", "low", "fairly low", "medium-low", "medium", "medium-high", "fairly high", "high",
                 "very high")


def graded_tag(weight: float) -> str:
    """The "graded" style's word for a weight W: W rounded half up to tenths t (1..9) gives
    ' (<GRADED_LEVELS[t-1]> priority)', e.g. 0.25 -> ' (fairly low priority)', 0.6 -> ' (medium-high priority)'.
    Weights that round to 0 or 1 at tenths keep their level at the nearest end of the ladder."""
    t = min(max(int(round(weight, 2) * 10 + 0.5), 1), 9)
    return f" ({GRADED_LEVELS[t - 1]} priority)"


@dataclass(frozen=True)
class LambdaText:
    """How lambda is written into the system message (conditioning "prompt"); saved with the model.

    style "weights": one line, `LAMBDA_HEADER a=0.70, b=0.30, c=0.00.` (every aspect, two decimals).
    style "instructions": one line per aspect with a weight that rounds to at least 0.01, heaviest
    first (ties in aspect order), each the aspect's instruction followed by its weight:

        Answer in one short sentence. (weight 0.75)
        Give a detailed, thorough answer. (weight 0.25)

    style "priorities": the same lines with the weight W (two decimals) written as a word: ` (high
    priority)` for W > 0.625, ` (medium priority)` for 0.375 < W < 0.625, ` (low priority)` below;
    a line that is the only one (every other aspect rounds to 0.00) is the sentence alone:

        Answer in one short sentence. (high priority)
        Give a detailed, thorough answer. (low priority)

    (a 135M model reads words it has seen far better than digits; the bands are a quarter wide
    around the grid's quarter steps, so 0.7 and 0.8 read the same).

    style "graded": the same lines with a word per tenth of weight (`graded_tag`: very low, low, fairly
    low, medium-low, medium, medium-high, fairly high, high, very high), so every tenth reads
    differently; a line that is the only one is the sentence alone.

    `instructions` maps aspect -> sentence; missing aspects use `aspect_instruction`'s default.
    `order` (instructions and priorities styles): "weight", heaviest first as above, or "aspects", the
    lines in the order of the aspects whatever their weights, so that moving weight between two
    aspects changes only the weights written, never which sentence comes first.
    """

    style: str = "instructions"  # training's default (`LambdaDPOConfig.lambda_text`), so both render alike
    instructions: Mapping[str, str] = field(default_factory=dict)
    order: str = "weight"

    def __post_init__(self):
        if self.style not in LAMBDA_TEXT_STYLES:
            raise ValueError(f"lambda_text={self.style!r} is not one of {', '.join(LAMBDA_TEXT_STYLES)}")
        if self.order not in LAMBDA_TEXT_ORDERS:
            raise ValueError(f"lambda_text_order={self.order!r} is not one of {', '.join(LAMBDA_TEXT_ORDERS)}")

    def render(self, lam: Mapping[str, float]) -> str:
        if self.style == "weights":
            return f"{LAMBDA_HEADER} {format_lambda(lam)}."
        order = {a: i for i, a in enumerate(lam)}
        kept = [a for a in lam if round(lam[a], 2) > 0]
        if self.order == "weight":
            kept.sort(key=lambda a: (-round(lam[a], 2), order[a]))
        return "\n".join(aspect_instruction(a, self.instructions) + self._weight_suffix(lam[a], alone=len(kept) == 1)
                         for a in kept)

    def _weight_suffix(self, weight: float, alone: bool) -> str:
        if self.style == "instructions":
            return f" (weight {weight:.2f})"
        if alone:
            return ""
        return priority_tag(weight) if self.style == "priorities" else graded_tag(weight)

    def to_dict(self) -> dict:
        return {"style": self.style, "instructions": dict(self.instructions), "order": self.order}

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "LambdaText":
        # A model saved before lambda_text existed (no entry) was trained on the "weights" style, and so was
        # one whose entry names no style (the default of that time): never today's default.
        return cls(**{"style": "weights", **d}) if d else cls("weights")


def condition_prompt(prompt: Sequence[Message], lam: Mapping[str, float] | None, mode: str,
                     text: LambdaText | None = None) -> list[dict]:
    """Return the chat messages the policy sees under `lam`.

    With mode "prompt", `text` renders lambda (default: `LambdaText()`, training's default style) at
    the end of the system message; a new system message is inserted when the conversation has none
    (for chat templates with a built-in default system message, such as SmolLM2's, it replaces that
    default).
    """
    messages = [dict(m) for m in prompt]
    if mode in ("none", "embedding") or lam is None:  # embedding mode carries lambda outside the text
        return messages
    if mode != "prompt":
        raise ValueError(f"conditioning mode {mode!r} is not one of {CONDITIONING_MODES}")
    rendered = (text or LambdaText()).render(lam)
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{rendered}"
    else:
        messages.insert(0, {"role": "system", "content": rendered})
    return messages


def conditioned_prompt_ids(tokenizer, tokens, lam: Mapping[str, float] | None, mode: str,
                           text: LambdaText | None = None) -> tuple[int, ...]:
    """Prompt ids the policy sees for a TokenizedList under `lam` (the stored ids when mode is none)."""
    if mode in ("none", "embedding") or lam is None:
        return tokens.prompt_ids
    return tuple(encode_prompt(tokenizer, condition_prompt(tokens.prompt, lam, mode, text)))


class LambdaEmbedding(torch.nn.Module):
    """lambda [B, K] -> soft-prompt vectors [B, n_tokens, hidden] placed before the prompt.

    Two initialisations (`embedding_init`):

    - "header": a two-layer MLP whose output bias starts at the embeddings of real tokens (the start
      of the text header), so the untrained prefix reads like text to the model, and whose last
      weight starts small, so lambda's influence is learned rather than imposed.
    - "instructions": a linear term lambda @ V plus the MLP, where row k of V [K, n_tokens * hidden]
      starts at the token embeddings of aspect k's instruction sentence (padded) and the MLP's last
      layer starts at zero. At vertex e_k the untrained prefix is exactly that sentence's
      embeddings, a mixture blends the sentences, and training moves both V and the MLP.
    """

    def __init__(self, n_aspects: int, hidden_size: int, n_tokens: int = 4, width: int = 64,
                 init_embeds: torch.Tensor | None = None, vertices: bool = False,
                 vertex_embeds: torch.Tensor | None = None):
        super().__init__()
        self.n_aspects, self.hidden_size, self.n_tokens, self.width = n_aspects, hidden_size, n_tokens, width
        self.mlp = torch.nn.Sequential(torch.nn.Linear(n_aspects, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, n_tokens * hidden_size))
        self.vertices = None
        if vertices or vertex_embeds is not None:  # [K, n_tokens * hidden]
            self.vertices = torch.nn.Parameter(torch.zeros(n_aspects, n_tokens * hidden_size))
        with torch.no_grad():
            if vertex_embeds is not None:
                self.vertices.copy_(vertex_embeds.reshape(n_aspects, -1).float())
                self.mlp[2].weight.zero_()
                self.mlp[2].bias.zero_()
                return
            self.mlp[2].weight.normal_(0, 1e-2)
            if init_embeds is not None:
                self.mlp[2].bias.copy_(init_embeds.reshape(-1).float())
            else:
                self.mlp[2].bias.normal_(0, 2e-2)

    def forward(self, lam: torch.Tensor) -> torch.Tensor:
        lam = lam.to(self.mlp[0].weight.dtype)
        out = self.mlp(lam)
        if self.vertices is not None:
            out = out + lam @ self.vertices
        return out.view(lam.shape[0], self.n_tokens, self.hidden_size)

    def config(self) -> dict:
        return {"n_aspects": self.n_aspects, "hidden_size": self.hidden_size, "n_tokens": self.n_tokens,
                "width": self.width, "vertices": self.vertices is not None}


def embedding_length(tokenizer, n_tokens: int, instructions: Sequence[str] | None = None) -> int:
    """The soft prompt's length: `n_tokens`, or with `instructions` the longest sentence's token count when
    that is longer (what `attach_lambda_embedding` builds, known before it runs)."""
    lengths = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in instructions or ()]
    return max([n_tokens, *lengths])


def attach_lambda_embedding(model, tokenizer, n_aspects: int, n_tokens: int = 4,
                            instructions: Sequence[str] | None = None) -> LambdaEmbedding:
    """Create the map and register it on `model` (so the Trainer's optimiser trains it with the adapter).

    Without `instructions` ("header" init) the prefix starts at the header's first `n_tokens` token
    embeddings. With `instructions` (one sentence per aspect, in aspect order) vertex k starts at the
    embeddings of sentence k; the prefix is as long as the longest sentence (at least `n_tokens`),
    shorter ones padded with the embedding of a space (the pad or EOS token where a space has no token). Read the length from the returned module.
    """
    embed = unwrap_model(model).get_input_embeddings()
    if instructions is None:
        ids = tokenizer(LAMBDA_HEADER, add_special_tokens=False)["input_ids"][:n_tokens]
        ids = (ids * n_tokens)[:n_tokens]
        init = embed.weight[torch.tensor(ids)].detach()
        module = LambdaEmbedding(n_aspects, embed.weight.shape[1], n_tokens, init_embeds=init)
    else:
        if len(instructions) != n_aspects:
            raise ValueError(f"{len(instructions)} instruction sentences for {n_aspects} aspects")
        rows = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in instructions]
        n_tokens = embedding_length(tokenizer, n_tokens, instructions)
        space = tokenizer(" ", add_special_tokens=False)["input_ids"][-1:] or [
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id]
        rows = [r + space * (n_tokens - len(r)) for r in rows]
        init = embed.weight[torch.tensor(rows)].detach()  # [K, n_tokens, hidden]
        module = LambdaEmbedding(n_aspects, embed.weight.shape[1], n_tokens, vertex_embeds=init)
    module = module.to(embed.weight.device)
    model.lambda_embedding = module
    return module


def lambda_prefix(model, lam: torch.Tensor | None) -> torch.Tensor | None:
    """Soft-prompt vectors for `lam` [B, K], or None when the model has no lambda embedding."""
    module = getattr(unwrap_model(model, peft=False), "lambda_embedding", None)
    return None if module is None or lam is None else module(lam)


def save_lambda_embedding(model, out_dir: str | Path) -> None:
    module = getattr(model, "lambda_embedding", None)
    if module is not None:
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        atomic_save_file(state, Path(out_dir) / EMBEDDING_FILE, {"config": json.dumps(module.config())})


def load_lambda_embedding(model, model_dir: str | Path) -> LambdaEmbedding:
    """Attach the map saved in `model_dir` to `model` (safetensors only, never pickle)."""
    from safetensors import safe_open

    path = Path(model_dir) / EMBEDDING_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the model was trained with embedding conditioning, "
                                "so its lambda map must sit next to the adapter")
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
    module = LambdaEmbedding(**config)
    module.load_state_dict(load_file(str(path)))
    model.lambda_embedding = module.to(unwrap_model(model).get_input_embeddings().weight.device)
    return module
