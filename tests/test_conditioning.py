"""Conditioning: the prompt the policy sees under lambda, and the response ids that do not depend on it."""

from lambda_dpo.conditioning import LAMBDA_HEADER, condition_prompt, conditioned_prompt_ids
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
    text = tok.decode(conditioned_prompt_ids(tok, tl, lam, "prompt"))
    assert f"{LAMBDA_HEADER} helpfulness=0.70, honesty=0.30, conciseness=0.00." in text
    assert conditioned_prompt_ids(tok, tl, lam, "none") == tl.prompt_ids
    with_system = condition_prompt([{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}],
                                   lam, "prompt")
    assert with_system[0]["content"].startswith("Be nice.\n\n" + LAMBDA_HEADER) and len(with_system) == 2
