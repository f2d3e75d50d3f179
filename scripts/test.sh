#!/usr/bin/env bash
# Installs the dependencies, builds kiln with warnings as errors and ASan+UBSan,
# runs every test (unit, integration, a short fuzz run) and prints the counts.
#
#   bash scripts/test.sh          the CI matrices: every fault kind and hostile
#                                 case, 2 fault seeds on 12 MiB, 20 kills, 15 s
#                                 of fuzzing per target
#   bash scripts/test.sh --slow   the full matrices: 20 fault seeds on 256 MiB,
#                                 200 kills, 50 writer rounds, 10 minutes of
#                                 fuzzing per target; the same figures
set -uo pipefail
cd "$(dirname "$0")/.."
suite=integration fuzz_seconds=15
if [ "${1:-}" = "--slow" ]; then
  suite=slow fuzz_seconds=600
fi
bash scripts/setup.sh || exit 1

fail=0
meson setup build-ci --wipe -Dwerror=true -Db_sanitize=address,undefined >/dev/null 2>&1 ||
  meson setup build-ci -Dwerror=true -Db_sanitize=address,undefined || exit 1
ninja -C build-ci || exit 1
rm -rf build-ci/tests/figures
meson test -C build-ci --suite unit --suite $suite --print-errorlogs || fail=1

# libFuzzer run of every target (clang)
if command -v clang >/dev/null; then
  CC=clang meson setup build-fuzz --wipe -Dfuzzers=true -Dfuzz_seconds=$fuzz_seconds >/dev/null 2>&1 ||
    CC=clang meson setup build-fuzz -Dfuzzers=true -Dfuzz_seconds=$fuzz_seconds >/dev/null || fail=1
  ninja -C build-fuzz >/dev/null && meson test -C build-fuzz --suite fuzz --print-errorlogs || fail=1
fi

# the hardening figures the integration run measured, added up over the
# per-file pytest sessions (tests/integration/conftest.py)
python3 - build-ci/tests/figures/$suite <<'PY' || fail=1
import glob, json, os, sys
values, zero = {}, set()
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    d = json.load(open(path))
    for k, v in d["values"].items():
        values[k] = values.get(k, 0) + v
    zero.update(d["must_be_zero"])
if values:
    print("figures:")
    for k in sorted(values):
        print(f"  {k}: {values[k]}" + (" (must be 0)" if k in zero else ""))
sys.exit(1 if any(values.get(k, 0) for k in zero) else 0)
PY

# totals from meson's JSON logs
python3 - build-ci/meson-logs/testlog.json build-fuzz/meson-logs/testlog.json <<'PY'
import json, os, re, sys
passed = failed = 0
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    for line in open(path):
        t = json.loads(line)
        out = t.get("stdout", "") or ""
        m = re.search(r"(\d+) passed", out)
        if t["name"].startswith(("integration/", "slow/", "smoke-")) and m:
            passed += int(m.group(1))
            f = re.search(r"(\d+) failed", out)
            failed += int(f.group(1)) if f else (0 if t["result"] == "OK" else 1)
            continue
        subs = re.findall(r"^ok \d+", out, re.M)
        bad = re.findall(r"^not ok \d+", out, re.M)
        if subs or bad:
            passed += len(subs); failed += len(bad)
        elif t["result"] == "OK":
            passed += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed")
PY
exit $fail
