"""Config sections for the model, the device mesh, the optimiser, rollout and training loops."""

from __future__ import annotations

import dataclasses
from typing import Literal

from toolrl_jax.config.core import require


@dataclasses.dataclass(frozen=True)
class RopeScalingConfig:
    """RoPE frequency scaling. ``type='llama3'`` is Llama-3.1's piecewise wavelength rescaling."""

    type: Literal["none", "llama3"] = "none"
    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192

    def validate(self, path: str) -> None:
        if self.type == "llama3":
            require(self.factor > 0, f"{path}.factor={self.factor} must be > 0")
            require(
                self.high_freq_factor > self.low_freq_factor,
                f"{path}.high_freq_factor must exceed {path}.low_freq_factor",
            )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder-only Qwen2/Llama-family architecture (field names follow HF's config.json)."""

    architecture: Literal["qwen2", "llama"] = "qwen2"
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 0  # 0: hidden_size // num_heads
    rope_theta: float = 10000.0
    rope_scaling: RopeScalingConfig = RopeScalingConfig()
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = False
    qkv_bias: bool = True  # Qwen2 has q/k/v biases; Llama has none
    max_position: int = 2048
    # "float64" (both need jax_enable_x64; the model refuses to build without it) is for
    # precision checks against float64 references, e.g. tests/models/test_gguf.py.
    param_dtype: Literal["float32", "bfloat16", "float64"] = "float32"
    dtype: Literal["float32", "bfloat16", "float64"] = "float32"  # activation / compute dtype
    init_from: str = ""  # HF checkpoint dir or .gguf file to load; empty = random init
    # Full-forward attention kernel (models/layers.py:causal_attention). "auto": cuDNN flash
    # attention on GPU when dtype/shapes allow, Pallas splash attention on TPU when shapes allow,
    # else XLA's jax.nn.dot_product_attention; "reference": the plain grouped-attention XLA code
    # kept as the CPU reference. The cached decode path always uses the reference code.
    attention: Literal["auto", "xla", "cudnn", "splash", "reference"] = "auto"
    # Stack the decoder layers' params on a leading "layers" axis and run the full forward under
    # lax.scan: compile time stops growing with depth. The parameter tree (and so checkpoints and
    # optimizer states) differs between the two settings; HF files are the same.
    scan_layers: bool = False

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def validate(self, path: str) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "max_position"):
            value = getattr(self, name)
            require(value > 0, f"{path}.{name}={value} must be > 0")
        require(self.head_dim >= 0, f"{path}.head_dim={self.head_dim} must be >= 0 (0 = derive)")
        if self.head_dim == 0:
            require(
                self.hidden_size % self.num_heads == 0,
                f"{path}.num_heads={self.num_heads} must divide {path}.hidden_size="
                f"{self.hidden_size} (or set {path}.head_dim)",
            )
        require(
            self.num_heads % self.num_kv_heads == 0,
            f"{path}.num_kv_heads={self.num_kv_heads} must divide {path}.num_heads={self.num_heads}",
        )
        require(self.resolved_head_dim % 2 == 0, f"{path}: head dim must be even for RoPE")
        require(self.rms_norm_eps > 0, f"{path}.rms_norm_eps must be > 0")
        choices = ("auto", "xla", "cudnn", "splash", "reference")
        require(self.attention in choices,
                f"{path}.attention={self.attention!r} must be one of {list(choices)}")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh axes. ``data=-1`` takes whatever devices the other axes leave."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def validate(self, path: str) -> None:
        require(self.data == -1 or self.data > 0, f"{path}.data={self.data} must be -1 or > 0")
        require(self.fsdp > 0, f"{path}.fsdp={self.fsdp} must be > 0")
        require(self.tensor > 0, f"{path}.tensor={self.tensor} must be > 0")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay, and global-norm clipping."""

    learning_rate: float = 1e-6
    warmup_steps: int = 0
    decay_steps: int = 0  # 0: constant after warm-up
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping

    def validate(self, path: str) -> None:
        require(self.learning_rate >= 0, f"{path}.learning_rate must be >= 0")
        require(self.warmup_steps >= 0, f"{path}.warmup_steps must be >= 0")
        require(0 <= self.b1 < 1 and 0 <= self.b2 < 1, f"{path}.b1/b2 must be in [0, 1)")
        require(0 <= self.min_lr_ratio <= 1, f"{path}.min_lr_ratio must be in [0, 1]")
        require(self.grad_clip >= 0, f"{path}.grad_clip must be >= 0")


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """Sampling and the host tool loop."""

    prompts_per_step: int = 8
    group_size: int = 4
    max_prompt_len: int = 256
    max_new_tokens: int = 256  # model-sampled tokens per trajectory (tool tokens not counted)
    max_cache_len: int = 1024  # KV cache length: prompt + sampled + tool tokens
    segment_len: int = 64  # decode steps per compiled segment call
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables
    max_tool_calls: int = 4
    max_result_tokens: int = 64  # tool output is truncated to this many tokens
    length_bucket: int = 32  # padded prompt / extend lengths are multiples of this
    # Decode / extend attend over the smallest of this many evenly spaced cache prefixes that the
    # running rows can reach, instead of the whole cache (1: always the whole cache). Each width
    # is compiled once — RolloutEngine.warmup compiles them all up front.
    cache_windows: int = 4
    # Compiled decode slots (continuous batching): a row that finishes frees its slot for the
    # next pending row. 0 = one slot per row of a generate call (no row waits for a slot); fewer
    # slots than rows bound the KV cache and keep every slot busy when lengths are long-tailed.
    # Slots are split over mesh data*fsdp (rounded up to a multiple of it).
    slots: int = 0
    # Engine threads that wait on tool calls while the other slots keep decoding. 0 = one per row
    # of the rollout (a row has at most one call in flight, so no call waits for a thread); how
    # many calls *run* at once is tools.max_workers (the executor's pool).
    tool_workers: int = 0

    def validate(self, path: str) -> None:
        require(self.prompts_per_step > 0, f"{path}.prompts_per_step must be > 0")
        # G = 1 is refused rather than allowed to run: every group-relative advantage (GRPO,
        # Dr.GRPO, RLOO, TEPO's tool level) is then exactly 0 and nothing would train, silently.
        require(self.group_size >= 2,
                f"{path}.group_size={self.group_size} must be >= 2: advantages are relative to the "
                "other samples of the same prompt, so with one sample per prompt every advantage "
                "is 0 and RL would not train")
        require(self.temperature > 0, f"{path}.temperature={self.temperature} must be > 0")
        require(0 < self.top_p <= 1, f"{path}.top_p={self.top_p} must be in (0, 1]")
        require(self.top_k >= 0, f"{path}.top_k must be >= 0")
        require(
            self.max_cache_len >= self.max_prompt_len + self.max_new_tokens,
            f"{path}.max_cache_len={self.max_cache_len} must be >= max_prompt_len + "
            f"max_new_tokens = {self.max_prompt_len + self.max_new_tokens}",
        )
        require(self.segment_len > 0, f"{path}.segment_len must be > 0")
        require(self.length_bucket > 0, f"{path}.length_bucket must be > 0")
        require(self.cache_windows >= 1, f"{path}.cache_windows={self.cache_windows} must be >= 1")
        require(self.slots >= 0, f"{path}.slots={self.slots} must be >= 0 (0: one per row)")
        require(self.tool_workers >= 0,
                f"{path}.tool_workers={self.tool_workers} must be >= 0 (0: one per row)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Loop lengths, batching, checkpointing and logging."""

    steps: int = 10
    seed: int = 0
    micro_batch_size: int = 0  # 0: no gradient accumulation
    logit_chunk: int = 256  # tokens per chunk when computing logprob + entropy from hidden states
    # The log-prob / entropy head's path (rl/entropy.py:choose_head), from the shapes: "auto"
    # keeps one [rows, T, V] fp32 logits block for the backward pass when it fits
    # logit_block_mib, else runs T-chunks of at most that size (and at most logit_chunk
    # positions) and recomputes their logits in the backward pass; "full" / "chunked" force one.
    # `mode=plan` prints the choice.
    logit_head: Literal["auto", "full", "chunked"] = "auto"
    # MiB of fp32 logits in one block, per device. 0: by backend — 8 on CPU, where blocks that
    # stay in cache were measured fastest (benchmarks/grpo_step.py: full [64, 95, 4096] logits
    # 1.7x slower than 8-position chunks), 1024 on accelerators. Forward-only passes (reference
    # and old log-probs) also split their rows so one group's widest activation fits it
    # (train/steps.py:forward_groups).
    logit_block_mib: int = 0
    ppo_epochs: int = 1
    mini_batches: int = 1
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    log_every: int = 1
    save_rollouts_every: int = 10
    # Persistent XLA compilation cache (a local dir or a gs:// URI): a restarted or resumed job
    # loads its compiled step and rollout programs instead of compiling them again. "" = off.
    compilation_cache_dir: str = ""
    # "bucket": each batch is padded to the next multiple of rollout.length_bucket above its
    # longest row (one compiled step per length met, a few at most); "max": always to the
    # longest possible row (rollout.max_cache_len / the SFT length; one compiled step).
    pad_to: Literal["bucket", "max"] = "bucket"
    loggers: tuple[str, ...] = ("jsonl", "tensorboard")  # metric sinks: jsonl, tensorboard, wandb
    # Rematerialisation per decoder layer in the train forward: "full" recomputes each layer's
    # activations in the backward pass (saves only layer inputs), "save_dots" keeps the
    # projection matmul outputs and recomputes the rest. Set on the model (Decoder.remat).
    remat: Literal["none", "full", "save_dots"] = "none"

    def validate(self, path: str) -> None:
        require(self.steps >= 0, f"{path}.steps must be >= 0")
        choices = ["jsonl", "tensorboard", "wandb"]
        for name in self.loggers:
            require(name in choices, f"{path}.loggers: unknown logger '{name}'; choose from {choices}")
        # metrics.jsonl is the run's own record: resume, report.md and compare.md read it.
        require("jsonl" in self.loggers, f"{path}.loggers={self.loggers} must include 'jsonl' "
                "(resume and the reports read metrics.jsonl); add tensorboard / wandb beside it")
        require(self.micro_batch_size >= 0, f"{path}.micro_batch_size must be >= 0")
        require(self.logit_chunk > 0, f"{path}.logit_chunk must be > 0")
        require(self.logit_head in ("auto", "full", "chunked"),
                f"{path}.logit_head={self.logit_head!r} must be one of 'auto', 'full', 'chunked'")
        require(self.logit_block_mib >= 0, f"{path}.logit_block_mib must be >= 0 (0: by backend)")
        require(self.ppo_epochs > 0 and self.mini_batches > 0, f"{path}.ppo_epochs/mini_batches > 0")
        require(self.keep_checkpoints > 0, f"{path}.keep_checkpoints must be > 0")
        require(self.remat in ("none", "full", "save_dots"),
                f"{path}.remat={self.remat!r} must be one of 'none', 'full', 'save_dots'")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """SFT warm-up (AutoTool stage 1): next-token loss on model tokens of tool trajectories."""

    steps: int = 0
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 10
    seq_len: int = 0  # padded train length; 0: data.sft_max_len
    # AutoTool's auto-think template: every SFT target opens with its mode tag (<think>thought
    # </think> for long, the empty <think></think> for short; data/modes.py), and the system
    # prompt of SFT, RL and evaluation alike says so (data/prompts.py:MODE_TAG_INSTRUCTION), so
    # the policy is asked the same way it was taught. Long targets must open with a think block.
    mode_tag: bool = False

    def validate(self, path: str) -> None:
        require(self.steps >= 0, f"{path}.steps must be >= 0")
        require(self.batch_size > 0, f"{path}.batch_size must be > 0")
        require(self.learning_rate >= 0, f"{path}.learning_rate must be >= 0")
        require(self.seq_len >= 0, f"{path}.seq_len must be >= 0")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation of a policy (greedy accuracy + tool/compute statistics)."""

    split: Literal["heldout", "train"] = "heldout"
    max_items: int = 0  # 0: the whole split
    prompts_per_batch: int = 32
    greedy: bool = True
    samples: int = 1  # > 1: sampled pass@k / avg@k at rollout.temperature
    # Benchmarks evaluated besides (or, with eval_split_too=False, instead of) the split:
    # "name=path" pairs; a path is a BFCL question file (its possible answers beside it in
    # possible_answer/) or a task JSONL file. max_items applies per file. Results per benchmark
    # in eval_<policy>.json under "benchmarks", and in report.md / compare.md.
    files: tuple[str, ...] = ()
    eval_split_too: bool = True
    # AutoTool's reasoning modes, each evaluated in turn (data/modes.py): "auto" — the model
    # picks think / no_think itself; "think" / "no_think" — the forced prefix "<think>" / the
    # empty "<think></think>" is appended after the generation prompt and every completion is
    # scored in that mode. The first mode's results are eval_<policy>.json's top level; with
    # several, every mode's (split and benchmarks) is under "think_modes" and report.md /
    # compare.md show one row per mode. E.g. --config.eval.think_modes=auto,think,no_think.
    think_modes: tuple[Literal["auto", "think", "no_think"], ...] = ("auto",)

    def file_map(self) -> dict[str, str]:
        return dict(f.split("=", 1) for f in self.files)

    def validate(self, path: str) -> None:
        for f in self.files:
            require("=" in f and f.split("=", 1)[0].strip() and f.split("=", 1)[1].strip(),
                    f"{path}.files: {f!r} must be 'name=path'")
        names = [f.split("=", 1)[0] for f in self.files]
        require(len(set(names)) == len(names), f"{path}.files names a benchmark twice")
        require(self.max_items >= 0, f"{path}.max_items must be >= 0")
        require(self.prompts_per_batch > 0, f"{path}.prompts_per_batch must be > 0")
        require(self.samples > 0, f"{path}.samples must be > 0")
        modes = ("auto", "think", "no_think")
        require(len(self.think_modes) > 0, f"{path}.think_modes must name at least one of "
                                           f"{list(modes)}")
        for mode in self.think_modes:  # Literal is checked at load; a dataclass built in code too
            require(mode in modes, f"{path}.think_modes has {mode!r}; choose from {list(modes)}")
        require(len(set(self.think_modes)) == len(self.think_modes),
                f"{path}.think_modes={list(self.think_modes)} names a mode twice")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """``mode=compare``: one SFT warm-up, then the same RL budget per recipe and seed."""

    recipes: tuple[str, ...] = ("grpo", "dapo", "tepo_sparse", "tepo_dense", "tao_rl", "autotool")
    seeds: tuple[int, ...] = (0, 1)
    # Also warm up an always-think ("distilled") policy — the same SFT with
    # data.sft_policy="always_long", no RL — and compare it as method "sft_long" (AutoTool's
    # baseline: is choosing when to think better than always thinking?).
    distilled_start: bool = False

    def validate(self, path: str) -> None:
        require(len(self.recipes) > 0, f"{path}.recipes must name at least one recipe")
        require(len(self.seeds) > 0, f"{path}.seeds must list at least one seed")
        require(len(set(self.seeds)) == len(self.seeds), f"{path}.seeds has duplicates")


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """``mode=plan``: compile the real RL train step for a target mesh from abstract shapes (no
    weights allocated) and report XLA's per-device memory (``experiment/plan.py``)."""

    # 0: the devices JAX sees. N: simulate N CPU devices (``jax_num_cpu_devices``); when JAX is
    # already up with fewer devices the planner re-runs itself in a fresh process.
    devices: int = 0
    hbm_gib: float = 0.0  # per-device memory the plan is judged against; 0: no fit verdict
    # 0: compile every layer. k > 0: compile k- and 2k-layer slices and extrapolate the
    # per-layer difference to model.num_layers (a 28-layer unrolled compile is slow on CPU).
    slice_layers: int = 0

    def validate(self, path: str) -> None:
        require(self.devices >= 0, f"{path}.devices={self.devices} must be >= 0 (0: as found)")
        require(self.hbm_gib >= 0, f"{path}.hbm_gib={self.hbm_gib} must be >= 0 (0: no verdict)")
        require(self.slice_layers >= 0,
                f"{path}.slice_layers={self.slice_layers} must be >= 0 (0: every layer)")


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    """``mode=label``: AutoTool's warm-up labels from a policy's own no-think samples, and the
    offline data refinement (``data/labels.py``, ``experiment/label.py``)."""

    samples: int = 8  # k no-think completions per train item (the "rounds" of the variance)
    prompts_per_batch: int = 16  # items per generate call (rows: prompts_per_batch * samples)
    max_items: int = 0  # label the first N train items only; 0: the whole train split
    out: str = ""  # labels JSONL; "": <workdir>/labels.jsonl
    # Refinement: this share of the too-easy items (all k pass) and of the too-hard ones (none
    # pass) leaves the warm-up set, chosen by a hash of (seed, item id).
    drop_extremes: float = 0.5
    # RL prompts keep only items whose reward variance over the k samples is >= this (a
    # Bernoulli reward's variance is p(1-p) <= 0.25); 0 keeps every sampled item.
    min_variance: float = 0.0
    seed: int = 0  # of the extremes' drop; sampling uses train.seed

    def validate(self, path: str) -> None:
        require(self.samples >= 1, f"{path}.samples={self.samples} must be >= 1")
        require(self.prompts_per_batch >= 1, f"{path}.prompts_per_batch must be >= 1")
        require(self.max_items >= 0, f"{path}.max_items must be >= 0 (0: every train item)")
        require(0.0 <= self.drop_extremes <= 1.0,
                f"{path}.drop_extremes={self.drop_extremes} must be in [0, 1]")
        require(self.min_variance >= 0.0, f"{path}.min_variance={self.min_variance} must be >= 0")
