#!/bin/bash
# The GPU measurements of benchmarks/README.md ("Performance on an NVIDIA H200") as one run,
# for a GPU machine held only for minutes: each step has its own time limit and writes its
# log to $OUT (default /tmp/gpu-checks) as it runs, so a step cut short leaves the earlier ones.
#   OUT=/tmp/gpu-checks bash benchmarks/gpu_checks.sh
# Needs robench's dependencies, pyautoattack and torchattacks importable (PYTHONPATH may
# point at unpacked wheels) and the shared CIFAR-10 copy at ../shared/data beside the repo.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ROBENCH_CACHE=${ROBENCH_CACHE:-/tmp/rbcache}
T0=$(date +%s)
step() {
  local limit=$1 name=$2
  shift 2
  echo "=== $name (limit $limit s, at $(( $(date +%s) - T0 )) s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "rc $? after $(( $(date +%s) - T0 )) s"
  tail -c 3000 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
step 100 attack-128 python3 benchmarks/attack_throughput.py --device cuda --rounds 3 --n 128
step 100 attack-2048 python3 benchmarks/attack_throughput.py --device cuda --rounds 3 --n 2048
step 70 train-pgd-at-128 python3 benchmarks/train_throughput.py --objective pgd-at \
  --device cuda --rounds 3 --steps 5
step 70 train-pgd-at-512 python3 benchmarks/train_throughput.py --objective pgd-at \
  --device cuda --rounds 3 --steps 5 --batch-size 512
step 40 train-standard python3 benchmarks/train_throughput.py --objective standard \
  --device cuda --rounds 3 --steps 10
step 60 end-to-end bash -c 'python3 -m robench train --dataset digits --device cuda \
  --epochs 3 --out /tmp/gpu-e2e -q && run=$(ls -d /tmp/gpu-e2e/*/) && python3 -m robench \
  eval "$run" --attack pgd --attack autoattack --n-examples all --batch-size auto \
  --device cuda && python3 -m pytest -q -p no:cacheprovider tests/test_augment.py -k cuda'
# The slowest: three trainings and eight evaluations (about 8 minutes on an H200).
step 480 bf16-agreement python3 benchmarks/bf16_agreement.py --device cuda --n 500 \
  --epochs 10 --out /tmp/bench-bf16
echo "total $(( $(date +%s) - T0 )) s"
