"""The README shows the example agents exactly as they are in ``examples/`` (which CI runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = re.compile(r"<!-- example: (?P<path>\S+) -->\n```python\n(?P<code>.*?)\n```", re.DOTALL)


def shown_examples() -> dict[str, str]:
    return {match["path"]: match["code"] for match in EXAMPLE.finditer((REPO / "README.md").read_text())}


def test_the_readme_shows_both_example_agents() -> None:
    assert set(shown_examples()) == {"examples/count_bonus.py", "examples/next_obs_predictor.py"}


@pytest.mark.parametrize("path", sorted(shown_examples()))
def test_the_readme_shows_the_file_as_it_is(path: str) -> None:
    assert shown_examples()[path] == (REPO / path).read_text().rstrip("\n")
