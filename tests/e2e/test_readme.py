"""The README cannot rot: every command it shows is a real make target or a roost command that parses."""

from __future__ import annotations

import re
import shlex

import pytest

from roost import cli
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
MAKEFILE = (REPO / "Makefile").read_text()


def _commands() -> list[str]:
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", README, re.DOTALL)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def test_readme_names_the_two_fresh_machine_commands() -> None:
    commands = _commands()
    assert "make demo" in commands
    assert "make test" in commands


@pytest.mark.parametrize("command", _commands())
def test_readme_command_exists(command: str) -> None:
    inner = re.fullmatch(r'eval "\$\((.*)\)"', command)
    words = shlex.split(inner.group(1) if inner else command)
    if words[0] == "make":
        for target in words[1:]:
            assert re.search(rf"^{re.escape(target)}:", MAKEFILE, re.MULTILINE), f"no make target {target}"
    elif words[0].endswith("roost"):
        cli.build_parser().parse_args(words[1:])
    elif words[0] in ("kubectl", "curl", "export"):
        pass
    else:
        pytest.fail(f"README command {command!r} is not checked by this test; add a rule")
