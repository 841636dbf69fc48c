"""A Kubernetes Secret volume on disk, as the kubelet writes it: the files are links into
`..data`, itself a link to a timestamped directory, and an update swaps `..data` at once.
For the tests of live credential reloads (shared.reload)."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

_versions = itertools.count(1)


class SecretVolume:
    def __init__(self, root: Path, name: str = "credentials.yaml") -> None:
        self.root, self.name = root, name
        root.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self.root / self.name

    def write_text(self, text: str) -> None:
        """A new version of the volume: a new directory, `..data` swapped to it atomically."""
        version = self.root / f"..2026_12_02_{next(_versions):06d}"
        version.mkdir()
        (version / self.name).write_text(text)
        data, staged = self.root / "..data", self.root / "..data_tmp"
        old = data.resolve() if data.is_symlink() else None
        os.symlink(version.name, staged)
        os.replace(staged, data)  # what the kubelet does: rename over the old link
        if not self.path.is_symlink():
            os.symlink(f"..data/{self.name}", self.path)
        if old is not None:
            shutil.rmtree(old)

    def write(self, tokens: Mapping[str, str]) -> None:
        self.write_text("".join(f"{k}: {v}\n" for k, v in tokens.items()))
