#!/usr/bin/env bash
# The GPU checks of the r6 recipe as one script for a lent GPU machine (no internet, no weights): GPT-OSS-20B's real
# shape random-initialised in bf16, trained as r6 trains it (batch, length, LoRA, checkpointing from
# rounds/r6.toml), as the research plan budgeted (batch 1 x 1024, no checkpointing), and with expert LoRA;
# each variant in its own process, its JSON under $OUT (or ./gpu-out). transformers and peft at the pins of
# constraints/gpu.txt travel as wheels in .whl/ when present (the device's image has other versions).
#   bash benchmarks/gpu/r6_checks.sh
set -u
out=${OUT:-gpu-out}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$out/gpu.txt"
run() {  # name, seconds, args...
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" python3 benchmarks/gpu/pushpull_gpt_oss_shape.py ${EXTRA:-} "$@" >"$out/$name.json" 2>"$out/$name.err"
    echo "rc=$?"
    tail -3 "$out/$name.err"
}
run r6 180 --recipe rounds/r6.toml --steps 4
run r6_expert_lora 150 --recipe rounds/r6.toml --expert-lora --steps 3
run plan_b1_s1024 120 --batch 1 --seq 1024 --steps 4
python3 - "$out" <<'EOF'
import json, pathlib, sys
print(f"{'variant':16} {'peak GiB (pp)':>13} {'plain':>7} {'estimate':>8} {'weights':>8} {'step s (pp)':>11} {'overhead':>8} {'left':>6}")
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    try:
        r = json.loads(f.read_text())
    except ValueError:
        print(f"{f.stem:16} (no result)")
        continue
    print(f"{f.stem:16} {r['pushpull']['peak_gib']:13.1f} {r['plain']['peak_gib']:7.1f} "
          f"{r['estimate_gib']['train_total']:8.1f} {r['weights_gib']:8.1f} {r['pushpull']['median_step_s']:11.2f} "
          f"{r['overhead']:8.3f} {r['left_after_release_gib']:6.2f}")
EOF
