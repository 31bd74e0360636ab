"""The CLI's config flags come from TrainConfig's fields (issue 15 item 6): each field's type and metadata make
its flag, so every field has a help sentence, and ``--help`` shows each flag with that sentence and its choices."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, fields

import pytest

from sparseopt_edu.cli import build_parser
from sparseopt_edu.cli.config import field_flag
from sparseopt_edu.train import TrainConfig
from sparseopt_edu.train.config import CHOICES, HELP, option


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _flat(text: str) -> str:
    return re.sub(r"-\s+", "-", re.sub(r"\s+", " ", text))  # argparse wraps lines after a hyphen too


def test_every_field_has_help_and_its_choices_in_its_metadata():
    for f in fields(TrainConfig):
        assert f.metadata.get("help", "").strip(), f"TrainConfig.{f.name} has no help metadata"
        assert f.metadata.get("choices") == CHOICES.get(f.name), f.name  # the table validate() checks
    assert HELP == {f.name: f.metadata["help"] for f in fields(TrainConfig)}
    assert [f.name for f in fields(TrainConfig) if not f.metadata.get("flag", True)] == ["run_dir", "resume"]


@pytest.mark.parametrize("command", ["train", "compare"])
def test_help_lists_every_flag_with_its_sentence_and_choices(command):
    skipped = {"method", "sparseopt", "sparsity", "seed"} if command == "compare" else set()
    parser = _subparser(command)
    text, dests = _flat(parser.format_help()), {a.dest for a in parser._actions}
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if not f.metadata.get("flag", True) or f.name in skipped:
            assert f"cfg_{f.name}" not in dests, flag  # (train's own --resume is not the config field)
            continue
        assert f"{flag} " in text or f"{flag}," in text, flag
        assert _flat(f.metadata["help"]) in text, (flag, f.metadata["help"])
        choices = f.metadata.get("choices")
        if choices is not None:
            shown = "auto|on|off" if True in choices else "{" + ",".join(choices) + "}"
            assert f"{flag} {shown}" in text, (flag, shown)


def test_every_visible_option_of_train_compare_reproduce_has_help():
    for command in ("train", "compare", "reproduce"):
        parser = _subparser(command)
        text = _flat(parser.format_help())
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue  # hidden on purpose (the test and smoke sizes of reproduce)
            assert action.help and action.help.strip(), (command, action.option_strings or action.dest)
            if action.choices is not None:
                assert "{" + ",".join(action.choices) + "}" in text, (command, action.dest)


@dataclass
class _Toy:
    """Names no rule knows: the flags come from the types and metadata alone."""
    width: int = option(3, help="a width")
    rate: float | None = option(None, help="a rate (default: none)")
    tags: tuple = option((), help="some tags")
    kind: str = option("a", choices=("a", "b"), help="a kind")
    fast: object = option("auto", choices=("auto", True, False), help="go fast")
    on: bool = option(True, help="switched on")
    where: str = option("here", metavar="DIR", help="a folder")
    extra: dict = option(factory=dict, help="more options")


def test_flags_follow_type_and_metadata_not_names():
    from typing import get_type_hints

    hints = get_type_hints(_Toy)
    made = {f.name: field_flag(f, hints[f.name]) for f in fields(_Toy)}
    parser = argparse.ArgumentParser()
    for flag, kw in made.values():
        parser.add_argument(flag, **kw)
    assert made["width"][1]["metavar"] == "N" and "(default: 3)" in made["width"][1]["help"]
    assert made["kind"][1]["metavar"] == "{a,b}" and made["fast"][1]["metavar"] == "auto|on|off"
    assert made["where"][1]["metavar"] == "DIR" and made["on"][1]["action"] is argparse.BooleanOptionalAction
    args = parser.parse_args(["--width", "5", "--rate", "none", "--tags", "x,y", "--fast", "off", "--no-on",
                              "--extra", '{"k": 1}'])
    assert (args.cfg_width, args.cfg_rate, args.cfg_tags, args.cfg_fast, args.cfg_on, args.cfg_extra) == \
        (5, None, ("x", "y"), False, False, {"k": 1})
    assert parser.parse_args(["--rate", "0.5"]).cfg_rate == 0.5
    assert not hasattr(parser.parse_args([]), "cfg_width")  # unset: the config's own default stays


def test_a_field_without_help_or_with_an_unreadable_type_is_named():
    from dataclasses import field

    @dataclass
    class Bad:
        quiet: int = 1
        odd: list = field(default_factory=list, metadata={"help": "a list"})

    quiet, odd = fields(Bad)
    with pytest.raises(TypeError, match="'quiet' has no help text"):
        field_flag(quiet, int)
    with pytest.raises(TypeError, match="'odd': no command-line reading"):
        field_flag(odd, list)


def test_cli_modules_import_nothing_heavy_at_their_top():
    """``--help`` starts fast: torch, the trainer and the science are imported inside the command functions.
    At module level a CLI module imports the standard library, its own package, and only the light library
    modules named here (each of which imports the standard library only)."""
    import ast
    import sys
    from pathlib import Path

    import sparseopt_edu.cli as cli

    light = {"sparseopt_edu", "sparseopt_edu.doctor", "sparseopt_edu.paper"}
    for path in sorted(Path(cli.__file__).parent.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    continue  # the CLI package itself
                names = [node.module] if node.level == 0 else ["sparseopt_edu" + (f".{node.module}" if node.module
                                                                                  else "")]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__" or name in light, (path.name, name)
    for name in ("sparseopt_edu.doctor", "sparseopt_edu.paper"):
        tree = ast.parse(Path(sys.modules[name].__file__).read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "level", 0) == 0:
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert all(m.split(".")[0] in sys.stdlib_module_names or m == "__future__" for m in mods), (name, mods)
