"""`lambda-dpo playground`: a local web page (gradio) to steer a trained model by hand.

The page has one slider per aspect, a prompt box and a Generate button. The sliders' values are
normalised to the simplex (`lambdas.parse_lambda`, as `--lambda` is) and shown; the reply at that
lambda is generated with `generation.generate` (greedy) and shown beside the replies at two
reference lambdas (default: the vertices of the first two aspects). Below, the page shows what the
model reads: the lambda text (`LambdaText.render`, the model's own saved style) and the whole
prompt, decoded from `steered_prompt_ids`, chat template included.

gradio is an optional dependency (`pip install 'lambda-dpo[playground]'`), imported only by the
functions that need it. `build_playground` returns the gr.Blocks without serving it (for tests);
`launch_playground` checks the directory, loads the model and serves the page, on 127.0.0.1
unless told otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

from .conditioning import format_lambda
from .generation import SteerableModel, generate, load_steerable, steered_prompt_ids
from .lambdas import parse_lambda
from .saved_model import read_model_meta

DEFAULT_HOST = "127.0.0.1"
INSTALL_HINT = "pip install 'lambda-dpo[playground]'"


def require_gradio():
    """The gradio module; ImportError saying how to install it when it is missing."""
    try:
        import gradio
    except ImportError:
        raise ImportError(f"the playground needs gradio, which is not installed: {INSTALL_HINT}",
                          name="gradio") from None
    return gradio


def slider_lambda(aspects: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """Slider values (one per aspect, in aspect order) -> lambda on the simplex (sums to 1).

    ValueError when every value is 0 (or one is negative), as for `--lambda`.
    """
    return parse_lambda(dict(zip(aspects, map(float, values))), aspects)


def default_references(aspects: Sequence[str]) -> tuple[dict[str, float], dict[str, float]]:
    """The two ends of the first pair of aspects: the vertices of aspects[0] and aspects[1]
    (a one-aspect model: its only vertex, twice)."""
    first, second = aspects[0], aspects[min(1, len(aspects) - 1)]
    return parse_lambda({first: 1.0}, aspects), parse_lambda({second: 1.0}, aspects)


def lambda_text_shown(sm: SteerableModel, lam: Mapping[str, float]) -> str:
    """What the page shows as the lambda text: the model's own rendering, or why there is none."""
    if sm.conditioning == "prompt":
        return sm.lambda_text.render(lam)
    if sm.conditioning == "embedding":
        return "(no text: lambda reaches this model as learned soft-prompt vectors placed before the prompt)"
    return "(no text: this model was trained without lambda conditioning, so lambda changes nothing)"


def model_prompt(sm: SteerableModel, prompt: str, lam: Mapping[str, float]) -> str:
    """The prompt the model reads under `lam`, chat template and special tokens included."""
    return sm.tokenizer.decode(steered_prompt_ids(sm, prompt, lam))


def _label(name: str, lam: Mapping[str, float]) -> str:
    return f"{name}: {format_lambda({a: w for a, w in lam.items() if w > 0})}"


