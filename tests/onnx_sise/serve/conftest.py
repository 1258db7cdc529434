"""One served Lite0 per configuration, shared by the tests that use it (tests/served.py
starts it; SIGTERM, the graceful shutdown, stops it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("kserve")
from served import DEFAULT_FLAGS, Server, start_server  # noqa: E402


@pytest.fixture(scope="package")
def server(lite0_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default configuration (DEFAULT_FLAGS), shared by every serve test module."""
    running = start_server(lite0_path, tmp_path_factory.mktemp("serve") / "server.log", *DEFAULT_FLAGS)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def coffee(photos: Path) -> Path:
    return photos / "coffee.png"


