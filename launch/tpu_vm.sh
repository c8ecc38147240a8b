#!/usr/bin/env bash
# Runs one toolrl_jax command on every worker of a Cloud TPU VM (multi-host: JAX initialises
# jax.distributed from the TPU environment on each worker; see toolrl_jax/sharding.py).
#
#   TPU_NAME=my-v5e-16 ZONE=us-west4-a bash launch/tpu_vm.sh setup
#   TPU_NAME=my-v5e-16 ZONE=us-west4-a bash launch/tpu_vm.sh run configs/compare.py \
#       --config.model.init_from=/mnt/ckpt/Qwen2.5-1.5B-Instruct --workdir gs://bucket/runs/compare
#
# `setup` copies this checkout to every worker and installs it with the TPU extra; `run` starts
# the same command on all workers at once (checkpoints and metrics go to --workdir; use a GCS
# path so every worker sees the same directory).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
REMOTE_DIR=${REMOTE_DIR:-toolrl_jax}
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" $PROJECT_FLAG --worker=all --command="$1"
}
case "${1:-}" in
  setup)
    tar czf /tmp/toolrl_jax_src.tgz --exclude=.venv --exclude=runs --exclude=.git .
    gcloud compute tpus tpu-vm scp /tmp/toolrl_jax_src.tgz "$TPU_NAME":/tmp/ --zone="$ZONE" \
      $PROJECT_FLAG --worker=all
    ssh_all "mkdir -p $REMOTE_DIR && tar xzf /tmp/toolrl_jax_src.tgz -C $REMOTE_DIR && \
      cd $REMOTE_DIR && python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'"
    ;;
  run)
    shift
    config=${1:?usage: tpu_vm.sh run configs/<name>.py [--config.x=y ...]}
    shift
    ssh_all "cd $REMOTE_DIR && HF_HUB_OFFLINE=1 .venv/bin/python -m toolrl_jax.main --config $config $*"
    ;;
  *)
    echo "usage: TPU_NAME=... ZONE=... bash launch/tpu_vm.sh {setup|run configs/<name>.py [flags]}" >&2
    exit 2
    ;;
esac
