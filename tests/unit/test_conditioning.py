"""Conditioning: the prompt the policy sees under lambda, and the response ids that do not depend on it."""

from lambda_dpo.conditioning import LAMBDA_HEADER, LambdaText, condition_prompt, conditioned_prompt_ids
from lambda_dpo.tokenization import tokenize_list


def test_response_ids_do_not_depend_on_conditioning(tok, lists):
    """The policy's conditioned prompt + the stored response ids equal templating the whole thing."""
    tl = tokenize_list(tok, lists[1], 256, 64)
    lam = {"helpfulness": 0.2, "honesty": 0.8, "conciseness": 0.0}
    cond = condition_prompt(tl.prompt, lam, "prompt")
    full = tok.apply_chat_template([*cond, {"role": "assistant", "content": lists[1].responses[0]}],
                                   tokenize=True, return_dict=False)
    assert list(conditioned_prompt_ids(tok, tl, lam, "prompt")) + list(tl.response_ids[0]) == list(full)


def test_conditioning_text_and_modes(tok, lists):
    tl = tokenize_list(tok, lists[0], 256, 64)
    lam = {"helpfulness": 0.7, "honesty": 0.3, "conciseness": 0.0}
    weights = LambdaText("weights")
    text = tok.decode(conditioned_prompt_ids(tok, tl, lam, "prompt", weights))
    assert f"{LAMBDA_HEADER} helpfulness=0.70, honesty=0.30, conciseness=0.00." in text
    assert conditioned_prompt_ids(tok, tl, lam, "none") == tl.prompt_ids
    with_system = condition_prompt([{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}],
                                   lam, "prompt", weights)
    assert with_system[0]["content"].startswith("Be nice.\n\n" + LAMBDA_HEADER) and len(with_system) == 2


def test_lambda_text_defaults_to_what_training_renders():
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.prepare import lambda_text

    trained = lambda_text(load_config(None))
    assert LambdaText() == trained
    lam = {"conciseness": 0.25, "informativeness": 0.75, "honesty": 0.0}
    assert LambdaText().render(lam) == trained.render(lam)
    prompt = [{"role": "user", "content": "hi"}]
    assert condition_prompt(prompt, lam, "prompt") == condition_prompt(prompt, lam, "prompt", trained)
    assert condition_prompt(prompt, lam, "prompt")[0] == {
        "role": "system", "content": "Give a detailed, thorough answer. (weight 0.75)\n"
                                     "Answer in one short sentence. (weight 0.25)"}


def test_a_model_saved_before_lambda_text_existed_still_reads_as_weights():
    assert LambdaText.from_dict(None) == LambdaText("weights") == LambdaText.from_dict({})
    assert LambdaText.from_dict({"instructions": {}}).style == "weights"  # an entry naming no style
    assert LambdaText.from_dict(None).render({"a": 1.0}).startswith(LAMBDA_HEADER)
    assert LambdaText.from_dict(LambdaText().to_dict()) == LambdaText()
