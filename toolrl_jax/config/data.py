"""Data section of the config: which task source, how it is split, built and loaded.

Owned by toolrl_jax/data/. Every data knob is declared here once, with its default and the reason
for it. Paths left empty are resolved by the caller against the run's work directory.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from toolrl_jax.config.core import require

KNOWN_TASKS = ("arithmetic", "lookup", "function_call")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Task data for SFT warm-up, RL prompts and held-out evaluation."""

    # --- source -------------------------------------------------------------------------------
    # synthetic: generated tool tasks (arithmetic + multi-hop lookup) — the embedded demo needs
    # no files. gsm8k: GSM8K JSONL with its <<a*b=c>> calculator traces. jsonl: the user's file.
    source: Literal["synthetic", "gsm8k", "jsonl"] = "synthetic"
    jsonl_path: str = ""  # required when source == "jsonl"
    gsm8k_path: str = ""  # empty: the 200-row GSM8K test subset shipped in data/assets/gsm8k/
    # Where TFDS writes array_record files. Empty: the caller passes <workdir>/tfds, so nothing
    # lands in ~/tensorflow_datasets by accident.
    data_dir: str = ""
    # A malformed JSONL row either stops the build with file:line (default: silent data loss is
    # worse than a crash) or is skipped and counted in the dataset's metadata.
    on_bad_row: Literal["raise", "skip"] = "raise"

    # --- train / held-out split ---------------------------------------------------------------
    # Items are assigned to held-out by a hash of (split_seed, item key), independent of the
    # sampling seed, so train and held-out never share an item whatever seeds generate them.
    split_seed: int = 0
    heldout_fraction: float = 0.2
    # Share of the train split kept out of the SFT warm-up and read only as RL prompts (by a
    # hash of the item's subject or question, data/splits.py:stage_key). 0: both stages read
    # every train item — and RL then samples questions whose answers the warm-up taught, which
    # a from-scratch model memorises (on the lookup family, rollout accuracy 0.9–1.0 with no
    # search; docs/methods.md).
    rl_only_fraction: float = 0.0

    # --- synthetic tasks ----------------------------------------------------------------------
    # function_call: items with their own tools (data/function_calling.py; needs hermes calls).
    tasks: tuple[str, ...] = ("arithmetic", "lookup")
    num_train: int = 2000  # items in the train split, spread evenly over `tasks`
    num_heldout: int = 200
    # Half easy / half hard: a model that always calls a tool and one that never does both leave
    # accuracy or efficiency on the table, which is the gap RL is meant to close.
    hard_fraction: float = 0.5
    # Sampling seed of the synthetic items (train uses seed, held-out seed + 1) and key of the
    # `random` SFT labelling coin (per item id, so a resumed run labels items the same way).
    seed: int = 0
    world_seed: int = 0  # the lookup world (entities + passages); shared by train and held-out
    num_countries: int = 6
    num_cities: int = 18
    num_famous: int = 8  # people asked about often enough to be memorised (easy, one hop)
    num_rare: int = 400  # people asked about once or never (hard, two hops over the corpus)
    arithmetic_tool: Literal["calculator", "python"] = "calculator"  # tool of long-mode traces

    # --- SFT warm-up (AutoTool) ---------------------------------------------------------------
    # random with p_long=0.5 ignores difficulty on purpose: the warm-up teaches both formats but
    # not *when* to use which, leaving RL room to improve accuracy and efficiency.
    # labels: each item's mode from the model's own no-think pass@k (``mode=label`` writes the
    # file; data/labels.py), read from labels_path — which also restricts the warm-up to the
    # labelled items refinement kept for it, and the RL prompts to those kept for RL.
    sft_policy: Literal["always_long", "always_short", "by_difficulty", "random",
                        "labels"] = "random"
    sft_p_long: float = 0.5
    labels_path: str = ""  # labels JSONL (local or URI); set iff sft_policy == "labels"
    sft_max_len: int = 512  # prompt + completion tokens; longer examples are dropped, not cut

    # --- tokenizer ----------------------------------------------------------------------------
    tokenizer: str = ""  # HF tokenizer dir or .gguf file; empty: train the demo BPE in the work dir
    demo_vocab_size: int = 1024  # total demo vocabulary, added tag tokens included

    # --- loading ------------------------------------------------------------------------------
    shuffle: bool = True
    num_epochs: int = 0  # train loader epochs; 0 repeats forever (the step count ends training)
    worker_count: int = 0  # grain worker processes; 0 reads in the main process (CPU tests)

    def validate(self, path: str) -> None:
        require(
            self.source != "jsonl" or bool(self.jsonl_path),
            f"{path}.jsonl_path must be set when {path}.source='jsonl'",
        )
        require(
            0.0 < self.heldout_fraction < 1.0,
            f"{path}.heldout_fraction={self.heldout_fraction} must be in (0, 1)",
        )
        require(0.0 <= self.rl_only_fraction < 1.0,
                f"{path}.rl_only_fraction={self.rl_only_fraction} must be in [0, 1)")
        require(len(self.tasks) > 0, f"{path}.tasks must name at least one task")
        for task in self.tasks:
            require(
                task in KNOWN_TASKS,
                f"{path}.tasks contains unknown task {task!r}; known: {list(KNOWN_TASKS)}",
            )
        require(len(set(self.tasks)) == len(self.tasks), f"{path}.tasks has duplicates")
        require(self.num_train >= 0, f"{path}.num_train={self.num_train} must be >= 0")
        require(self.num_heldout >= 0, f"{path}.num_heldout={self.num_heldout} must be >= 0")
        require(
            0.0 <= self.hard_fraction <= 1.0,
            f"{path}.hard_fraction={self.hard_fraction} must be in [0, 1]",
        )
        require(self.num_countries >= 1, f"{path}.num_countries must be >= 1")
        require(
            self.num_cities >= self.num_countries,
            f"{path}.num_cities={self.num_cities} must be >= {path}.num_countries="
            f"{self.num_countries} (every country holds a city)",
        )
        require(self.num_famous >= 1, f"{path}.num_famous must be >= 1")
        require(self.num_rare >= 1, f"{path}.num_rare must be >= 1")
        require(0.0 <= self.sft_p_long <= 1.0, f"{path}.sft_p_long must be in [0, 1]")
        require((self.sft_policy == "labels") == bool(self.labels_path),
                f"{path}.sft_policy='labels' and {path}.labels_path go together (got "
                f"sft_policy={self.sft_policy!r}, labels_path={self.labels_path!r}); write the "
                "file with --config.mode=label")
        require(self.sft_max_len > 0, f"{path}.sft_max_len must be > 0")
        require(
            320 <= self.demo_vocab_size <= 65536,
            f"{path}.demo_vocab_size={self.demo_vocab_size} must be in [320, 65536] "
            "(256 bytes + 15 tags, plus room for merges)",
        )
        require(self.num_epochs >= 0, f"{path}.num_epochs must be >= 0 (0 = forever)")
        require(self.worker_count >= 0, f"{path}.worker_count must be >= 0")
