"""Settings classes and the example configuration of the local stack."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from config.settings import LocalStackConfig


def load_local_config(path: Path | None = None) -> LocalStackConfig:
    """The given TOML file, or the example `config/local.toml` shipped with Tocsin."""
    text = path.read_text() if path else resources.files("config").joinpath("local.toml").read_text()
    return LocalStackConfig.model_validate(tomllib.loads(text))
