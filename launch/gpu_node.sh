#!/usr/bin/env bash
# Runs one toolrl_jax command on one GPU node: ONE process drives all of its GPUs (8 x H100 = 8 JAX
# devices, one mesh; no jax.distributed, which is for several processes/hosts).
#
#   bash launch/gpu_node.sh setup                       # venv with jax[cuda12] (pyproject's `cuda` extra)
#   bash launch/gpu_node.sh configs/qwen2_5_7b_tao_rl.py \
#       --config.mesh.fsdp=2 --config.mesh.tensor=4 --config.train.micro_batch_size=2 \
#       --config.model.init_from=/data/Qwen2.5-7B-Instruct --workdir runs/tao_rl
#
# Plan the run first on any machine (CPU, simulated devices; see README "Planning a real run"):
#   python -m toolrl_jax.main --config configs/qwen2_5_7b_tao_rl.py --config.mode=plan \
#       --config.plan.devices=8 --config.plan.hbm_gib=80 --config.mesh.fsdp=2 --config.mesh.tensor=4
#
# Environment (each may be overridden by setting it before calling this script):
#   CUDA_VISIBLE_DEVICES            the GPUs this process uses (default: all)
#   XLA_PYTHON_CLIENT_MEM_FRACTION  share of each GPU's memory JAX preallocates (JAX's default is
#                                   0.75: 60 of 80 GiB on an H100; 0.92 leaves ~6 GiB to CUDA/NCCL)
#   XLA_FLAGS                       appended to: the latency-hiding scheduler overlaps the FSDP
#                                   all-gathers / reduce-scatters with compute
#   NCCL_*                          passed through (e.g. NCCL_DEBUG=WARN)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

case "${1:-}" in
  setup)
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)  # bubblewrap: the Python tool's sandbox (required)
    command -v bwrap >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y -qq bubblewrap; }
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -e '.[cuda]'
    "$VENV/bin/python" -c 'import jax; print(jax.devices())'
    exit 0
    ;;
  ""|-h|--help)
    echo "usage: bash launch/gpu_node.sh {setup | configs/<name>.py [--config.x=y ...] [--workdir D]}" >&2
    exit 2
    ;;
esac

config=$1
shift
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "GPUs: $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | xargs)" >&2
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # checkpoints and tokenizers are local paths
exec "$VENV/bin/python" -m toolrl_jax.main --config "$config" "$@"
