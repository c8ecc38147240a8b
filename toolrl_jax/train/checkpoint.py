"""Orbax checkpoints of the train state plus JSON extras, restored straight into target shardings.

One :class:`Checkpointer` per work directory (``<workdir>/checkpoints``). Each saved step is a
directory ``<step>/`` with two orbax items:

* ``state``  — a pytree of ``jax.Array`` (params, optimizer state, scalars such as ``beta_long``,
  PRNG keys), written with ``ocp.args.StandardSave`` (tensorstore/OCDBT, every host writes its
  own shards);
* ``extras`` — one JSON object (data-iterator state, step counters, phase name ``"sft"``/``"rl"``,
  config snapshot), written with ``ocp.args.JsonSave``.

Contract
--------
``state`` is a **pure** pytree: nested dicts / lists / tuples / namedtuples (optax states are
fine) whose leaves are all ``jax.Array``. An nnx ``State`` or ``Variable`` is rejected: convert
with :func:`to_pure` before saving and back with :func:`from_pure` after restoring. Why: saved
as-is, an nnx State stores every Variable as ``{'value': array}`` — a layout owned by flax's pytree
registration of ``Variable`` and not by us — so the on-disk format would change with flax
versions, and the checkpoint could not be restored into a plain dict (or read by other tools).

PRNG keys: a typed key array (``jax.random.key``) round-trips as it is. Orbax 0.12.8 stores its
``jax.random.key_data`` (uint32) and rewraps it on restore using the key impl of the *target*
dtype, so the caller only has to put a typed key (e.g. ``jax.eval_shape`` of it, with a sharding)
in the abstract target. Raw ``uint32`` key data works the same way as any other array; the caller
then rewraps it with ``jax.random.wrap_key_data``. Either way this module does no key handling of
its own — orbax does it, and ``tests/train/test_checkpoint.py`` pins that it does.

``extras`` must be JSON-representable, with two conveniences: ``bytes`` (grain iterator states are
bytes) are stored base64-encoded under a tagged one-key dict ``{"__bytes_b64__": ...}`` and come
back as ``bytes``; numpy scalars are stored as Python numbers. Tuples come back as lists. Dict keys
must be ``str`` (JSON would silently turn ``1`` into ``"1"``). Anything else raises ``TypeError``
at :meth:`Checkpointer.save` naming the offending path — before any asynchronous work starts.

Restore
-------
:meth:`Checkpointer.restore` takes an *abstract* target whose leaves carry shardings
(``jax.ShapeDtypeStruct(shape, dtype, sharding=...)``, or live ``jax.Array``\\ s — see
:func:`abstract_of`). Every array is read directly into its target sharding: shards are read
where they live, so a checkpoint written on one mesh restores onto another (e.g. data=2,fsdp=4 →
data=8). Before reading any data the target is checked against the checkpoint's metadata — tree
paths, shapes and dtypes must match exactly (orbax itself would silently *cast* a dtype mismatch,
which hides a changed ``param_dtype``). Every failure — missing step, missing item, mismatch,
unreadable data — raises :class:`CheckpointRestoreError` with one line naming the step directory
and the problem; the original exception is chained as ``__cause__``.

Crash safety
------------
Orbax writes a step into ``<step>.orbax-checkpoint-tmp`` and renames it to ``<step>`` only when
every item is complete (on GCS, where rename is not atomic, it writes ``commit_success.txt`` last
instead). A process killed mid-save therefore leaves only a tmp directory, which
:meth:`Checkpointer.latest_step` never returns and which is deleted when the next
:class:`Checkpointer` opens the directory. As a second guard, ``latest_step`` skips a finalized
step directory that lacks one of the two items (a partial copy, a manual deletion).
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

log = logging.getLogger(__name__)

STATE_ITEM = "state"
EXTRAS_ITEM = "extras"
_ITEMS = (STATE_ITEM, EXTRAS_ITEM)
_BYTES_TAG = "__bytes_b64__"
_MAX_LISTED_PROBLEMS = 5


class CheckpointRestoreError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or does not fit the restore target."""


# --------------------------------------------------------------------------- nnx State <-> pure


def to_pure(state: nnx.State) -> dict[str, Any]:
    """nnx ``State`` → nested dict of its arrays (the form this module saves)."""
    return nnx.to_pure_dict(state)


