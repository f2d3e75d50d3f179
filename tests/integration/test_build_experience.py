"""kiln build as people use it: any place as the base (scratch, a layout, an
archive, a registry), build steps' output and logs, the exit code of a
failed step."""
import json
import os
import pty
import re
import select

from conftest import blob_path, read_index, run
from imagegen import make_image

STEP_FAILED = 11  # docs/kiln.1, EXIT STATUS


def recipe(tmp_path, base, layers=None, name="r.json", annotations=None):
    doc = {"recipe": 1, "name": "app", "base": base,
           "layers": layers or [
               {"name": "tools", "kind": "files",
                "files": [{"src": str(tmp_path / "tool.sh"), "dest": "/usr/local/bin/tool",
                           "mode": "0755"}]}],
           "config": {"cmd": ["/usr/local/bin/tool"]},
           "tag": {"repository": "example.invalid/app", "tag": "v1"}}
    if annotations:
        doc["annotations"] = annotations
    (tmp_path / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2))
    return path


def manifest_of(layout, digest):
    return json.loads(blob_path(layout, digest).read_text())


def build(kiln, r, out, cache, *args):
    p = kiln.run("build", r, "--output", f"oci:{out}", "--cache", cache, "--json", *args)
    return json.loads(p.stdout)


# ---- any place as the base ----

def test_scratch_base_has_no_base_layers_and_no_base_annotations(kiln, tmp_path):
    r = recipe(tmp_path, "scratch")
    out = tmp_path / "out"
    res = build(kiln, r, out, tmp_path / "c")
    m = manifest_of(out, res["digest"])
    assert len(m["layers"]) == 1
    assert "org.opencontainers.image.base.name" not in m["annotations"]
    assert "org.opencontainers.image.base.digest" not in m["annotations"]
    cfg = json.loads(blob_path(out, m["config"]["digest"]).read_text())
    assert cfg["os"] == "linux" and cfg["rootfs"]["diff_ids"] and len(cfg["rootfs"]["diff_ids"]) == 1
    assert cfg["config"]["Cmd"] == ["/usr/local/bin/tool"]
    root = tmp_path / "root"
    kiln.run("unpack", f"oci:{out}:v1", root)
    assert sorted(p.name for p in root.iterdir()) == ["usr"]
    # the same again, and umoci reads it
    assert build(kiln, r, tmp_path / "out2", tmp_path / "c2")["digest"] == res["digest"]
    run("umoci", "unpack", "--rootless", "--image", f"{out}:v1", tmp_path / "bundle")
    assert (tmp_path / "bundle" / "rootfs" / "usr/local/bin/tool").exists()


def make_base(tmp_path):
    base = tmp_path / "base"
    make_image(base, "b", [{"etc/": ("dir",), "etc/os-release": b"ID=standin\n"}])
    return base


def test_base_from_a_layout_or_archive_builds_the_registry_image(kiln, registry_factory,
                                                                  tmp_path):
    base = make_base(tmp_path)
    arch = tmp_path / "base.tar"
    kiln.run("copy", "-q", f"oci:{base}:b", f"oci-archive:{arch}:b")
    reg = registry_factory()
    ref = f"{reg.host}/standin/base:1"
    kiln.run("copy", "-q", f"oci:{base}:b", ref)
    r = recipe(tmp_path, ref)
    online = build(kiln, r, tmp_path / "out-online", tmp_path / "c-online")
    for name, place in [("layout", f"oci:{base}:b"), ("archive", f"oci-archive:{arch}:b")]:
        out = tmp_path / f"out-{name}"
        res = build(kiln, r, out, tmp_path / f"c-{name}", "--base-from", place)
        assert res["digest"] == online["digest"], name
        # the base's layer is in the output: the layout stands alone
        kiln.run("fsck", f"oci:{out}", "--deep")
        m = manifest_of(out, res["digest"])
        assert m["annotations"]["org.opencontainers.image.base.name"] == ref
    # a locked build checks the bytes it was given against the lock
    kiln.run("lock", r, "--cache", tmp_path / "c-online")
    other = tmp_path / "other"
    make_image(other, "b", [{"etc/": ("dir",), "etc/os-release": b"ID=other\n"}])
    p, line = kiln.fails("build", r, "--output", f"oci:{tmp_path}/o3", "--cache",
                         tmp_path / "c-online", "--base-from", f"oci:{other}:b", code=4)
    assert "run kiln lock" in line
    assert not (tmp_path / "o3" / "index.json").exists()


