"""Llama-3.1-8B-Instruct + TEPO: math and QA with a BM25 search tool, GRPO 64 prompts x 8, 4k.

Nothing downloads. ``model.init_from`` / ``data.tokenizer``: a local HF Llama-3.1-8B-Instruct
directory (placeholder below). Dims from its config.json: 32 layers, hidden 4096, 32 heads / 8 KV
heads, intermediate 14336, vocab 128256, untied head, no q/k/v bias, rope theta 500000 with
Llama-3 scaling (factor 8, low/high frequency factors 1/4, original context 8192).
``data.jsonl_path``: your task records (``task`` = ``math`` / ``gsm8k`` / ... graded as math,
``qa`` / ``hotpotqa`` / ``nq`` / ... graded by SQuAD EM/F1; see ``toolrl_jax/verifiers.py``);
``tools.search.corpus_path``: a JSONL of ``{"id", "title", "text"}`` passages the search tool
indexes (BM25, local; no web access).

Memory layout: fp32 master weights and AdamW moments (FSDP), bf16 compute, scanned layers with
``remat=full``. 32 heads and 8 KV heads divide tensor=8, so on the 8-GPU node the whole model is
tensor-parallel over NVLink (fsdp=1 x tensor=8); on the v5p-32, fsdp=4 x tensor=4.

v5p-32 (16 chips, 95 GiB HBM each), mesh fsdp=4 x tensor=4:

    TPU_NAME=my-v5p-32 ZONE=us-east5-a bash launch/tpu_vm.sh run configs/llama3_1_8b_tepo.py \\
        --config.model.init_from=/mnt/ckpt/Llama-3.1-8B-Instruct \\
        --config.data.tokenizer=/mnt/ckpt/Llama-3.1-8B-Instruct \\
        --config.data.jsonl_path=/mnt/data/math_qa.jsonl \\
        --config.tools.search.corpus_path=/mnt/data/wiki_passages.jsonl \\
        --workdir gs://my-bucket/runs/tepo

The work dir is a ``gs://`` URI here (a file system every host mounts works too): checkpoints,
metrics, TensorBoard, rollouts, evaluations, reports and the HF exports go there. Each host builds
its dataset, corpus and tokenizer copies in a local scratch dir (``$TOOLRL_JAX_SCRATCH``, default
``/tmp/toolrl_jax_scratch``); process 0's tokenizer is kept in the work dir for the others.

8 x H100 80 GiB, mesh fsdp=1 x tensor=8:

    bash launch/gpu_node.sh configs/llama3_1_8b_tepo.py \\
        --config.mesh.fsdp=1 --config.mesh.tensor=8 --config.train.micro_batch_size=1 \\
        --config.rollout.slots=64 --config.model.init_from=/data/Llama-3.1-8B-Instruct \\
        --config.data.tokenizer=/data/Llama-3.1-8B-Instruct \\
        --config.data.jsonl_path=/data/math_qa.jsonl \\
        --config.tools.search.corpus_path=/data/wiki_passages.jsonl --workdir runs/tepo

Plan either layout on a CPU first (compiles the real train step; no weights allocated):

    python -m toolrl_jax.main --config configs/llama3_1_8b_tepo.py --config.mode=plan
    python -m toolrl_jax.main --config configs/llama3_1_8b_tepo.py --config.mode=plan \\
        --config.plan.devices=8 --config.plan.hbm_gib=80 \\
        --config.mesh.fsdp=1 --config.mesh.tensor=8 --config.train.micro_batch_size=1 \\
        --config.rollout.slots=64

Planner output (XLA:CPU buffer assignment of the full 32-layer train step and of the rollout's
decode segment and whole-batch append, per device, GiB):

    layout                     params AdamW act+temp train peak | slots KV cache rollout+state  HBM
    v5p-32, fsdp=4 x tensor=4   1.87   3.74   8.87    14.49     |  256   8.00      63.10     95: fits
    8xH100, fsdp=1 x tensor=8   3.74   7.48  15.68    26.92     |   64   4.00      52.52     80: fits

On the GPU node the KV cache is split over the 8 KV heads only (there is no batch axis), so the
rollout runs 64 slots; rows wait for a slot and refill continuously.
"""

from toolrl_jax.config import sibling_config

# Placeholder: a local directory holding the HF Llama-3.1-8B-Instruct checkpoint (no download).
CHECKPOINT = "/path/to/Llama-3.1-8B-Instruct"


def get_config():
    # The pod run of configs/qwen2_5_7b_tao_rl.py (mesh, 64 x 8 rollout at 4k, optimiser, remat,
    # micro-batches, plan target) with Llama's architecture, search instead of Python, TEPO.
    c = sibling_config(__file__, "qwen2_5_7b_tao_rl")
    c.name = "llama3_1_8b_tepo"

    c.model.architecture = "llama"
    c.model.vocab_size = 128256
    c.model.hidden_size = 4096
    c.model.intermediate_size = 14336
    c.model.num_layers = 32
    c.model.num_heads = 32
    c.model.num_kv_heads = 8
    c.model.head_dim = 128
    c.model.rope_theta = 500000.0
    c.model.rope_scaling.type = "llama3"
    c.model.rope_scaling.factor = 8.0
    c.model.rope_scaling.low_freq_factor = 1.0
    c.model.rope_scaling.high_freq_factor = 4.0
    c.model.rope_scaling.original_max_position = 8192
    c.model.rms_norm_eps = 1e-5
    c.model.qkv_bias = False
    c.model.max_position = 131072
    c.model.init_from = CHECKPOINT
    c.data.tokenizer = CHECKPOINT

    c.data.source = "jsonl"
    c.data.jsonl_path = "/path/to/math_qa.jsonl"  # placeholder: your task file
    c.tools.enabled = ("search",)
    c.tools.search.corpus_path = "/path/to/passages.jsonl"  # placeholder: your corpus
    c.tools.search.top_k = 3

    c.rollout.max_new_tokens = 2048
    # 256 slots for the 512 rows (continuous batching): all 512 at once would need 112 GiB per
    # v5p chip during the rollout (16 GiB of KV cache per chip with 8 KV heads over tensor=4).
    c.rollout.slots = 256
    c.rollout.max_result_tokens = 256  # up to 4 search results of <= 256 tokens in 4096

    c.rl.recipe = "tepo_dense"
    return c
