"""The real tools the deployment tests run, pinned and cached outside the repo.

`python -m tests.tools install` (run by `make test`) builds helm from the Go module proxy
and downloads the modules that carry the schemas we validate against: the Prometheus
Operator's and KEDA's CRDs, and the Compose specification. Tests only read the cache
(`GOPROXY=off`): nothing is fetched while they run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HELM = "helm.sh/helm/v3/cmd/helm@v3.16.3"
MODULES = {
    "prometheus-operator": "github.com/prometheus-operator/prometheus-operator@v0.78.2",
    "keda": "github.com/kedacore/keda/v2@v2.16.0",
    "compose-spec": "github.com/compose-spec/compose-go/v2@v2.4.5",
}
CACHE = Path(
    os.environ.get("M2E_TOOLS_DIR", Path.home() / ".cache" / "m2e-sync" / "tools")
).expanduser()


class ToolMissing(Exception):
    pass


def _go() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise ToolMissing("Go is needed to build helm and fetch schemas (https://go.dev/dl/)")
    return go


def _env(offline: bool) -> dict[str, str]:
    env = dict(os.environ, GOBIN=str(CACHE / "bin"), GOFLAGS="-modcacherw")
    if offline:
        env["GOPROXY"] = "off"
    return env


def helm() -> Path:
    path = CACHE / "bin" / "helm"
    stamp = CACHE / "bin" / "helm.version"
    if not path.exists() or not stamp.exists() or stamp.read_text() != HELM:
        raise ToolMissing(
            f"{HELM} is not built; run `make test` or `python -m tests.tools install`"
        )
    return path


def module_dir(name: str, *, offline: bool = True) -> Path:
    """Where the Go module cache holds MODULES[name]; with offline, never downloads."""
    done = subprocess.run(
        [_go(), "mod", "download", "-json", MODULES[name]],
        capture_output=True,
        text=True,
        env=_env(offline),
        cwd=CACHE if CACHE.exists() else None,
        check=False,
    )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in info:
        raise ToolMissing(f"{MODULES[name]}: {info.get('Error') or done.stderr.strip()}")
    return Path(info["Dir"])


def install() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        helm()
    except ToolMissing:
        print(f"tools: building {HELM} (once; cached in {CACHE})", flush=True)
        subprocess.run([_go(), "install", HELM], env=_env(False), cwd=CACHE, check=True)
        (CACHE / "bin" / "helm.version").write_text(HELM)
    for name in MODULES:
        module_dir(name, offline=False)


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tests.tools install")
    try:
        install()
    except (ToolMissing, subprocess.CalledProcessError) as exc:
        sys.exit(f"tools: {exc}")