def test_local_base_in_the_recipe_names_no_builder_path(kiln, registry_factory, tmp_path):
    base = make_base(tmp_path)
    arch = tmp_path / "base.tar"
    kiln.run("copy", "-q", f"oci:{base}:b", f"oci-archive:{arch}:b")
    reg = registry_factory()
    ref = f"{reg.host}/standin/base:1"
    kiln.run("copy", "-q", f"oci:{base}:b", ref)
    seen = {}
    for name, place in [("layout", f"oci:{base}:b"), ("archive", f"oci-archive:{arch}:b"),
                        ("registry", ref)]:
        out = tmp_path / f"out-{name}"
        r = recipe(tmp_path, place, name=f"{name}.json")
        res = build(kiln, r, out, tmp_path / f"c-{name}")
        m = manifest_of(out, res["digest"])
        seen[name] = (m["config"]["digest"], [l["digest"] for l in m["layers"]])
        ann = m["annotations"]
        top = read_index(base)["manifests"][0]["digest"]
        assert ann["org.opencontainers.image.base.digest"] == top
        # a registry reference is a name; a builder's path is not
        if name == "registry":
            assert ann["org.opencontainers.image.base.name"] == ref
        else:
            assert "org.opencontainers.image.base.name" not in ann
            assert str(tmp_path) not in json.dumps(m)
        assert len(seen[name][1]) == 2
        kiln.run("fsck", f"oci:{out}", "--deep")
    # the same config and layers; only the recipe (its digest) and base.name differ
    assert seen["layout"] == seen["archive"] == seen["registry"]


def test_archive_base_builds_with_no_registry_at_all(kiln, tmp_path):
    base = make_base(tmp_path)
    arch = tmp_path / "base.tar"
    kiln.run("copy", "-q", f"oci:{base}:b", f"oci-archive:{arch}:b")
    # the recipe's base names a registry that does not exist
    r = recipe(tmp_path, "registry.invalid/nvidia/cuda:12.8")
    out = tmp_path / "out"
    res = build(kiln, r, out, tmp_path / "c", "--base-from", f"oci-archive:{arch}:b")
    root = tmp_path / "root"
    kiln.run("unpack", f"oci:{out}:v1", root)
    assert (root / "etc/os-release").read_text() == "ID=standin\n"
    assert (root / "usr/local/bin/tool").exists()
    assert res["layersBuilt"] == 1
    # the same through the recipe's own base variable
    doc = json.loads(r.read_text())
    doc["variables"] = {"base_image": {"default": "registry.invalid/nvidia/cuda:12.8"}}
    doc["base"] = "${base_image}"
    r.write_text(json.dumps(doc))
    res2 = build(kiln, r, tmp_path / "out2", tmp_path / "c",
                 "--set", f"base_image=oci-archive:{arch}:b")
    kiln.run("fsck", f"oci:{tmp_path / 'out2'}", "--deep")
    assert res2["layersBuilt"] == 0


def test_lock_pins_a_local_base_by_digest(kiln, tmp_path):
    base = make_base(tmp_path)
    r = recipe(tmp_path, f"oci:{base}:b")
    kiln.run("lock", r, "--cache", tmp_path / "c")
    lock = json.loads((tmp_path / "r.lock.json").read_text())
    top = read_index(base)["manifests"][0]["digest"]
    assert lock["base"] == {"ref": f"oci:{base}:b", "digest": top}
    build(kiln, r, tmp_path / "out", tmp_path / "c", "--locked")
    # the tag now names another image: the locked build refuses it
    make_image(base, "b", [{"etc/": ("dir",), "etc/os-release": b"ID=other\n"}])
    p, line = kiln.fails("build", r, "--output", f"oci:{tmp_path}/out2", "--cache",
                         tmp_path / "c", "--locked", code=4)
    assert top in line and "run kiln lock" in line
    assert not (tmp_path / "out2" / "index.json").exists()


def test_scratch_lock_and_bad_base_place(kiln, tmp_path):
    r = recipe(tmp_path, "scratch")
    kiln.run("lock", r, "--cache", tmp_path / "c")
    assert json.loads((tmp_path / "r.lock.json").read_text())["base"] == {"ref": "scratch"}
    build(kiln, r, tmp_path / "out", tmp_path / "c", "--locked")
    bad = recipe(tmp_path, "oci:", name="bad.json")
    p, line = kiln.fails("build", bad, "--output", f"oci:{tmp_path}/o", "--cache", tmp_path / "c")
    assert "line 4" in line and "invalid place 'oci:'" in line


