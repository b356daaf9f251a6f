"""The Dockerfile, read (the development machines have no Docker engine to build it)."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
RUNTIME = DOCKERFILE.rsplit("\nFROM ", 1)[1]


def test_the_image_installs_the_locked_dependencies_with_the_makefiles_uv() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    pinned = re.search(r"^UV_VERSION := (\S+)$", makefile, re.M)
    assert pinned is not None
    assert f"uv=={pinned.group(1)}" in DOCKERFILE
    syncs = re.findall(r"uv sync [^\n&]*", DOCKERFILE)
    assert syncs and all("--frozen" in sync and "--no-dev" in sync for sync in syncs)


def test_the_node_runs_unprivileged_and_cannot_rewrite_its_code() -> None:
    """Owning /app would let a compromised node change the code it runs at the next start."""
    assert re.search(r"^USER epix$", RUNTIME, re.M)
    assert "--chown" not in RUNTIME and "chown -R" not in RUNTIME


def test_the_data_volume_is_owner_only_and_watched() -> None:
    assert "install -d -m 0700 -o epix -g epix /data" in RUNTIME
    assert 'VOLUME ["/data"]' in RUNTIME and "EPIX_DATA_DIR=/data" in RUNTIME
    assert "HEALTHCHECK" in RUNTIME and "/healthz" in RUNTIME


def test_the_build_stage_compiles_the_box_mapping_and_the_image_carries_no_compiler() -> None:
    """``uv sync`` builds epix/permits/mapping.pyx through setup.py with gcc, in the build stage."""
    build = DOCKERFILE.rsplit("\nFROM ", 1)[0]
    last_sync = build.rindex("uv sync")
    assert "gcc" in build and "gcc" not in RUNTIME
    assert build.index("COPY setup.py") < last_sync and build.index("COPY epix") < last_sync
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert "epix/**/*.so" in ignored  # the image builds its own, never the host's