def build_playground(sm: SteerableModel, *, references: Sequence[Mapping[str, float]] | None = None,
                     max_new_tokens: int = 128, title: str = "lambda-dpo playground"):
    """The page as a gr.Blocks, not yet served. `references`: two lambdas over `sm.aspects`
    (default `default_references`); replies are greedy, at most `max_new_tokens` tokens."""
    gr = require_gradio()
    ref_a, ref_b = references or default_references(sm.aspects)
    start = 1.0 / len(sm.aspects)

    def describe(prompt: str, *values: float) -> tuple[str, str, str]:
        try:
            lam = slider_lambda(sm.aspects, values)
        except ValueError as err:
            return f"({err})", "", ""
        return format_lambda(lam), lambda_text_shown(sm, lam), model_prompt(sm, prompt, lam)

    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"# {title}\nAspects: {', '.join(sm.aspects)} · conditioning: `{sm.conditioning}` · "
                    f"greedy, at most {max_new_tokens} new tokens")
        with gr.Row():
            with gr.Column():
                sliders = [gr.Slider(0, 1, value=start, step=0.01, label=aspect, elem_id=f"slider-{aspect}")
                           for aspect in sm.aspects]
                shown_lambda = gr.Textbox(label="lambda (sliders normalised to sum 1)", interactive=False,
                                          elem_id="lambda")
            with gr.Column():
                prompt = gr.Textbox(label="prompt", lines=3, placeholder="Ask something", elem_id="prompt")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                status = gr.Markdown(elem_id="status")
        with gr.Row():
            chosen = gr.Textbox(label="reply at your lambda", lines=6, interactive=False, elem_id="reply")
            reply_a = gr.Textbox(label=_label("reference A", ref_a), lines=6, interactive=False, elem_id="reply-a")
            reply_b = gr.Textbox(label=_label("reference B", ref_b), lines=6, interactive=False, elem_id="reply-b")
        with gr.Row():
            text = gr.Textbox(label="lambda text (as the model reads it, at your lambda)", lines=4,
                              interactive=False, elem_id="lambda-text")
            seen = gr.Textbox(label="whole prompt the model reads", lines=4, interactive=False,
                              elem_id="model-prompt")

        inputs = [prompt, *sliders]
        gr.on([s.change for s in sliders] + [prompt.change, page.load], describe, inputs, [shown_lambda, text, seen])

        def replies(values: dict, progress=gr.Progress()):
            """Yields (reply at the sliders' lambda, reference A's, reference B's, status) as each is done."""
            if not values[prompt].strip():
                raise gr.Error("type a prompt first")
            try:
                lam = slider_lambda(sm.aspects, [values[s] for s in sliders])
            except ValueError as err:
                raise gr.Error(str(err)) from None
            began, out = time.perf_counter(), ["", "", ""]
            targets = [("your lambda", lam), ("reference A", ref_a), ("reference B", ref_b)]
            for i, (name, weights) in enumerate(targets):
                progress((i, len(targets)), desc=f"generating the reply at {name}", unit="replies")
                out[i] = generate(sm, [values[prompt]], weights, max_new_tokens=max_new_tokens)[0]
                done = i + 1 == len(targets)
                yield (*out, f"{'done' if done else 'generating'}: {i + 1}/{len(targets)} replies "
                             f"in {time.perf_counter() - began:.1f} s (lambda {format_lambda(lam)})")

        gr.on([button.click, prompt.submit], replies, set(inputs), [chosen, reply_a, reply_b, status])
    return page


def launch_playground(model_dir: str | Path, *, host: str = DEFAULT_HOST, port: int | None = None,
                      references: Sequence[str | Mapping[str, float] | None] = (None, None),
                      max_new_tokens: int = 128, trust_remote_code: bool = False, block: bool = True):
    """Serve the playground for `model_dir` at http://host:port (port None: gradio's first free one
    from 7860). `references`: two lambdas ('a=1' strings or mappings), None for the defaults.

    Raises FileNotFoundError (naming the directory and the missing lambda_dpo.json) before loading
    anything when `model_dir` is not a lambda-dpo model, ImportError when gradio is missing, and
    ValueError for a reference lambda that does not fit the model's aspects. With `block` False the
    server runs in a background thread and the served gr.Blocks is returned (`.close()` stops it).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be at least 1")
    aspects = read_model_meta(model_dir)["aspects"]
    defaults = default_references(aspects)
    refs = [parse_lambda(r, aspects) if r else d for r, d in zip(references, defaults)]
    require_gradio()
    sm = load_steerable(model_dir, trust_remote_code=trust_remote_code)
    page = build_playground(sm, references=refs, max_new_tokens=max_new_tokens,
                            title=f"lambda-dpo playground · {Path(model_dir).name}")
    page.launch(server_name=host, server_port=port, prevent_thread_lock=not block)
    return page
