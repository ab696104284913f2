#!/usr/bin/env bash
# The GPU check, one prepared command: in under 8 minutes on one GPU it runs
#   1. the gpu test tier (pytest -m gpu),
#   2. the training benchmark of the convolutional hierarchy in bf16: vaelab, and vaelab with
#      compiled cells, against a raw eager loop over the same model (scripts/bench_hvae.py; its
#      whole-model torch.compile and CUDA-graph loops are left out: on an H200 compiling the
#      hierarchy took over two minutes),
#   3. experiment=mnist_2d end to end with the data on the GPU, trainer=ddp on one device, bf16,
#   4. experiment=cifar10_hvae in bf16 for the time left, its figures in <out>/cifar10_hvae/figures,
#      then its test bits/dim from vaelab-eval.
# Each step logs to <out>/<step>.log; <out>/summary.txt lists each step's status and seconds. A
# failing or timed-out step does not stop the others; the exit status is non-zero if one failed.
#
#   scripts/gpu_check.sh --data-dir DIR [--out DIR] [--minutes M] [--python PY] [--dry-run]
#
# DIR holds MNIST/raw/ (the IDX files, .gz accepted); the CIFAR-format data of steps 2 and 4 are
# made from it (scripts/make_cifar_like.py). --dry-run runs every step on the CPU at toy sizes in
# about a minute (tests/test_gpu_check.py does), to check the commands before a GPU is lent.
set -uo pipefail

DATA="${VAELAB_DATA_DIR:-}"
OUT="gpu_check_out"
MINUTES=8
PY="${PYTHON:-python}"
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --minutes) MINUTES="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$DATA" ] || [ ! -d "$DATA/MNIST/raw" ]; then
  echo "gpu_check.sh: --data-dir must name a folder holding MNIST/raw/ (got '${DATA}')" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DATA="$(cd "$DATA" && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
BUDGET=$((MINUTES * 60))
START=$SECONDS
FAILED=0
: > "$OUT/summary.txt"

# step NAME SECONDS COMMAND...: run it under a time limit, log it, record status and duration
step() {
  local name="$1" limit="$2"; shift 2
  local began=$SECONDS
  echo "== $name (limit ${limit}s, ${began}s into the check)"
  timeout --signal=TERM --kill-after=20 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  local took=$((SECONDS - began))
  [ $status -eq 0 ] || FAILED=1
  echo "$name: exit $status, ${took}s" | tee -a "$OUT/summary.txt"
  tail -n 12 "$OUT/$name.log"
}

if [ $DRY -eq 1 ]; then
  DEVICE=cpu; ACCEL=cpu; SIZES=(--train-size 100 --test-size 40)
  BENCH=(--device cpu --variants vaelab eager vaelab_compiled --steps 2 --warmup 1 --batch-size 8
         model.ladder.compile_backend=eager data.val_size=20 model.ladder.width=8
         model.ladder.latent_channels=2
         "model.ladder.encoder_blocks=[1,1,1,1,1,1]" "model.ladder.latent_layers=[0,0,1,0,0,1]")
  SMALL=(data.val_size=20 data.batch_size=16 +trainer.limit_train_batches=3 +trainer.limit_val_batches=1
         +trainer.limit_test_batches=1)
  HVAE=(model.ladder.width=8 model.ladder.latent_channels=2
        "model.ladder.encoder_blocks=[1,1,1,1,1,1]" "model.ladder.latent_layers=[0,0,1,0,0,1]"
        trainer.max_epochs=1 "${SMALL[@]}")
  EVAL=(iwae.num_samples=2 iwae.num_images=4)
  LIMITS=(60 120 120 240)
else
  DEVICE=cuda; ACCEL=gpu; SIZES=(--train-size 12000 --test-size 2000)
  BENCH=(--device cuda --variants eager vaelab vaelab_compiled --repeats 3 --steps 30 --warmup 10
         data.val_size=1000 +trainer.limit_val_batches=1)
  SMALL=()
  HVAE=(data.val_size=1000)
  EVAL=(iwae.num_samples=100 iwae.num_images=1000)
  LIMITS=(120 180 70 0)
fi
COMMON=(callbacks.progress.plain=true logger=csv)

step make_data 90 "$PY" scripts/make_cifar_like.py --mnist "$DATA" --out "$OUT/cifar_like" "${SIZES[@]}"
step gpu_tests "${LIMITS[0]}" "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py
step bench "${LIMITS[1]}" "$PY" scripts/bench_hvae.py --data-dir "$OUT/cifar_like" \
  --precision bf16-mixed "${BENCH[@]}"
step mnist_2d "${LIMITS[2]}" "$PY" -m vaelab train experiment=mnist_2d data.data_dir="$DATA" \
  data.on_device=true trainer=ddp trainer.accelerator="$ACCEL" trainer.devices=1 \
  trainer.precision=bf16-mixed trainer.max_epochs=2 hydra.run.dir="$OUT/mnist_2d" \
  "${SMALL[@]}" "${COMMON[@]}"

# the time left, less a minute for the evaluation and half a minute of margin
LEFT=$((BUDGET - (SECONDS - START) - 90))
[ $DRY -eq 1 ] && LEFT=${LIMITS[3]}
if [ $LEFT -lt 60 ]; then
  echo "cifar10_hvae: not run, only ${LEFT}s left" | tee -a "$OUT/summary.txt"
  FAILED=1
else
  TRAIN_FOR=$((LEFT - 40))
  MAX_TIME=$(printf '00:00:%02d:%02d' $((TRAIN_FOR / 60)) $((TRAIN_FOR % 60)))
  step cifar10_hvae "$LEFT" "$PY" -m vaelab train experiment=cifar10_hvae \
    data.data_dir="$OUT/cifar_like" trainer.accelerator="$ACCEL" trainer.precision=bf16-mixed \
    data.on_device="$([ $DEVICE = cuda ] && echo true || echo false)" \
    "+trainer.max_time=\"$MAX_TIME\"" callbacks.latent_viz.every_n_epochs=0 \
    hydra.run.dir="$OUT/cifar10_hvae" "${HVAE[@]}" "${COMMON[@]}"
  BEST=$(ls "$OUT"/cifar10_hvae/checkpoints/epoch_*.ckpt 2>/dev/null | head -n 1)
  if [ -n "$BEST" ]; then
    step cifar10_hvae_eval 90 "$PY" -m vaelab eval ckpt_path="$BEST" fid.enabled=false \
      trainer.accelerator="$ACCEL" hydra.run.dir="$OUT/cifar10_hvae_eval" "${EVAL[@]}" \
      callbacks.progress.plain=true
  fi
fi
echo "== done in $((SECONDS - START))s; figures: $OUT/cifar10_hvae/figures; summary: $OUT/summary.txt"
exit $FAILED
