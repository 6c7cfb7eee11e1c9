#!/usr/bin/env bash
# Every GPU check of docs/benchmarks.md in one call, most important first, each step under its own time limit
# so that a slow one cannot lose the others' results (a lent GPU is short of time, not memory): about 9 min.
#   bash experiments/benchmarks/device_check.sh [OUT]     # OUT: where tables and logs go (default $OUT or gpu_out)
# Offline machines: wheels of the packages missing there in .whl/ are installed into /tmp/site first
# (docs/benchmarks.md says which); a cache folder .devcache/ (the toyface classifier) becomes $ICE_EXP_CACHE.
set -u
out=${1:-${OUT:-gpu_out}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled PYTHONPATH=$PWD
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PWD:/tmp/site
fi
[ -d .devcache ] && export ICE_EXP_CACHE=$PWD/.devcache
started=$SECONDS
step() {  # step NAME SECONDS COMMAND...: run with its log in $out/NAME.log; print its status, time and log's end
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s (total $((SECONDS - started)) s)"
  tail -n "${TAIL:-15}" "$out/$name.log"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, pytorch_lightning; print('torch', torch.__version__, 'lightning', pytorch_lightning.__version__, 'cuda', torch.cuda.is_available())"

# 1. the face_boundary JᵀJ at the seed's full size, every engine (the GPU table of experiments/benchmarks/RESULTS.md)
step benchmark 300 python3 -m experiments.benchmarks.gpu --budget-s 220 --out "$out/gpu_table.md"
# 2. device placement, and runs on the GPU equal to the CPU's (tests/test_devices.py)
step test_devices 90 python3 -m pytest -v --tb=short -m gpu tests/test_devices.py -p no:cacheprovider -s
# 3. the default run on the GPU, end to end (discovery, evaluation, counterfactual, outputs)
step default_run 45 python3 -m ice_exp trainer=gpu hydra.run.dir=/tmp/default_run
cp /tmp/default_run/metrics.json "$out/default_metrics.json"; cp /tmp/default_run/subspace.safetensors "$out/default_subspace.safetensors"
# 4. the CPU suite under this machine's torch (-v: each result as it comes, so a stopped run still names its failures)
step suite 120 env OMP_NUM_THREADS=1 python3 -m pytest -v --tb=line -rf -n 14 -p no:cacheprovider
