"""Where the project's own files are, for tests in any folder under tests/."""

from __future__ import annotations

from pathlib import Path

#: The repository's top folder (pyproject.toml, README.md, config.example.toml).
REPO = Path(__file__).resolve().parent.parent