# ---- build steps: output, logs, exit code ----

HUNDRED = ('for i in $(seq 1 100); do echo "line $i"; done; '
           'echo "the end" >&2; exit 3')


def step_recipe(tmp_path, script):
    return recipe(tmp_path, "scratch", layers=[
        {"name": "fa", "kind": "build", "command": ["sh", "-c", script], "inputs": []}])


def test_failed_step_shows_its_last_lines_and_keeps_its_log(kiln, tmp_path):
    r = step_recipe(tmp_path, HUNDRED)
    p, line = kiln.fails("build", r, "--output", f"oci:{tmp_path}/o", "--cache", tmp_path / "c",
                         "--quiet", code=STEP_FAILED)
    assert "'sh' exited with status 3: the end" in line and "fa" in line
    shown = [l for l in p.stderr.splitlines() if l.startswith("fa | ")]
    assert shown == [f"fa | line {i}" for i in range(82, 101)] + ["fa | the end"]
    m = re.search(r"the log of layer 'fa': (\S+)", p.stderr)
    assert m, p.stderr
    log = m.group(1).strip()
    text = open(log).read()
    assert text.splitlines() == [f"line {i}" for i in range(1, 101)] + ["the end"]
    assert log.startswith(str(tmp_path / "c"))
    # no image, no half layout
    assert not (tmp_path / "o" / "index.json").exists()


def test_plain_progress_streams_every_line_with_the_layer_name(kiln, tmp_path):
    r = step_recipe(tmp_path, 'echo out; echo err >&2; mkdir -p "$KILN_OUT/opt"; '
                              'echo x > "$KILN_OUT/opt/x"')
    p = kiln.run("build", r, "--output", f"oci:{tmp_path}/o", "--cache", tmp_path / "c",
                 "--progress", "plain")
    lines = [l for l in p.stderr.splitlines() if l.startswith("fa | ")]
    assert lines == ["fa | out", "fa | err"]
    # --quiet: nothing of the step; a cached step prints nothing either way
    r2 = step_recipe(tmp_path, "echo other")
    q = kiln.run("build", r2, "--output", f"oci:{tmp_path}/o2", "--cache", tmp_path / "c",
                 "--quiet")
    assert "fa | " not in q.stderr
    again = kiln.run("build", r, "--output", f"oci:{tmp_path}/o", "--cache", tmp_path / "c",
                     "--progress", "plain")
    assert "fa | " not in again.stderr
    bad = kiln.run("build", r, "--progress", "fancy", check=False)
    assert bad.returncode == 2 and "--progress takes auto, plain, tty or none" in bad.stderr


def test_step_logs_are_pruned_to_the_newest(kiln, tmp_path):
    logs = tmp_path / "c" / "logs"
    logs.mkdir(parents=True)
    for i in range(60):
        (logs / f"old{i:02d}-000000000000.log").write_text("x")
    r = step_recipe(tmp_path, 'echo new')
    kiln.run("build", r, "--output", f"oci:{tmp_path}/o", "--cache", tmp_path / "c", "--quiet")
    names = sorted(p.name for p in logs.iterdir())
    assert len(names) <= 51
    assert any(n.startswith("fa-") for n in names)
    assert (logs / [n for n in names if n.startswith("fa-")][0]).read_text() == "new\n"


def test_help_build_shows_examples(kiln):
    p = kiln.run("help", "build")
    text = p.stdout + p.stderr
    for needle in ["--arch hopper", "--source local", "oci-archive:", "--cache-repo",
                   "--dry-run"]:
        assert needle in text, needle


def test_json_reports_each_layer(kiln, tmp_path):
    r = recipe(tmp_path, "scratch", layers=[
        {"name": "tools", "kind": "files",
         "files": [{"src": str(tmp_path / "tool.sh"), "dest": "/usr/local/bin/tool"}]},
        {"name": "fa", "kind": "build", "command": ["sh", "-c", 'echo hi > "$KILN_OUT/f"'],
         "inputs": []}])
    first = build(kiln, r, tmp_path / "o", tmp_path / "c")
    assert [(l["name"], l["state"]) for l in first["layers"]] == [("tools", "built"),
                                                                   ("fa", "built")]
    m = manifest_of(tmp_path / "o", first["digest"])
    assert [l["digest"] for l in first["layers"]] == [l["digest"] for l in m["layers"]]
    assert [l["bytes"] for l in first["layers"]] == [l["size"] for l in m["layers"]]
    assert all(l["seconds"] >= 0 for l in first["layers"])
    again = build(kiln, r, tmp_path / "o", tmp_path / "c")
    assert [l["state"] for l in again["layers"]] == ["cached", "cached"]


