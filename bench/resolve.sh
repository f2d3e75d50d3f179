#!/bin/sh
# Resolving a linnaeus-sized closure (150 projects, 5 versions each, with
# PEP 658 metadata files) from cached metadata: the second
# `kiln build --dry-run --keys` must take under 1 s.
# Usage: bench/resolve.sh [KILN]    (exit 1 when it takes longer)
set -eu
KILN=${1:-${KILN:-build/cli/kiln}}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/kiln-resolve.XXXXXX")
trap 'rm -rf "$W"' EXIT INT TERM

PYTHONPATH="$HERE/../tests/integration" python3 - "$W" <<'PY'
import json, pathlib, sys
from recipes_helpers import make_simple_index, make_wheel
w = pathlib.Path(sys.argv[1])
wheels = []
# p000 needs p001..p010, p001 needs p011..p020, ...: 150 projects
for i in range(150):
    deps = [f"p{j:03}>=1.{j % 3}" for j in range(i * 10 + 1, min(i * 10 + 11, 150))]
    for v in range(1, 6):
        wheels.append(make_wheel(w / "w", f"p{i:03}", f"1.{v}", py="py3", abi="none",
                                 plat="any", requires=deps))
idx = make_simple_index(w / "idx" / "simple", wheels, metadata=True)
(w / "r.json").write_text(json.dumps({"base": "scratch", "layers": [
    {"name": "py", "kind": "wheels", "index": str(idx), "packages": ["p000"]}]}))
PY

"$KILN" build "$W/r.json" --dry-run --keys --cache-dir "$W/c" >/dev/null
start=$(date +%s%N)
"$KILN" build "$W/r.json" --dry-run --keys --cache-dir "$W/c" >/dev/null
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
echo "resolve 150 projects from cached metadata: ${ms} ms"
[ "$ms" -lt 1000 ]
