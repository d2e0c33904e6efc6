"""Every command the README and the docs pages show still exists as written.

Each shell line in a code block of README.md or docs/*.md is checked without running it:
`lambda-dpo ...` parses with the real CLI parser (a renamed subcommand or flag fails), a `train`
line's config file exists and its `key=value` overrides are config fields, `accelerate launch`
lines name config files that exist and a `lambda_dpo.cli` command that parses, `python FILE`
names a file of the repository, and `make TARGET` a target of the Makefile. The commands' behaviour
is tested where each is implemented (tests/e2e/test_cli_e2e.py and the others).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO

from lambda_dpo.cli import build_parser
from lambda_dpo.training.config import LambdaDPOConfig

ROOT = REPO
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
PROGRAMS = ("lambda-dpo", "accelerate", "python", "make")


def shell_lines(page: Path) -> list[tuple[str, str]]:
    """(where, command) for each command line of the page's code blocks (continuations joined, `$ ` dropped)."""
    text = page.read_text(encoding="utf-8")
    out = []
    for block in FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        joined, start = "", None
        for i, line in enumerate(block.group(1).splitlines()):
            line = line.removeprefix("$ ")
            if start is None:
                start = first_line + i
            joined += line.rstrip("\\").strip() + " "
            if line.endswith("\\"):
                continue
            command, joined, where = joined.strip(), "", f"{page.relative_to(ROOT)}:{start}"
            start = None
            if command.split(" ", 1)[0] in PROGRAMS and "[" not in command.split("#")[0]:  # not a synopsis
                out.append((where, command))
    return out


COMMANDS = [c for page in PAGES for c in shell_lines(page)]


def test_the_pages_show_commands():
    programs = {cmd.split()[0] for _, cmd in COMMANDS}
    assert {"lambda-dpo", "make", "accelerate"} <= programs, programs
    assert any(where.startswith("README.md") for where, _ in COMMANDS)


def check_lambda_dpo(argv: list[str], where: str) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"{where}: `lambda-dpo {' '.join(argv)}` does not parse (exit {exc.code})") from None
    if argv and argv[0] == "train":
        config = ROOT / args.config if getattr(args, "config", None) else None
        if config is not None and not str(args.config).startswith(("my", "/")):
            assert config.exists(), f"{where}: {args.config} does not exist"
        fields = {f.name for f in dataclasses.fields(LambdaDPOConfig)}
        for override in getattr(args, "overrides", []) or []:
            key = override.split("=", 1)[0]
            assert key in fields, f"{where}: override {key!r} is not a config field"


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_exists_as_written(where, command):
    argv = shlex.split(command, comments=True)
    for i, arg in enumerate(argv):  # the command ends where the shell redirects or chains it
        if arg in (">", ">>", "|", ";", "&&", "||"):
            argv = argv[:i]
            break
    program, rest = argv[0], argv[1:]
    if program == "lambda-dpo":
        check_lambda_dpo(rest, where)
    elif program == "accelerate":
        if "--config_file" in rest:
            config = rest[rest.index("--config_file") + 1]
            assert (ROOT / config).exists(), f"{where}: {config} does not exist"
        assert "lambda_dpo.cli" in rest, f"{where}: an accelerate line that does not run lambda_dpo.cli"
        check_lambda_dpo(rest[rest.index("lambda_dpo.cli") + 1:], where)
    elif program == "python":
        script = next((a for a in rest if a.endswith(".py")), None)
        if script is not None:
            assert (ROOT / script).exists(), f"{where}: {script} does not exist"
    elif program == "make":
        makefile = (ROOT / "Makefile").read_text()
        for target in (a for a in rest if "=" not in a):
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{where}: no Makefile target {target!r}"