# ---- the build on a terminal ----

def _read_until(fd, out, needle, limit=120):
    """Reads the pty until needle appears (a guard, not a timing assertion)."""
    while needle not in out:
        r, _, _ = select.select([fd], [], [], limit)
        assert r, f"no {needle!r} on the terminal: {out!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"kiln ended before {needle!r}: {out!r}"
        out += chunk
    return out


def test_tty_shows_each_layer_with_its_state_and_a_running_step_s_last_lines(kiln, tmp_path):
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    script = ('echo "compiling 1 of 2"; echo "compiling 2 of 2"; '
              f'read go < "{gate}"; echo "$go" > "$KILN_OUT/done"')
    r = recipe(tmp_path, "scratch", layers=[
        {"name": "tools", "kind": "files",
         "files": [{"src": str(tmp_path / "tool.sh"), "dest": "/usr/local/bin/tool"}]},
        {"name": "fa", "kind": "build", "command": ["sh", "-c", script], "inputs": []}])
    pid, fd = pty.fork()
    if pid == 0:
        env = dict(os.environ, TERM="xterm", KILN_TEST_CLOCK_STEP_MS="1000")
        os.execvpe(kiln.path, [kiln.path, "build", str(r), "--output", f"oci:{tmp_path}/o",
                               "--cache", str(tmp_path / "c"), "--jobs", "1"], env)
    out = b""
    try:
        # the step is running and blocked on the gate: its row and its lines show
        out = _read_until(fd, out, b"  | compiling 2 of 2")
        assert re.search(rb"\x1b\[2Kfa  building \d+s", out), out
        assert b"  | compiling 1 of 2" in out
        assert b"layer tools: built sha256:" in out       # a finished layer leaves a line
        with open(gate, "w") as g:
            g.write("go\n")
        while True:
            rr, _, _ = select.select([fd], [], [], 120)
            assert rr, out
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    except BaseException:
        os.kill(pid, 9)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, out
    text = out.decode(errors="replace")
    assert re.search(r"layer fa: built sha256:[0-9a-f]{64} \([\d.]+ k?B, [\d.]+s\)", text), text
    assert re.search(r"built 2 layers, 0 cached \(0 from the cache repository\); "
                     r"\d+ blobs copied, \d+ already there; [\d.]+s", text), text
    assert "\x1b[J" in text                                # redrawn in place
    assert "fa | " not in text                              # lines live under the row instead


def test_a_step_gets_no_descriptor_of_kiln_s(kiln, tmp_path):
    r = step_recipe(tmp_path, 'ls /proc/self/fd > "$KILN_OUT/fds"')
    kiln.run("build", r, "--output", f"oci:{tmp_path}/o", "--cache", tmp_path / "c")
    root = tmp_path / "root"
    kiln.run("unpack", f"oci:{tmp_path}/o:v1", root)
    # 0, 1, 2 and the descriptor ls opened for /proc/self/fd
    assert len((root / "fds").read_text().split()) <= 4, (root / "fds").read_text()


def test_a_local_source_says_what_its_ignore_rules_left_out(kiln, tmp_path):
    src = tmp_path / "checkout"
    (src / "build").mkdir(parents=True)
    (src / "build" / "big.o").write_text("x")
    (src / "app.py").write_text("print(1)\n")
    (src / "run.log").write_text("noise\n")
    (src / ".gitignore").write_text("/build\n*.log\n")
    r = recipe(tmp_path, "scratch", layers=[
        {"name": "src", "kind": "source", "from": "local", "local": str(src),
         "path": "/app"}])
    p = kiln.run("build", r, "--output", f"oci:{tmp_path}/o", "--cache", tmp_path / "c",
                 "--progress", "plain")
    line = [l for l in p.stderr.splitlines() if "left out by" in l]
    assert line == ["layer src: left out by .dockerignore, .gitignore and .git: "
                    "2 paths (build/, run.log)"], p.stderr
    root = tmp_path / "root"
    kiln.run("unpack", f"oci:{tmp_path}/o:v1", root)
    assert sorted(x.name for x in (root / "app").iterdir()) == [".gitignore", "app.py"]
