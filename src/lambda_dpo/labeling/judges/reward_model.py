"""A reward model as a judge: ``AutoModelForSequenceClassification`` on the chat-formatted conversation.

Each reply is scored on the prompt's messages followed by the reply as the assistant's turn, rendered
and tokenised by the reward model's own chat template (`reward_input_ids`), in right-padded batches
of `batch_size` replies of one list; the model pools its output at the last token itself, as
transformers' sequence classifiers do. Two shapes:

- a scalar head (``num_labels: 1``): ``aspect: helpfulness``;
- one head with several outputs (ArmoRM-style): ``outputs: {0: helpfulness, 3: honesty}``, output
  index -> aspect. `output` names the attribute of the model's output that holds the scores: ``logits``
  (transformers' classifiers) or, for a model with its own code, another (ArmoRM's per-objective
  scores are ``rewards``, with ``trust_remote_code: true``).

The scores are the model's, unbounded: train on them with ``rating_scale: minmax`` or ``zscore``
(docs/data-formats.md, "Rating scales"). A conversation longer than `max_length` tokens is not cut
(the reward model would score another text): its rating is missing (``too_long``), as is a
non-finite score (``non_finite``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ...models import load_tokenizer, resolve_model_path
from ..sampling import pick_device
from .base import Judge, RateInput, Ratings

__all__ = ["RewardModelJudge", "reward_input_ids"]

log = logging.getLogger(__name__)


def reward_input_ids(tokenizer, prompt: Sequence[Mapping[str, str]], reply: str) -> list[int]:
    """The token ids a reward model scores: the conversation with the reply as the assistant's turn, rendered
    by the tokenizer's chat template."""
    conversation = [dict(m) for m in prompt] + [{"role": "assistant", "content": reply}]
    return list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=False))


@dataclass
class RewardModelJudge(Judge):
    """Settings: `model` (a directory or hub id) and either `aspect` (a one-output head) or `outputs`
    ({output index: aspect}); `output`, `batch_size`, `max_length`, `dtype`, `device`, `trust_remote_code`."""

    model: str
    aspect: str | None = None
    outputs: Mapping[int, str] | None = None
    output: str = "logits"
    batch_size: int = 8
    max_length: int = 4096
    dtype: str = "float32"
    device: str = "auto"
    trust_remote_code: bool = False
    type: str = field(default="reward_model", init=False)

    def __post_init__(self):
        where = f"reward_model judge {self.model!r}"
        if (self.aspect is None) == (self.outputs is None):
            raise ValueError(f"{where}: give either aspect: NAME (a one-output head) or outputs: {{index: aspect}} "
                             "(a head with several outputs)")
        if self.outputs is not None:
            if not isinstance(self.outputs, Mapping) or not self.outputs:
                raise ValueError(f"{where}: outputs must map output indices to aspects, e.g. {{0: helpfulness}}")
            try:
                self.outputs = {int(i): str(a) for i, a in self.outputs.items()}
            except (TypeError, ValueError):
                raise ValueError(f"{where}: outputs {self.outputs!r}: keys must be output indices (0, 1, ...)"
                                 ) from None
            if len(set(self.outputs.values())) != len(self.outputs) or min(self.outputs) < 0:
                raise ValueError(f"{where}: outputs {self.outputs!r}: one aspect per index, indices >= 0")
        if not isinstance(getattr(torch, str(self.dtype), None), torch.dtype):
            raise ValueError(f"{where}: dtype {self.dtype!r} is not a torch dtype (float32, bfloat16, float16)")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"{where}: batch_size {self.batch_size!r} must be an integer >= 1")
        self.index = {str(self.aspect): 0} if self.aspect is not None else {a: i for i, a in self.outputs.items()}
        self.aspects = tuple(self.index)
        self.net = None
        self.tokenizer = None

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "model": self.model, "outputs": {i: a for a, i in self.index.items()},
                "output": self.output, "max_length": self.max_length, "dtype": self.dtype}

    def label(self) -> str:
        return f"reward_model:{self.model}"

    def load(self) -> None:
        if self.net is not None:
            return
        from transformers import AutoModelForSequenceClassification

        self.tokenizer = load_tokenizer(self.model, trust_remote_code=self.trust_remote_code)
        self.net = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(self.model), dtype=getattr(torch, self.dtype), trust_remote_code=self.trust_remote_code,
            use_safetensors=True).to(pick_device(self.device)).eval()
        self._check_head()
        if self.net.config.pad_token_id is None:  # batches are padded: the model finds each row's last token by it
            self.net.config.pad_token_id = self.tokenizer.pad_token_id

    def _check_head(self) -> None:
        n = self.net.config.num_labels
        if self.output != "logits":
            return  # a model with its own output: its width is checked on the first batch
        if self.aspect is not None and n != 1:
            raise ValueError(f"reward_model judge {self.model!r}: the head has {n} outputs, not 1. Fix: map them, "
                             "outputs: {index: aspect}")
        if self.outputs is not None and max(self.outputs) >= n:
            raise ValueError(f"reward_model judge {self.model!r}: outputs {self.outputs} name index {max(self.outputs)}"
                             f", but the head has {n} outputs (0..{n - 1})")

    def close(self) -> None:
        self.net = None

    def rate(self, lists: Sequence[RateInput], need: Sequence[Mapping[str, Sequence[int]]]) -> list[Ratings]:
        self.load()
        return [self._rate_one(item, wanted) for item, wanted in zip(lists, need)]

    def _rate_one(self, item: RateInput, wanted: Mapping[str, Sequence[int]]) -> Ratings:
        out = Ratings.empty(self.aspects, len(item.responses))
        replies = sorted({i for a in self.aspects for i in wanted.get(a, ())})
        ids = {i: reward_input_ids(self.tokenizer, item.prompt, item.responses[i]) for i in replies}
        fits = [i for i in replies if len(ids[i]) <= self.max_length]
        for i in replies:
            if i not in fits:
                for a in self.aspects:
                    if i in wanted.get(a, ()):
                        out.missing(a, i, "too_long")
        for start in range(0, len(fits), self.batch_size):
            batch = fits[start:start + self.batch_size]
            scores = self.score([ids[i] for i in batch])
            for i, row in zip(batch, scores):
                for a, k in self.index.items():
                    if i in wanted.get(a, ()):
                        value = float(row[k])
                        if value != value or value in (float("inf"), float("-inf")):
                            out.missing(a, i, "non_finite")
                        else:
                            out.values[a][i] = value
        return out

    @torch.no_grad()
    def score(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """The model's scores of token-id rows, one right-padded batch: [len(rows), outputs], float32 on the CPU."""
        self.load()
        device = next(self.net.parameters()).device
        pad = self.net.config.pad_token_id
        width = max(map(len, rows))
        input_ids = torch.tensor([list(r) + [pad] * (width - len(r)) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        result = getattr(self.net(input_ids=input_ids, attention_mask=mask), self.output, None)
        if result is None:
            raise ValueError(f"reward_model judge {self.model!r}: the model's output has no {self.output!r}. Fix: "
                             "set output: to the attribute that holds the scores (logits for transformers' "
                             "sequence classifiers)")
        result = result.float().reshape(len(rows), -1).cpu()
        if max(self.index.values()) >= result.shape[1]:
            raise ValueError(f"reward_model judge {self.model!r}: {self.output} has {result.shape[1]} outputs; "
                             f"outputs {dict((i, a) for a, i in self.index.items())} name more")
        return result
