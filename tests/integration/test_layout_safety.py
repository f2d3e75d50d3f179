"""Crash safety, full disks and concurrent writers on OCI layouts."""
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import read_index, wait_for_state
from imagegen import make_image

KILLS = int(os.environ.get("KILN_TEST_KILLS", "20"))
ROUNDS = int(os.environ.get("KILN_TEST_ROUNDS", "50"))


@pytest.fixture
def big_image(tmp_path):
    rnd = random.Random(7)
    layers = [{f"data/{i}.bin": rnd.randbytes(12 * 1024 * 1024)} for i in range(4)]
    src = tmp_path / "src"
    make_image(src, "big", layers, compression="none")
    return src


def test_sigkill_during_copy_never_corrupts(kiln, big_image, tmp_path, figures):
    dst = tmp_path / "dst"
    rnd = random.Random(11)
    killed = 0
    for i in range(KILLS):
        p = subprocess.Popen([kiln.path, "copy", "-q", f"oci:{big_image}:big", f"oci:{dst}:v1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _kill_point(p, i, rnd, 0.06, [dst])
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait()
        if dst.exists() and (dst / "oci-layout").exists():
            f = kiln.run("fsck", f"oci:{dst}", check=False)
            figures.zero("layout kills / corrupt layouts", 0 if f.returncode == 0 else 1)
            assert f.returncode == 0, f"after kill {i}: {f.stdout}"
        # start over now and then, so kills land early in a copy too
        if i % 5 == 4:
            subprocess.run(["rm", "-rf", str(dst)])
    figures.count("layout kills", killed)
    assert killed > 0
    want = kiln.run("digest", f"oci:{big_image}:big").stdout.strip()
    assert kiln.run("copy", "-q", f"oci:{big_image}:big", f"oci:{dst}:v1").stdout.strip() == want
    assert kiln.run("fsck", f"oci:{dst}").returncode == 0


def test_sigkill_during_archive_write_leaves_no_archive(kiln, big_image, tmp_path):
    target = tmp_path / "out.tar"
    p = subprocess.Popen([kiln.path, "copy", "-q", f"oci:{big_image}:big", f"oci-archive:{target}:v1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # killed while the archive is being written beside its name
    assert wait_for_state(p, lambda: any(tmp_path.glob("out.tar.tmp-*"))), \
        "the copy finished before the archive was started"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not target.exists()


def test_full_disk_is_a_clean_error(kiln, big_image, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = f"""
set -u
mount -t tmpfs -o size=20m tmpfs {mnt} || exit 99
{kiln.path} copy -q oci:{big_image}:big oci:{mnt}/dst:v1 2>{tmp_path}/err
echo "rc=$?"
find {mnt}/dst -name '.tmp-*' | wc -l
{kiln.path} fsck oci:{mnt}/dst >/dev/null; echo "fsck=$?"
python3 -c "import json;print(len(json.load(open('{mnt}/dst/index.json'))['manifests']))"
"""
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[0] not in ("rc=0",) and lines[0].startswith("rc=")
    assert lines[1] == "0", "temp files left behind"
    assert lines[2] == "fsck=0"
    assert lines[3] == "0", "a tag points at an incomplete image"
    err = (tmp_path / "err").read_text()
    assert err.count("kiln: error:") == 1 and "No space left on device" in err


def test_parallel_writers_lose_no_tag(kiln, tmp_path, figures):
    src = tmp_path / "src"
    make_image(src, "x", [{"a": b"1"}])
    dst = tmp_path / "dst"
    kiln.run("copy", "-q", f"oci:{src}:x", f"oci:{dst}:seed")
    script = "\n".join(
        f"(for r in $(seq 1 {ROUNDS}); do {kiln.path} copy -q oci:{src}:x oci:{dst}:w{w}-r$r >/dev/null || exit 1; done) &"
        for w in range(8)) + "\nfail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail\n"
    subprocess.run(["bash", "-c", script], check=True, timeout=600)
    tags = {m["annotations"]["org.opencontainers.image.ref.name"] for m in read_index(dst)["manifests"]}
    want = {f"w{w}-r{r}" for w in range(8) for r in range(1, ROUNDS + 1)} | {"seed"}
    lost = want - tags
    figures.count("layout writers x rounds", 8 * ROUNDS)
    figures.zero("layout writers x rounds / lost tags", len(lost))
    assert not lost
    assert kiln.run("fsck", f"oci:{dst}").returncode == 0


def _writing(roots):
    return lambda: any(True for r in roots for _ in r.rglob(".tmp-*"))


def _kill_point(p, i, rnd, span, roots):
    """The first kill waits until kiln is writing (a temp file under roots),
    so at least one kill lands mid-write on a fast or a busy machine alike;
    the others come at random times, anywhere (what they check holds at any
    time, only the spread of kill points varies)."""
    if i == 0:
        assert wait_for_state(p, _writing(roots)), "kiln finished before it wrote anything"
    else:
        time.sleep(rnd.uniform(0.0, span))


def _kill_loop(kiln, argv, dst, kills, rnd, figures, label, span, between=None, roots=None):
    killed = 0
    for i in range(kills):
        if between:
            between(i)
        p = subprocess.Popen([kiln.path, *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        _kill_point(p, i, rnd, span, roots or [dst])
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait()
        if dst.exists() and (dst / "oci-layout").exists():
            f = kiln.run("fsck", "--deep", f"oci:{dst}", check=False)
            figures.zero(f"{label} kills / corrupt layouts", 0 if f.returncode == 0 else 1)
            assert f.returncode == 0, f"after kill {i}: {f.stdout}"
    figures.count(f"{label} kills", killed)
    return killed


def test_sigkill_during_pull_never_corrupts(kiln, big_image, registry, tmp_path, figures):
    ref = f"{registry.host}/kills/pull:v1"
    kiln.run("copy", "-q", f"oci:{big_image}:big", ref)
    dst = tmp_path / "dst"
    killed = _kill_loop(kiln, ["copy", "-q", ref, f"oci:{dst}:v1"], dst, max(KILLS // 2, 5),
                        random.Random(13), figures, "pull", 0.08)
    assert killed > 0
    want = kiln.run("digest", ref).stdout.strip()
    assert kiln.run("copy", "-q", ref, f"oci:{dst}:v1").stdout.strip() == want
    assert kiln.run("fsck", "--deep", f"oci:{dst}").returncode == 0


def test_sigkill_during_build_never_corrupts(kiln, registry_factory, tmp_path, figures):
    import json
    from linnaeus_standins import build_args, make_inputs, push_base
    reg = registry_factory()
    push_base(kiln, reg, tmp_path)
    sets = make_inputs(tmp_path, "pre-ampere")
    dst = tmp_path / "out"
    argv = build_args(sets, reg, "--arch", "pre-ampere", "--output", f"oci:{dst}",
                      "--cache", tmp_path / "cache", "-q")
    import shutil

    def cold_now_and_then(i):
        # kills land in staging and compression too, not only in the copy
        if i % 3 == 0:
            shutil.rmtree(tmp_path / "cache", ignore_errors=True)

    killed = _kill_loop(kiln, argv, dst, max(KILLS // 2, 5), random.Random(17), figures,
                        "build", 0.25, between=cold_now_and_then, roots=[dst, tmp_path / "cache"])
    assert killed > 0
    # the cache a killed build left is still good: the re-run completes, and matches a clean build
    res = json.loads(kiln.run(*argv[:-1], "--json").stdout)
    clean = json.loads(kiln.run(*build_args(sets, reg, "--arch", "pre-ampere", "--output",
                                            f"oci:{tmp_path}/clean", "--cache", tmp_path / "c2",
                                            "--json")).stdout)
    assert res["digest"] == clean["digest"]
    assert kiln.run("fsck", "--deep", f"oci:{dst}").returncode == 0


# ---- special files in a layout: a FIFO (or a device) must not hang any verb ----

def _fifo_layout(tmp_path, which):
    """A one-image layout whose `which` file is replaced by a FIFO; returns
    (layout, the name the error must give)."""
    import json
    from layers_helpers import TAR, make_layout, tar_bytes
    lay = tmp_path / "lay"
    make_layout(lay, [(tar_bytes([{"name": "f", "data": b"x"}]), TAR)])
    man_desc = json.loads((lay / "index.json").read_text())["manifests"][0]
    man_hex = man_desc["digest"].split(":")[1]
    man = json.loads((lay / "blobs" / "sha256" / man_hex).read_text())
    target = {
        "index.json": lay / "index.json",
        "oci-layout": lay / "oci-layout",
        "manifest": lay / "blobs" / "sha256" / man_hex,
        "config": lay / "blobs" / "sha256" / man["config"]["digest"].split(":")[1],
        "layer": lay / "blobs" / "sha256" / man["layers"][0]["digest"].split(":")[1],
    }[which]
    name = target.name
    target.unlink()
    os.mkfifo(target)
    return lay, name


FIFO_VERBS = {
    "fsck": lambda lay, tmp: ["fsck", f"oci:{lay}"],
    "inspect": lambda lay, tmp: ["inspect", f"oci:{lay}:v1"],
    "copy": lambda lay, tmp: ["copy", "-q", f"oci:{lay}:v1", f"oci:{tmp / 'out'}:v1"],
    "diff": lambda lay, tmp: ["diff", f"oci:{lay}:v1", f"oci:{tmp / 'good'}:v1"],
    "unpack": lambda lay, tmp: ["unpack", "--rootless", f"oci:{lay}:v1", tmp / "root"],
}
# inspect and diff read no layer
FIFO_CASES = [(w, v) for w in ("index.json", "oci-layout", "manifest", "config", "layer")
              for v in FIFO_VERBS if not (w == "layer" and v in ("inspect", "diff"))]


@pytest.mark.parametrize("which,verb", FIFO_CASES, ids=[f"{w}-{v}" for w, v in FIFO_CASES])
def test_fifo_in_a_layout_fails_promptly_naming_it(kiln, tmp_path, which, verb):
    from layers_helpers import TAR, make_layout, tar_bytes
    make_layout(tmp_path / "good", [(tar_bytes([{"name": "g", "data": b"y"}]), TAR)])
    lay, name = _fifo_layout(tmp_path, which)
    # the timeout only turns a hang into a failure; it measures nothing
    p = subprocess.run([kiln.path, *map(str, FIFO_VERBS[verb](lay, tmp_path))],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0, (p.stdout, p.stderr)
    out = p.stdout + p.stderr
    bad = [l for l in out.splitlines() if "not a regular file" in l]
    assert len(bad) == 1 and name in bad[0], out
    if verb == "fsck" and p.returncode == 1:  # problems, one a line
        assert bad[0].startswith("problem:"), out
    else:
        errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
        assert errs == bad, p.stderr
    out_index = tmp_path / "out" / "index.json"
    assert not out_index.exists() or "ref.name" not in out_index.read_text()