def from_pure(template: nnx.State, pure: Mapping[str, Any]) -> nnx.State:
    """A copy of ``template`` with every Variable's value taken from ``pure``.

    ``template`` is not modified (``nnx.replace_by_pure_dict`` works in place, so it is applied to
    a copy). Raises ``ValueError`` if ``pure`` has a key the template lacks or lacks one it has —
    a partially restored model would otherwise keep stale values without a word.
    """
    n_template = len(jax.tree.leaves(template))
    n_pure = len(jax.tree.leaves(pure))
    if n_template != n_pure:
        raise ValueError(
            f"from_pure: the pure dict has {n_pure} arrays but the template State has {n_template}"
        )
    out = jax.tree.map(lambda x: x, template)  # fresh State and Variables, same arrays
    nnx.replace_by_pure_dict(out, dict(pure))
    return out


def abstract_of(tree: Any, shardings: Any = None) -> Any:
    """``jax.ShapeDtypeStruct`` pytree with shardings, for :meth:`Checkpointer.restore`.

    ``tree`` holds arrays or ``ShapeDtypeStruct``\\ s (e.g. from ``jax.eval_shape``). Shardings
    come from ``shardings`` (a pytree of ``jax.sharding.Sharding`` with the same structure) when
    given, else from each leaf's own ``.sharding``; a leaf with neither raises ``ValueError``:
    restoring without a target sharding would put the whole array on one device, which is exactly
    what sharded restore exists to avoid.
    """

    def one(path, leaf, sharding=None):
        sharding = sharding if sharding is not None else getattr(leaf, "sharding", None)
        if sharding is None:
            raise ValueError(
                f"restore target {jax.tree_util.keystr(path)} has no sharding; pass shardings= or "
                "ShapeDtypeStruct(..., sharding=...)"
            )
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    if shardings is None:
        return jax.tree_util.tree_map_with_path(one, tree)
    return jax.tree_util.tree_map_with_path(one, tree, shardings)


# --------------------------------------------------------------------------- extras <-> JSON


