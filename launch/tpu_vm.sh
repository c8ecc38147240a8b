#!/usr/bin/env bash
# Runs one toolrl_jax command on every worker of a Cloud TPU VM (a pod slice such as v5p-32 =
# 4 hosts x 4 chips, or a single host), one process per host, all in one jax.distributed job.
#
#   TPU_NAME=my-v5p-32 ZONE=us-east5-a bash launch/tpu_vm.sh setup
#   TPU_NAME=my-v5p-32 ZONE=us-east5-a bash launch/tpu_vm.sh run configs/qwen2_5_7b_tao_rl.py \
#       --config.model.init_from=/mnt/ckpt/Qwen2.5-7B-Instruct \
#       --config.data.tokenizer=/mnt/ckpt/Qwen2.5-7B-Instruct --workdir gs://my-bucket/runs/tao_rl
#
# `setup` copies this checkout to every worker and installs it with the TPU extra; `run` starts
# the same command on all workers at once. Everything the run writes goes to --workdir, a gs://
# URI (or a filesystem every worker mounts): orbax checkpoints (each host its shards), and, from
# process 0, metrics, TensorBoard, rollouts, evaluations, reports and HF exports. Each worker keeps
# its dataset / tokenizer copies and the files being written in a local scratch dir
# ($TOOLRL_JAX_SCRATCH, default /tmp/toolrl_jax_scratch). The model checkpoint is read from
# --config.model.init_from: the same local path on every worker, or a gs:// URI (each worker
# then downloads a copy into its scratch dir first, so leave room for one on its disk).
#
# Multi-host start-up: `run` exports JAX_COORDINATOR_ADDRESS=<worker 0's internal IP>:8476 on
# every worker, so toolrl_jax.sharding.maybe_initialize_distributed calls
# jax.distributed.initialize() on every run, pod or single host, without relying on
# TPU_WORKER_HOSTNAMES (which a `gcloud ... ssh` shell on a TPU VM does not have: the worker
# list lives in the VM metadata). jax.distributed.initialize() then takes this process's index
# and the process count from the TPU metadata; it must run before any other JAX call, which
# toolrl_jax.main does.
#
# Plan first (any machine, CPU; compiles the real train step for 16 simulated chips):
#   python -m toolrl_jax.main --config configs/qwen2_5_7b_tao_rl.py --config.mode=plan
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
REMOTE_DIR=${REMOTE_DIR:-toolrl_jax}
COORDINATOR_PORT=${COORDINATOR_PORT:-8476}
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" $PROJECT_FLAG --worker=all --command="$1"
}
case "${1:-}" in
  setup)
    tar czf /tmp/toolrl_jax_src.tgz --exclude=.venv --exclude=runs --exclude=.git .
    gcloud compute tpus tpu-vm scp /tmp/toolrl_jax_src.tgz "$TPU_NAME":/tmp/ --zone="$ZONE" \
      $PROJECT_FLAG --worker=all
    # bubblewrap: the Python tool's sandbox (required)
    ssh_all "(command -v bwrap >/dev/null || (sudo apt-get update -qq && sudo apt-get install -y -qq bubblewrap)) && \
      mkdir -p $REMOTE_DIR && tar xzf /tmp/toolrl_jax_src.tgz -C $REMOTE_DIR && \
      cd $REMOTE_DIR && python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'"
    ;;
  run)
    shift
    config=${1:?usage: tpu_vm.sh run configs/<name>.py [--config.x=y ...]}
    shift
    coordinator=$(gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" $PROJECT_FLAG \
      --format='value(networkEndpoints[0].ipAddress)')
    [ -n "$coordinator" ] || { echo "no worker IP from gcloud compute tpus tpu-vm describe" >&2; exit 1; }
    ssh_all "cd $REMOTE_DIR && JAX_COORDINATOR_ADDRESS=$coordinator:$COORDINATOR_PORT \
      HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
      .venv/bin/python -m toolrl_jax.main --config $config $*"
    ;;
  *)
    echo "usage: TPU_NAME=... ZONE=... bash launch/tpu_vm.sh {setup|run configs/<name>.py [flags]}" >&2
    exit 2
    ;;
esac
