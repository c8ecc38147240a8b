"""The run's work dir as a URI, and the local scratch dir for what needs a real path.

A work dir is a local directory (``runs/demo``) or a URI (``gs://bucket/run`` on a Cloud TPU pod,
where hosts share no disk). It is an ``etils.epath.Path`` from :func:`as_path` on, never a
``pathlib.Path``: ``Path("gs://b/x")`` is the local ``gs:/b/x``.

What goes where when the work dir is a URI (with a local work dir both are the same directory):

* **work dir** — every output: ``config.json``, ``metrics.jsonl``, ``tensorboard/``,
  ``rollouts/``, ``eval_*.json``, ``report.md`` / ``compare.md`` and ``plots/``, the HF exports
  ``sft_policy/`` / ``rl_policy/``, ``tokenizer/``, ``wandb/run_id``, and ``checkpoints/`` (orbax
  writes URIs itself, each host its own shards).
* **local scratch** (:func:`scratch_dir`) — what a library reads or appends through the local
  file system: the TFDS ``array_record`` files grain reads, the search corpus, the tokenizer
  files, the live ``metrics.jsonl`` / TensorBoard events (GCS objects cannot be appended to, so
  they grow here and are copied up), W&B's run files, an HF export being written, and a
  downloaded copy of an HF checkpoint given as a URI. Scratch is rebuilt from the work dir and
  the config, so a job restarted on fresh VMs needs nothing but the work dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from etils import epath

SCRATCH_ENV = "TOOLRL_JAX_SCRATCH"  # root of the local scratch dirs (default: the system temp dir)
_COPY_CHUNK = 16 << 20  # stream big files (safetensors) in 16 MiB pieces, never whole in memory


def is_uri(path: str | os.PathLike) -> bool:
    """``gs://…``, ``s3://…`` and the like: a path that the local file system cannot open."""
    return "://" in os.fspath(path)


def as_path(path: str | os.PathLike) -> epath.Path:
    """The work dir (or a file in it) as an ``epath.Path``: a URI stays a URI, a local path is made
    absolute so that messages and barrier names are the same whatever the current directory."""
    text = os.fspath(path)
    return epath.Path(text if is_uri(text) else os.path.abspath(text))


def scratch_dir(path: str | os.PathLike) -> Path:
    """The local directory standing in for ``path``: ``path`` itself when it is local, else
    ``$TOOLRL_JAX_SCRATCH/<scheme>/<bucket>/<key>`` (default root: ``<tmp>/toolrl_jax_scratch``).

    A pure function of ``path`` (and the root), so every process of a pod maps a work-dir URI to the
    same local path — barrier names built from it match — and ``scratch_dir(workdir / "x")`` is
    ``scratch_dir(workdir) / "x"``."""
    text = os.fspath(path)
    if not is_uri(text):
        return Path(os.path.abspath(text))
    scheme, rest = text.split("://", 1)
    root = os.environ.get(SCRATCH_ENV) or os.path.join(tempfile.gettempdir(), "toolrl_jax_scratch")
    parts = [p for p in rest.split("/") if p not in ("", ".", "..")]  # never escape the root
    return Path(root, scheme, *parts)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``path`` whole or not at all: a local file through a temp file and ``os.replace``; an
    object store (GCS) makes an object visible only once its upload is complete anyway."""
    dest = as_path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_uri(dest):
        dest.write_text(text, encoding="utf-8")
        return
    tmp = f"{dest}.{uuid.uuid4().hex}.tmp"  # unique: two processes on one host may race
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, dest)


def upload_file(local: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copies a local file to ``dest`` (local or URI), streamed, whole or not at all. Not
    ``epath.Path.copy``: its GCS backend copies within the bucket and cannot read a local file."""
    dest = as_path(dest)
    if not is_uri(dest) and os.path.abspath(local) == os.fspath(dest):
        return  # a local work dir is its own scratch
    dest.parent.mkdir(parents=True, exist_ok=True)
    target = dest if is_uri(dest) else epath.Path(f"{dest}.{uuid.uuid4().hex}.tmp")
    with open(local, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_CHUNK)
    if target != dest:
        os.replace(target, dest)


def download_file(src: str | os.PathLike, local: str | os.PathLike) -> None:
    """Copies ``src`` (local or URI) to a local file, whole or not at all (temp file + rename,
    so two processes of one host downloading the same file do not read each other's halves)."""
    local = os.fspath(local)
    if not is_uri(src) and os.path.abspath(os.fspath(src)) == os.path.abspath(local):
        return
    os.makedirs(os.path.dirname(os.path.abspath(local)), exist_ok=True)
    tmp = f"{local}.{uuid.uuid4().hex}.tmp"
    with as_path(src).open("rb") as f, open(tmp, "wb") as out:
        shutil.copyfileobj(f, out, _COPY_CHUNK)
    os.replace(tmp, local)


def _files_under(root: epath.Path) -> list[str]:
    """Paths of the files under ``root``, relative to it ('/'-separated), sorted. Walked with
    ``iterdir`` because fsspec's ``walk`` yields bucket paths without their ``gs://``."""
    out = []
    for child in root.iterdir():
        if child.is_dir():
            out += [f"{child.name}/{name}" for name in _files_under(child)]
        else:
            out.append(child.name)
    return sorted(out)


def upload_tree(local_dir: str | os.PathLike, dest_dir: str | os.PathLike) -> list[str]:
    """Copies every file under ``local_dir`` to the same relative path under ``dest_dir``; returns
    the relative paths copied. Files already at ``dest_dir`` and not in ``local_dir`` are kept."""
    names = _files_under(epath.Path(os.path.abspath(local_dir)))
    for name in names:
        upload_file(os.path.join(local_dir, name), as_path(dest_dir) / name)
    return names


def download_tree(src_dir: str | os.PathLike, local_dir: str | os.PathLike) -> list[str]:
    """Copies every file under ``src_dir`` (local or URI) to ``local_dir``; returns their relative
    paths. Raises ``FileNotFoundError`` naming ``src_dir`` when it is not a directory."""
    src = as_path(src_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a directory (or is not readable)")
    names = _files_under(src)
    for name in names:
        download_file(src / name, os.path.join(local_dir, name))
    return names


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
    """A local path holding the directory or file ``path`` (an HF checkpoint dir, a ``.gguf``)
    while the context is open: ``path`` itself when local, else a fresh copy under its scratch dir,
    deleted on exit. Fresh, not reused: a copy left by an earlier run could hold other weights of
    the same size. For libraries that read only local files (safetensors, tokenizers)."""
    if not is_uri(path):
        yield os.fspath(path)
        return
    scratch = scratch_dir(path)
    local = scratch.with_name(f"{scratch.name}.download-{uuid.uuid4().hex}")
    try:
        if as_path(path).is_file():
            download_file(path, local / scratch.name)  # keeps the name: loaders go by suffix
            yield str(local / scratch.name)
        else:
            download_tree(path, local)
            yield str(local)
    finally:
        shutil.rmtree(local, ignore_errors=True)
