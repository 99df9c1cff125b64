#!/usr/bin/env bash
# The GPU checks of benchmarks/RESULTS.md, run on a lent GPU machine one stage per call (see "On the GPU" there).
#
# The embedded backbone's weights (bf16, xz-compressed, cut in three) travel in .gpu/{a,b,c}, one part per call,
# because one call carries at most 64 MiB; they are put back together under models_cache/ and checked against
# their sha256 before use. Stages:
#   prepare (here, not on the device) build .gpu/{a,b,c} from models_cache/smollm2-135m (a few minutes of xz);
#          add /.gpu/ to .git/info/exclude, then call the device once per stage, back to back (a machine stays
#          warm 30 s, and the parts live on it only while it does)
#   smoke  part a; the whole comparison (every method, tuning on) on a tiny random model on CUDA, in seconds
#   speed  part b; bench_continuous_speed.py in bf16 on the SmolLM2-135M and llama-1b shapes
#   tables part c; rebuild the backbone; bench_comparison.py (cache on/off) and bench_accuracy_table.py
set -u
PY=${PY:-python3}  # the device image's python holds torch; here: PY=.venv/bin/python
stage=$1
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"

if [ "$stage" = prepare ]; then
    src=models_cache/smollm2-135m
    mkdir -p .gpu/a .gpu/b .gpu/c /tmp/gpuw
    $PY -c "
import torch
from safetensors.torch import load_file, save_file
sd = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file('$src/model.safetensors').items()}
save_file(sd, '/tmp/gpuw/model.safetensors', metadata={'format': 'pt'})"
    xz -T2 -3 -k -c /tmp/gpuw/model.safetensors > /tmp/gpuw/model.xz
    (cd /tmp/gpuw && split -n 3 -d model.xz part. && sha256sum model.safetensors) > .gpu/c/SHA256SUMS
    cp /tmp/gpuw/part.00 .gpu/a/ && cp /tmp/gpuw/part.01 .gpu/b/ && cp /tmp/gpuw/part.02 .gpu/c/
    cp $src/*.json $src/*.jinja .gpu/c/
    du -sh .gpu/*
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

mkdir -p models_cache/parts
case "$stage" in
smoke)
    cp .gpu/a/part.* models_cache/parts/
    $PY - <<'EOF'
import sys; sys.path.insert(0, ".")
from pathlib import Path
from tests.tiny_models import save_tiny
for family in ("llama", "bert"):
    save_tiny(family, Path(f"/tmp/tiny-{family}"))
EOF
    for family in llama bert; do
        $PY -m core compare --data data/samples/movie_reviews.csv --backbone /tmp/tiny-$family \
            --methods manual,baseline,linear_probe,autoprompt,ptuning,ptuning_v2,prompt_tuning \
            --k-shot 8 --seeds 0 --max-steps 6 --test-size 64 --out /tmp/smoke-$family \
            --option autoprompt.max_steps=3 > "$OUT/smoke-$family.log" 2>&1
        echo "smoke $family: exit $?"
        tail -n 3 "$OUT/smoke-$family.log"
    done
    $PY -c "import json; r=json.load(open('/tmp/smoke-llama/results.json')); print(r['backbone']); print([(m['name'], round(m['accuracy'],3)) for m in r['methods']])"
    ;;
speed)
    cp .gpu/b/part.* models_cache/parts/
    $PY benchmarks/bench_continuous_speed.py --device cuda --dtype bf16 --config smollm2-135m --batch 16 \
        --seq 64 --steps 20 --warmup 5 --json "$OUT/speed_smollm2_gpu.json" 2>&1 | grep -v Warning | tail -n 20
    $PY benchmarks/bench_continuous_speed.py --device cuda --dtype bf16 --config llama-1b --batch 16 \
        --seq 256 --steps 10 --warmup 3 --json "$OUT/speed_llama1b_gpu.json" 2>&1 | grep -v Warning | tail -n 20
    ;;
tables)
    cp .gpu/c/part.* models_cache/parts/
    dir=models_cache/smollm2-135m
    mkdir -p $dir
    cp .gpu/c/*.json .gpu/c/*.jinja $dir/
    cat models_cache/parts/part.* > /tmp/model.xz
    $PY -c "import lzma, shutil; shutil.copyfileobj(lzma.open('/tmp/model.xz'), open('$dir/model.safetensors', 'wb'), 1 << 24)"
    (cd $dir && sha256sum model.safetensors) | diff - <(grep model.safetensors .gpu/c/SHA256SUMS) && echo "weights: sha256 ok"
    # the table first, then the timed comparison alone on the GPU; each bounded so the call returns inside its
    # limit with whatever finished (the table reads only finished runs). Runs sharing one GPU time-slice it (6 at
    # once finished none in 370 s): one job at a time, and TABLE_ARGS (e.g. --datasets, --k-shots) to fit the call
    timeout "${TABLE_S:-390}" $PY benchmarks/bench_accuracy_table.py --jobs "${TABLE_JOBS:-1}" --threads 2 \
        --out /tmp/acc ${TABLE_ARGS:-} \
        > "$OUT/accuracy_table.log" 2>&1
    $PY benchmarks/bench_accuracy_table.py --table-only --out /tmp/acc ${TABLE_ARGS:-} > /dev/null 2>&1
    cat "$OUT/accuracy_table.log" /tmp/acc/table.md
    timeout "${COMPARISON_S:-150}" $PY benchmarks/bench_comparison.py --device cuda \
        --threads 2 --json "$OUT/comparison_gpu.json" 2>&1 | grep -v "Loading weights" | tail -n 16
    cp /tmp/acc/summary.json "$OUT/accuracy_summary.json"
    tar czf "$OUT/accuracy_runs.tgz" --exclude='*.safetensors' --exclude=checkpoints -C /tmp acc  # no weights
    ;;
esac
