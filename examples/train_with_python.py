"""lambda-DPO from Python, the way TRL's DPOTrainer is called.

    python examples/train_with_python.py                    # SmolLM2-135M, the tiny example file
    python examples/train_with_python.py --model DIR --steps 2 --out runs/python-example

Any `datasets.Dataset` in a supported layout works: native listwise, UltraFeedback, HelpSteer2
rows, or TRL's pairwise prompt/chosen/rejected.
"""

import argparse

from datasets import load_dataset

from lambda_dpo.generation import generate, load_steerable
from lambda_dpo.models import load_model, load_tokenizer
from lambda_dpo.training import LambdaDPOConfig, LambdaDPOTrainer

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="smollm2-135m-instruct")
parser.add_argument("--data", default="examples/tiny_listwise.jsonl")
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--out", default="runs/python-example")
cli = parser.parse_args()

dataset = load_dataset("json", data_files=cli.data, split="train")
model, tokenizer = load_model(cli.model), load_tokenizer(cli.model)
args = LambdaDPOConfig(output_dir=cli.out, max_steps=cli.steps, aspects=["helpfulness", "conciseness"],
                       aspect_instructions={"conciseness": "Answer in one short sentence."}, logging_steps=1)
trainer = LambdaDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
trainer.train()
trainer.save_model(cli.out)  # a lambda-dpo model directory: generate, export and the model card read it

steerable = load_steerable(cli.out)
for lam in ("helpfulness=1", "conciseness=1"):
    print(lam, "->", generate(steerable, ["How do vaccines work?"], lam, max_new_tokens=40)[0])
