#!/bin/bash
# SLURM: the same training script on 2 nodes x 4 GPUs. Submit with: sbatch scripts/slurm_train_distributed.sh
# One torchrun per node (srun starts them); torchrun starts one process per GPU and the c10d rendezvous on
# the first node joins them into one job of 8 ranks. Adjust partition, account and paths for your cluster.
#SBATCH --job-name=course-fsdp
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one torchrun per node
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=00:30:00
#SBATCH --output=%x-%j.out
set -euo pipefail

HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=29500
source .venv/bin/activate            # the course environment (make venv), on a shared file system

srun torchrun \
  --nnodes "$SLURM_NNODES" \
  --nproc-per-node "$SLURM_GPUS_PER_NODE" \
  --rdzv-backend c10d \
  --rdzv-endpoint "$HEAD_NODE:$PORT" \
  --rdzv-id "$SLURM_JOB_ID" \
  scripts/train_distributed.py --strategy zero3 --preset small --global-batch 64 --steps 1000 \
    --checkpoint "checkpoints/$SLURM_JOB_NAME" --save-every 100 "$@"
# Resume after a pre-emption or on a different number of nodes: resubmit with --resume appended
# (sbatch scripts/slurm_train_distributed.sh --resume); DCP reshards the checkpoint to the new world size.