def _encode_json(obj: Any, path: str) -> Any:
    if isinstance(obj, bytes):
        return {_BYTES_TAG: base64.b64encode(obj).decode("ascii")}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint extras: {path} has a non-str key {k!r}; JSON needs str keys")
            if k == _BYTES_TAG:
                raise TypeError(f"checkpoint extras: {path} uses the reserved key {_BYTES_TAG!r}")
            out[k] = _encode_json(v, f"{path}.{k}")
        return out
    if isinstance(obj, list | tuple):
        return [_encode_json(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(
        f"checkpoint extras: {path} is a {type(obj).__name__}, which is not JSON-serialisable "
        "(allowed: dict with str keys, list, tuple, str, int, float, bool, None, bytes, numpy scalar)"
    )


def _decode_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and _BYTES_TAG in obj:
            return base64.b64decode(obj[_BYTES_TAG])
        return {k: _decode_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_json(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- checks


def _key_str(entry) -> str:
    # Orbax metadata turns int dict keys into "0" and namedtuples into dicts of their fields, while
    # the target keeps ints and GetAttrKeys: compare paths through one spelling.
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _path_str(path) -> str:
    return ".".join(_key_str(e) for e in path) or "<root>"


def _check_pure_state(state: Any) -> None:
    def is_nnx(x):
        return isinstance(x, nnx.State | nnx.Variable)

    for path, leaf in jax.tree_util.tree_flatten_with_path(state, is_leaf=is_nnx)[0]:
        where = _path_str(path)
        if is_nnx(leaf):
            raise TypeError(
                f"checkpoint state: {where} is an nnx {type(leaf).__name__}; save to_pure(state) "
                "and restore with from_pure(template, pure)"
            )
        if not isinstance(leaf, jax.Array):
            raise TypeError(
                f"checkpoint state: {where} is a {type(leaf).__name__}, not a jax.Array "
                "(wrap scalars with jnp.asarray; host-side values belong in extras)"
            )


def _stored_view(leaf: jax.ShapeDtypeStruct) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype as stored on disk: typed PRNG keys are stored as their uint32 key data."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype))
        return tuple(data.shape), np.dtype(data.dtype)
    return tuple(leaf.shape), np.dtype(leaf.dtype)


def _mismatches(stored_tree: Any, abstract: Any) -> list[str]:
    stored = {_path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(stored_tree)[0]}
    target = {_path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(abstract)[0]}
    problems = [f"{k} is in the target but not in the checkpoint" for k in sorted(target.keys() - stored)]
    problems += [f"{k} is in the checkpoint but not in the target" for k in sorted(stored.keys() - target)]
    for k in sorted(target.keys() & stored.keys()):
        shape, dtype = _stored_view(target[k])
        got_shape = tuple(getattr(stored[k], "shape", ()) or ())
        got_dtype = getattr(stored[k], "dtype", None)
        if got_shape != shape:
            problems.append(f"{k} has shape {got_shape} in the checkpoint but {shape} in the target")
        elif got_dtype is not None and np.dtype(got_dtype) != dtype:
            problems.append(
                f"{k} has dtype {np.dtype(got_dtype)} in the checkpoint but {dtype} in the target"
            )
    return problems


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    first = first if len(first) <= 300 else first[:297] + "..."
    return f"{type(exc).__name__}: {first}"


# --------------------------------------------------------------------------- the checkpointer


def saved_steps(directory: str | os.PathLike) -> list[int]:
    """Complete steps in a checkpoint directory, read from the file system alone (ascending).

    No orbax manager, hence no cross-process barrier: safe to call on some processes only, or
    at different times on different processes. A step counts when its directory is named by the
    bare step number (orbax renames ``<step>.orbax-checkpoint-tmp-*`` only once a save is
    finalized) and holds both items.
    """
    path = os.fspath(directory)
    root = epath.Path(path if "://" in path else os.path.abspath(path))
    if not root.is_dir():
        return []
    steps = []
    for child in root.iterdir():
        if child.name.isdigit() and all((child / item).is_dir() for item in _ITEMS):
            steps.append(int(child.name))
    return sorted(steps)


class Checkpointer:
    """Saves and restores ``(state, extras)`` pairs by step, keeping the newest ``keep``.

    Args:
      directory: where step directories go, normally ``<workdir>/checkpoints`` (created).
      keep: how many finalized steps to keep (older ones are deleted after each new save).
      save_interval_steps: :meth:`save` writes only steps divisible by this, unless ``force``.
      async_save: return from :meth:`save` once arrays are copied to host memory and write in a
        background thread (the train step may then donate the saved buffers). ``False`` blocks
        until the step is finalized on disk.

    Use as a context manager, or call :meth:`close`, so that the last save is finished before the
    process exits.
    """

    def __init__(self, directory: str | os.PathLike, keep: int, save_interval_steps: int = 1,
                 *, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"Checkpointer: keep must be >= 1, got {keep}")
        if save_interval_steps < 1:
            raise ValueError(f"Checkpointer: save_interval_steps must be >= 1, got {save_interval_steps}")
        path = os.fspath(directory)
        # Local paths are made absolute so messages name them unambiguously; URIs (gs://... on Cloud
        # TPU) go through etils.epath, as orbax's own paths do, because os.path would mangle them.
        self._directory = epath.Path(path if "://" in path else os.path.abspath(path))
        policies = ocp.checkpoint_managers
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            # An explicit policy, because orbax's default adds InitialSavePolicy, which saves the
            # first step of every run whatever the interval. Preemption saves stay on: on Cloud TPU
            # they checkpoint at the step all hosts agree on before the VM goes away.
            save_decision_policy=policies.AnySavePolicy([
                policies.FixedIntervalPolicy(save_interval_steps),
                policies.PreemptionCheckpointingPolicy(),
            ]),
            # Remove `<step>.orbax-checkpoint-tmp` left by a killed save; a later save of the same
            # step would otherwise collide with it.
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save,
            create=True,
        )
        # Handlers registered up front so metadata and restore work in a fresh process before any
        # save (orbax otherwise learns an item's handler from the first save/restore args).
        self._mgr = ocp.CheckpointManager(
            self._directory,
            options=options,
            item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(),
                           EXTRAS_ITEM: ocp.JsonCheckpointHandler()},
        )
        self._closed = False

    @property
    def directory(self) -> epath.Path:
        return self._directory

    def step_dir(self, step: int) -> epath.Path:
        # Orbax's default step name format: the bare step number, no prefix or padding.
        return self._directory / str(step)

    def _missing_items(self, step: int) -> list[str]:
        """The items missing from a step directory (empty when it is whole)."""
        return [item for item in _ITEMS if not (self.step_dir(step) / item).is_dir()]

    # ----------------------------------------------------------------------- save

    def save(self, step: int, state: Any, extras: Mapping[str, Any] | None = None, *,
             force: bool = False) -> bool:
        """Saves ``state`` and ``extras`` as ``step``; returns whether a save was started.

        Skipped (``False``) when ``step`` is not a multiple of ``save_interval_steps`` (unless
        ``force``; pass ``force=True`` on the last step of a run) or when ``step`` is already
        saved, so a final forced save after an interval save of the same step is harmless.
        Validation errors (non-array leaves, nnx objects, non-JSON extras) raise ``TypeError``
        here; write errors of an asynchronous save surface from :meth:`wait` or the next save.
        """
        self._check_open()
        _check_pure_state(state)
        encoded = _encode_json(dict(extras or {}), "extras")
        if step in self._mgr.all_steps():
            log.info("checkpoint step %d already saved in %s; not saving again", step, self._directory)
            return False
        saved = self._mgr.save(
            step,
            args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state),
                                       EXTRAS_ITEM: ocp.args.JsonSave(encoded)}),
            force=force,
        )
        return bool(saved)

    def wait(self) -> None:
        """Blocks until every started save is finalized on disk (re-raises a failed write)."""
        self._mgr.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases orbax's threads; idempotent."""
        if not self._closed:
            self._closed = True
            self._mgr.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Checkpointer for {self._directory} is closed")

    # ----------------------------------------------------------------------- steps

    def all_steps(self) -> list[int]:
        """Finalized steps on disk that hold both items, ascending (waits for pending saves)."""
        self._check_open()
        # Orbax lists a step from the moment its save starts; waiting makes "listed" mean "on disk".
        self.wait()
        steps = []
        for step in sorted(self._mgr.all_steps()):
            missing = self._missing_items(step)
            if missing:
                log.warning("checkpoint %s lacks item(s) %s; ignoring it", self.step_dir(step), missing)
                continue
            steps.append(step)
        return steps

    def latest_step(self) -> int | None:
        """The newest complete step, or ``None``; never an unfinished (tmp) or partial directory."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    # ----------------------------------------------------------------------- restore

    def restore(self, step: int | None, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """Reads ``step`` (``None``: the latest) into the shardings of ``abstract_state``.

        Returns ``(state, extras)``: ``state`` has the structure of ``abstract_state`` with every
        leaf a ``jax.Array`` carrying the target's sharding and dtype; ``extras`` is the saved
        dict (bytes decoded). Raises :class:`CheckpointRestoreError` on any problem.
        """
        self._check_open()
        abstract = abstract_of(abstract_state)  # ValueError on a leaf without a sharding
        self.wait()  # a step being written in this process is restorable only once finalized
        if step is None:
            step = self.latest_step()
            if step is None:
                raise CheckpointRestoreError(f"no complete checkpoint in {self._directory}")
        elif step not in self._mgr.all_steps():
            raise CheckpointRestoreError(
                f"checkpoint {self.step_dir(step)}: step {step} not found "
                f"(complete steps: {self.all_steps()})"
            )
        where = f"checkpoint {self.step_dir(step)} (step {step})"
        missing = self._missing_items(step)
        if missing:
            raise CheckpointRestoreError(f"{where}: item '{missing[0]}' is missing")

        try:
            stored = self._mgr.item_metadata(step)[STATE_ITEM]
            stored_tree = stored.tree
        except Exception as exc:
            raise CheckpointRestoreError(
                f"{where}: cannot read the state metadata: {_one_line(exc)}"
            ) from exc
        problems = _mismatches(stored_tree, abstract)
        if problems:
            more = len(problems) - _MAX_LISTED_PROBLEMS
            listed = "; ".join(problems[:_MAX_LISTED_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
            raise CheckpointRestoreError(f"{where} does not match the restore target: {listed}")

        try:
            restored = self._mgr.restore(
                step,
                args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract),
                                           EXTRAS_ITEM: ocp.args.JsonRestore()}),
            )
        except Exception as exc:
            raise CheckpointRestoreError(f"{where}: restore failed: {_one_line(exc)}") from exc
        extras = restored[EXTRAS_ITEM]
        if not isinstance(extras, dict):
            raise CheckpointRestoreError(f"{where}: extras is a {type(extras).__name__}, not a JSON object")
        return restored[STATE_ITEM], _decode_json(extras)
