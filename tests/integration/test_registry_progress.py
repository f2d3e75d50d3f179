"""What kiln copy and kiln mirror show while they run: per-blob lines redrawn
on a terminal (bytes, rate, ETA), one line per event otherwise or with
--progress=plain, nothing with --quiet, and the --json result."""
import json
import os
import pty
import re
import select
import subprocess

import imagegen


def _image(tmp_path, name="lay", n=3, size=3 * 1024 * 1024):
    lay = tmp_path / name
    # random bytes: the layers do not shrink, so a copy takes a few reads
    layers = [{f"f{i}.bin": os.urandom(size)} for i in range(n)]
    imagegen.make_image(lay, "v1", layers)
    return lay


def _blobs(lay):
    m = json.loads((lay / "index.json").read_text())["manifests"][0]["digest"]
    man = json.loads((lay / "blobs/sha256" / m.split(":")[1]).read_bytes())
    return [man["config"]] + man["layers"]


def _run_in_pty(argv, env=None):
    """Runs argv with stdout and stderr on a pseudo terminal; returns (rc, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        e = dict(os.environ)
        e.update(env or {})
        e["TERM"] = "xterm"
        os.execvpe(argv[0], argv, e)
    out = b""
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_plain_progress_one_line_per_event(kiln, registry, tmp_path):
    lay = _image(tmp_path)
    p = kiln.run("copy", f"oci:{lay}:v1", registry.ref("prog/plain", "v1"))
    lines = p.stderr.splitlines()
    blobs = _blobs(lay)
    for b in blobs:
        assert any(l.startswith(f"copying {b['digest']} (") for l in lines), p.stderr
        assert any(re.match(rf"copied {b['digest']} \(.*, .*/s\)$", l) for l in lines), p.stderr
    assert "\x1b[" not in p.stderr  # not a terminal: no escape sequences
    # again: every blob is there
    p = kiln.run("copy", "--progress=plain", f"oci:{lay}:v1", registry.ref("prog/plain", "v1"))
    assert sorted(l.split()[1] for l in p.stderr.splitlines()) == sorted(b["digest"] for b in blobs)
    assert all(l.startswith("exists ") for l in p.stderr.splitlines())


# The progress clock moves 100 ms per reading (the redraw interval), so
# every read of a blob redraws it with a rate and an ETA however fast or slow
# the machine is: what is shown does not depend on timing.
STEP_CLOCK = {"KILN_TEST_CLOCK_STEP_MS": "100"}


def test_tty_progress_redraws_per_blob_with_rate_and_eta(kiln, registry, tmp_path):
    lay = _image(tmp_path, n=2, size=24 * 1024 * 1024)
    rc, out = _run_in_pty([kiln.path, "copy", "--jobs", "2", f"oci:{lay}:v1",
                           registry.ref("prog/tty", "v1")], env=STEP_CLOCK)
    assert rc == 0, out
    assert "\x1b[2K" in out and "\x1b[J" in out  # lines redrawn in place
    shown = re.findall(r"\x1b\[2K(sha256:[0-9a-f]{12})  ([\d.]+ [kMG]?B) / ([\d.]+ [kMG]?B)  "
                       r"([\d.]+ [kMG]?B/s|-)(  ETA \d+s)?", out)
    layers = [b for b in _blobs(lay) if b["size"] > 1024 * 1024]
    for b in layers:
        mine = [s for s in shown if s[0] == b["digest"][:19]]
        assert mine, out[-2000:]
        assert any(s[4] for s in mine), "no ETA while it was being sent"
        assert any(re.search(rf"copied {b['digest']} \(", l) for l in out.splitlines())
    # the digest printed at the end, after the block was cleared
    assert re.search(r"sha256:[0-9a-f]{64}\r?\n?$", out.strip())
    # --progress=plain on a terminal: no redrawing
    rc, out = _run_in_pty([kiln.path, "copy", "--progress=plain", f"oci:{lay}:v1",
                           registry.ref("prog/tty2", "v1")])
    assert rc == 0 and "\x1b[" not in out and "copying sha256:" in out, out


def test_quiet_and_json_print_no_progress(kiln, registry, tmp_path):
    lay = _image(tmp_path, n=2)
    p = kiln.run("copy", "--quiet", f"oci:{lay}:v1", registry.ref("prog/q", "v1"))
    assert p.stderr == "" and p.stdout.startswith("sha256:")
    rc, out = _run_in_pty([kiln.path, "copy", "--json", f"oci:{lay}:v1",
                           registry.ref("prog/j", "v1")])
    assert rc == 0 and "\x1b[" not in out
    res = json.loads(out.strip())
    blobs = _blobs(lay)
    assert res["tags"] == ["v1"]
    assert res["blobsCopied"] == len(blobs) and res["blobsMounted"] == 0
    assert res["bytesSent"] == sum(b["size"] for b in blobs) == res["bytesCopied"]


def test_json_counts_mounted_blobs_and_plain_says_mounted(kiln, registry, tmp_path):
    lay = _image(tmp_path, n=2)
    kiln.run("copy", f"oci:{lay}:v1", registry.ref("prog/src", "v1"))
    res = json.loads(kiln.run("copy", "--json", registry.ref("prog/src", "v1"),
                              registry.ref("prog/dst", "v2")).stdout)
    n = len(_blobs(lay))
    assert (res["blobsMounted"], res["blobsCopied"], res["bytesSent"]) == (n, 0, 0), res
    assert res["tags"] == ["v2"]
    p = kiln.run("copy", registry.ref("prog/src", "v1"), registry.ref("prog/dst3", "v1"))
    mounted = [l for l in p.stderr.splitlines() if l.startswith("mounted ")]
    assert len(mounted) == n and all(l.endswith(" from prog/src") for l in mounted), p.stderr


def test_mirror_progress_and_summary(kiln, registry, registry_factory, tmp_path):
    other = registry_factory()
    lay = _image(tmp_path, n=1)
    kiln.run("copy", f"oci:{lay}:v1", registry.ref("mir/app", "v1"))
    lst = tmp_path / "list"
    lst.write_text(f"{registry.ref('mir/app', 'v1')}\n{registry.ref('mir/missing', 'v1')}\n")
    p = kiln.run("mirror", str(lst), "--to", f"{other.host}/m", check=False)
    assert p.returncode != 0
    assert "copying sha256:" in p.stderr and "mirrored 1 of 2 images" in p.stderr, p.stderr
    out = json.loads(kiln.run("mirror", "--json", str(lst), "--to", f"{other.host}/m2",
                              check=False).stdout)
    assert out[0]["tags"] == ["v1"] and out[0]["bytesSent"] > 0 and out[0]["blobsMounted"] == 0
    q = kiln.run("mirror", "--quiet", str(lst), "--to", f"{other.host}/m3", check=False)
    assert "copying" not in q.stderr and "mirrored" not in q.stderr
