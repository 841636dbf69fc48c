"""Build the worker image with podman, here where no registry and no Docker engine are.

    image = build_image()        # localhost/m2e-sync:dev, on a local Debian base
    podman("run", "--rm", image, "--help")

Podman runs with runc, the cgroupfs manager and no default ulimits (a `containers.conf`
passed through CONTAINERS_CONF), which is what works on this kind of machine. The base
image is Debian bookworm's python3 (3.11) from Debian's packages, made with mmdebstrap
and `podman import`, and cached by the package list it holds; podman keeps the build's
layers, so a later build redoes only what changed. When the host trusts a CA of its own
(a TLS-inspecting proxy in front of PyPI), its bundle is mounted into the build for pip.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from m2e_devtools.stack import REPO_ROOT, StackError, ensure_debian_package

BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"""


def cache_dir() -> Path:
    return Path(os.environ.get("M2E_STACK_CACHE_DIR", Path.home() / ".cache" / "m2e-sync"))


def engine_env() -> dict[str, str]:
    conf = cache_dir() / "podman" / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


@functools.cache
def ensure_engine() -> str:
    """podman's path, installing podman, runc and mmdebstrap from Debian when missing
    (StackError saying why when they cannot be installed)."""
    for binary, package in (("podman", "podman"), ("runc", "runc"), ("mmdebstrap", "mmdebstrap")):
        ensure_debian_package(binary, package)
    found = shutil.which("podman")
    if found is None:
        raise StackError("podman is not on PATH")
    return found


def podman(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [ensure_engine(), *args],
        capture_output=True,
        text=True,
        env=engine_env(),
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise StackError(f"podman {args[0]} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return done


def base_image() -> str:
    """The Debian base, built once per package list."""
    tag = hashlib.sha256(" ".join(BASE_PACKAGES).encode()).hexdigest()[:10]
    name = f"localhost/m2e-sync-base:bookworm-{tag}"
    if podman("image", "exists", name, check=False).returncode == 0:
        return name
    strap = subprocess.Popen(
        [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            "bookworm",
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    imported = subprocess.run(
        [ensure_engine(), "import", "-", name],
        stdin=strap.stdout,
        capture_output=True,
        text=True,
        env=engine_env(),
        check=False,
    )
    assert strap.stdout is not None and strap.stderr is not None
    strap.stdout.close()
    errors = strap.stderr.read().decode(errors="replace")
    if strap.wait() != 0 or imported.returncode != 0:
        raise StackError(f"the base image could not be built: {errors[-1500:]}{imported.stderr}")
    return name


def build_image(tag: str = "localhost/m2e-sync:dev", target: str = "workers") -> str:
    """Build the Dockerfile's `target` on the local base; returns the tag."""
    args = ["build", "--network", "host", "--target", target, "-t", tag]
    args += ["--build-arg", f"BASE_IMAGE={base_image()}"]
    if HOST_CA.exists():
        args += ["-v", f"{HOST_CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    podman(*args, str(REPO_ROOT), timeout=1200)
    return tag


def image_size(tag: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def wait_gone(name: str, timeout_s: float) -> int:
    """Wait for a container to exit; its exit code."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
        status, code = state.stdout.split()
        if status in ("exited", "stopped"):
            return int(code)
        time.sleep(0.2)
    raise StackError(f"container {name} did not exit within {timeout_s}s")


def main() -> int:
    """`make image`: build the worker image on the local base and say what it weighs."""
    started = time.monotonic()
    tag = build_image()
    print(f"built {tag}: {image_size(tag) / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
