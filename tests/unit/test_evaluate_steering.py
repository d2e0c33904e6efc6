"""`lambda-dpo evaluate --front`: the steering protocol on a saved model, the user's prompts and judge."""

import json

import pytest

from lambda_dpo.cli import main
from lambda_dpo.evaluate_steering import evaluate_front, load_judge, read_prompts
from lambda_dpo.evaluation.judges import LengthJudge
from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

DATA = "examples/tiny_listwise.jsonl"
PAIR = ("conciseness", "helpfulness")  # two aspects the tiny file rates


class PairJudge(LengthJudge):
    """The length judge reporting under the tiny file's aspect names (a class: --judge instantiates it)."""

    def __init__(self):
        super().__init__(conciseness=PAIR[0], informativeness=PAIR[1])


@pytest.fixture(scope="module")
def saved(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("front") / "m"
    train(load_config(None, train_file=DATA, eval_fraction=0, model_name_or_path=tiny_llama_dir, output_dir=str(out),
                      max_steps=1, reference_cache_dir=None, model_dtype="float32"))
    return out


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": q, "id": i}) for i, q in enumerate(["Why is the sea salty?",
                                                                                         "What is a verb?"])) + "\n")
    return path


def test_front_of_a_saved_model_and_its_base_control(saved, prompts):
    result = evaluate_front(saved, prompts, PAIR, judge=f"{__name__}:PairJudge", weights=(0.0, 0.1, 0.5, 1.0), max_new_tokens=6)
    assert list(result["models"]) == ["model", "base + same text"]
    model = result["models"]["model"]
    assert model["sweep"]["weights"] == [0.0, 0.1, 0.5, 1.0] and len(model["sweep"]["replies"][0]) == 2
    assert [u["w"] for u in model["unseen"]] == [0.1]  # the default grid of quarters never draws 0.1
    assert result["models"]["base + same text"]["unseen"] == []
    for r in result["models"].values():
        assert r["steerability"]["hypervolume"] >= 0 and len(r["steerability"]["front"]) == 4


def test_mixed_decoding_sweeps_model_and_controls_alike(saved, prompts):
    """decoding="mixed": every model generates with generate_mixed, so the model's replies are generate_mixed's
    and the ends of the edge (vertices) are the prompt decoding's."""
    from lambda_dpo.generation import generate_mixed, load_steerable
    from lambda_dpo.evaluation.protocol import edge_lambda

    weights = (0.0, 0.3, 1.0)
    kw = dict(judge=f"{__name__}:PairJudge", weights=weights, max_new_tokens=6)
    mixed, plain = (evaluate_front(saved, prompts, PAIR, decoding=d, **kw) for d in ("mixed", "prompt"))
    assert mixed["decoding"] == "mixed" and list(mixed["models"]) == ["model", "base + same text"]
    sm, questions = load_steerable(saved), [r["prompt"] for r in read_prompts(prompts)]
    lam = edge_lambda(sm.aspects, PAIR, 0.3)
    assert mixed["models"]["model"]["sweep"]["replies"][1] == generate_mixed(sm, questions, lam, max_new_tokens=6)
    for name in mixed["models"]:  # replies [W][P]: at the two vertices both decodings agree
        ends = [r["sweep"]["replies"][i] for r in (mixed["models"][name], plain["models"][name]) for i in (0, 2)]
        assert ends[:2] == ends[2:], name
    with pytest.raises(ValueError, match="decoding 'sampled' is not one of"):
        evaluate_front(saved, prompts, PAIR, decoding="sampled", **kw)


def test_cli_front_prints_every_model(saved, prompts, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(saved), str(prompts), "--front", ",".join(PAIR), "--judge", f"{__name__}:PairJudge", "--weights", "0,1", "--max-new-tokens", "4", "--control", "base",
                 "--control", str(saved)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"edge {PAIR[0]} -> {PAIR[1]}")
    assert "\nmodel: hypervolume" in out and "\nbase + same text: hypervolume" in out
    assert f"\n{saved} + same text: hypervolume" in out
    assert main(["evaluate", str(saved), str(prompts), "--front", ",".join(PAIR), "--judge", f"{__name__}:PairJudge",
                 "--weights", "0,0.5", "--max-new-tokens", "4", "--decoding", "mixed"]) == 0
    assert capsys.readouterr().out.split("\n", 1)[0].endswith("; mixed decoding")
    with pytest.raises(SystemExit, match="--decoding applies to --front only"):
        main(["evaluate", str(saved), DATA, "--decoding", "mixed"])


def test_judge_and_prompt_errors_say_what_to_do(tmp_path):
    assert isinstance(load_judge("length"), LengthJudge)
    with pytest.raises(ValueError, match="--judge: function 'nonsense' is not 'module:name'.*or give 'length'"):
        load_judge("nonsense")
    with pytest.raises(ValueError, match="--judge: cannot import 'nope' from 'lambda_dpo.evaluation.judges'"):
        load_judge("lambda_dpo.evaluation.judges:nope")
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\n\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match=rf"{bad}:3: a record needs a \"prompt\""):
        read_prompts(bad)
    bad.write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match=rf"{bad}:2: not JSON"):
        read_prompts(bad)


def test_demo_records_are_judged_through_their_spec():
    from lambda_dpo.demo.dataset import demo_data_dir
    from lambda_dpo.demo.dataset.judges import judge_all, judge_record

    record = json.loads((demo_data_dir() / "eval.jsonl").read_text().splitlines()[0])
    assert judge_record(record, "Some reply.") == judge_all(record["spec"], "Some reply.")
    with pytest.raises(ValueError, match="needs a demo record"):
        judge_record({"prompt": "x"}, "y")
