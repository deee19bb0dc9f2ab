"""Static rules for the container images (no container engine runs where the tests run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

IMAGES = sorted((Path(__file__).parent.parent / "images").glob("*/Dockerfile"))


def test_every_process_kind_has_an_image():
    assert {p.parent.name for p in IMAGES} >= {"hub", "api", "workspace-cpu", "workspace-gpu"}


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.parent.name)
def test_image_is_pinned_unprivileged_and_uses_the_lock(dockerfile):
    text = dockerfile.read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases
    # the final stage drops root
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER 1000$", final, re.M), f"{dockerfile}: the final stage must run as uid 1000"
    # every pip install of the product uses the pinned constraints
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs and all("-c " in line for line in installs), installs
