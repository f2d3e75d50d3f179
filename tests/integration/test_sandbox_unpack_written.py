"""Layers unpacked for the sandbox while they are written: a layer the
build writes itself, with a layer made in the image above it, is in
CACHE/rootfs/<diffID hex> when the write ends, so the step above opens no
blob of it; the directory is what unpacking the blob makes, and the image
is the same.

The base is the real Debian root filesystem of test_sandbox.py.  Host build
steps between the layers take the cache's blobs away while the layers above
are made (and put them back at the end): a step above that had to unpack a
blob would fail (the build takes its layers one at a time for that).
The layers of the other sandbox tests and of test_recipes_configure.py and
test_linnaeus_image.py are unpacked the same way while they are written,
several at once."""
import hashlib
import json
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile

import pytest

ROOTFS = pathlib.Path(os.environ.get("KILN_TEST_ROOTFS_DIR", "/var/cache/kiln-test")) / "bookworm-gcc.tar"


@pytest.fixture(scope="module")
def shared():
    d = pathlib.Path(tempfile.mkdtemp(prefix="kiln-written-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def debian(kiln, shared):
    assert ROOTFS.is_file(), f"{ROOTFS} is missing: run scripts/setup.sh (it makes it with mmdebstrap)"
    lay = shared / "deb"
    kiln.run("append", "scratch", "--layer", f"{ROOTFS}:/", "-t", f"oci:{lay}:deb",
             "--cache", shared / "import-cache", env={"SOURCE_DATE_EPOCH": "0"})
    return f"oci:{lay}:deb"


def hide(cache, stash):
    """A host step that moves every blob of the cache's layout to stash."""
    blobs = cache / "layout" / "blobs" / "sha256"
    return ("mkdir -p {s} && for b in {b}/*; do [ -e \"$b\" ] && mv \"$b\" {s}/; done;"
            " echo hidden > \"$KILN_OUT/hidden\"").format(s=stash, b=blobs)


def world(d, base, cache):
    """files (app) -> host step hiding the blobs -> run (use) -> host step
    hiding them again -> run (check, over app, hide1 and use) -> host step
    putting them all back."""
    src = d / "src"
    (src / "lib").mkdir(parents=True, exist_ok=True)
    (src / "lib" / "data.bin").write_bytes(hashlib.sha256(b"x").digest() * 100000)  # 3.2 MB
    (src / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (src / "tool.sh").chmod(0o755)
    (src / "secret").write_text("s\n")
    (src / "secret").chmod(0o600)
    os.symlink("lib/data.bin", src / "link")
    stash = d / "stash"
    blobs = cache / "layout" / "blobs" / "sha256"
    restore = (f"for b in {stash}/*; do mv \"$b\" {blobs}/; done; echo back > \"$KILN_OUT/back\"")
    check = ("test -x /opt/app/tool.sh && cmp /opt/app/lib/data.bin /opt/app/link"
             " && cat /opt/hide1/hidden /etc/used > /etc/checked")
    doc = {"recipe": 1, "name": "written", "base": base,
           "layers": [
               {"name": "app", "kind": "tree", "src": "src", "dest": "/opt/app"},
               {"name": "hide1", "kind": "build", "command": ["sh", "-c", hide(cache, stash)],
                "install": "tree", "path": "/opt/hide1"},
               {"name": "use", "kind": "run",
                "command": ["sh", "-c", "sha256sum /opt/app/lib/data.bin > /etc/used"]},
               {"name": "hide2", "kind": "build", "command": ["sh", "-c", hide(cache, stash)],
                "install": "tree", "path": "/opt/hide2"},
               {"name": "check", "kind": "run", "command": ["sh", "-c", check]},
               {"name": "restore", "kind": "build", "command": ["sh", "-c", restore],
                "install": "tree", "path": "/opt/restore"}],
           "tag": {"repository": "example.invalid/written", "tag": "v1"}}
    (d / "r.json").write_text(json.dumps(doc))
    return d / "r.json"


def build(kiln, recipe, out, cache, jobs):
    p = subprocess.run([kiln.path, "build", str(recipe), "--output", f"oci:{out}", "--cache",
                        str(cache), "--json", "--jobs", str(jobs)], capture_output=True, text=True,
                       env=dict(os.environ, SOURCE_DATE_EPOCH="0"), timeout=900)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), p.stderr


def tree(top):
    """Every entry under top: type, mode, size, content digest, link target,
    device numbers, xattrs, hardlink group; the mtime of all but
    directories."""
    out, inodes = {".": oct(os.lstat(top).st_mode)}, {}
    for dirpath, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(dirs + files):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            e = [oct(st.st_mode)]
            if stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1 and st.st_ino in inodes:
                    e.append("link " + inodes[st.st_ino])
                else:
                    inodes[st.st_ino] = rel
                    with open(p, "rb") as f:
                        e.append(hashlib.sha256(f.read()).hexdigest())
                e += [st.st_size, st.st_mtime_ns]
            elif stat.S_ISLNK(st.st_mode):
                e += [os.readlink(p), st.st_mtime_ns]
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e.append((os.major(st.st_rdev), os.minor(st.st_rdev)))
            e.append(sorted((x, os.getxattr(p, x, follow_symlinks=False))
                            for x in os.listxattr(p, follow_symlinks=False)))
            out[rel] = e
    return out


def diff_ids(layout, tag="v1"):
    idx = json.loads((layout / "index.json").read_text())
    man = [m for m in idx["manifests"]
           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]
    m = json.loads((layout / "blobs/sha256" / man["digest"].split(":")[1]).read_text())
    cfg = json.loads((layout / "blobs/sha256" / m["config"]["digest"].split(":")[1]).read_text())
    return cfg["rootfs"]["diff_ids"]


def test_layers_are_unpacked_as_written_and_the_same_as_from_their_blobs(kiln, debian, shared):
    d = shared / "w"
    d.mkdir()
    cache = d / "cache"
    r = world(d, debian, cache)
    # one layer at a time: each host step moves the blobs of the layers
    # below it, which must be written by then
    res, err = build(kiln, r, d / "out", cache, jobs=1)
    # the steps above ran with every blob of the recipe's layers hidden
    assert [l["state"] for l in res["layers"]] == ["built"] * 6, res
    assert not list((d / "stash").iterdir())          # all put back
    assert "not unpacked while written" not in err, err
    rootfs = cache / "rootfs"
    assert not [p.name for p in rootfs.iterdir() if p.name.startswith(".tmp-")]
    ids = diff_ids(d / "out")
    # app, hide1, use, hide2: each written below a layer made in the image;
    # check and restore: nothing above them runs in the image
    mine = ids[1:]
    made = {i: (rootfs / i.split(":")[1]).is_dir() for i in mine}
    assert [made[i] for i in mine] == [True, True, True, True, False, False], made
    written = {i: tree(rootfs / i.split(":")[1]) for i in mine[:4]}
    assert any(k.endswith("data.bin") for k in written[mine[0]])  # the walk sees the files
    assert "etc/used" in written[mine[2]]

    # the same build, the steps above over directories unpacked from the
    # blobs: app, hide1, use and hide2 are cache hits (never tee'd), check
    # runs again; its layer and the image are the same
    shutil.rmtree(rootfs)
    entries = cache / "entries"
    check_digest = res["layers"][4]["digest"]
    dropped = [e for e in entries.glob("*.json")
               if json.loads(e.read_text()).get("digest") == check_digest]
    assert dropped  # the recipe's key and the layer's own
    for e in dropped:
        e.unlink()
    again, err = build(kiln, r, d / "out2", cache, jobs=4)
    assert [l["state"] for l in again["layers"]] == ["cached"] * 4 + ["built", "cached"], again
    assert again["layers"][4]["digest"] == check_digest
    assert again["digest"] == res["digest"]
    for i in mine[:4]:
        assert tree(rootfs / i.split(":")[1]) == written[i], i
    # what a build killed while writing would leave (a directory of the tee
    # not yet named by its diffID) is never used, and prune removes it
    left = rootfs / ".tmp-written-killed"
    (left / "usr").mkdir(parents=True)
    kiln.run("cache", "prune", "--local", "--cache", cache)
    assert not rootfs.exists()


def test_the_base_is_unpacked_while_the_layers_below_the_first_step_build(kiln, debian, shared):
    """The base's layers go into CACHE/rootfs in the background as soon as a
    layer below a step made in the image is built: the host step below
    waits for the base's directory to appear (it would wait in vain if the
    base were unpacked only when the step above starts); a build where
    every layer is cached unpacks nothing."""
    d = shared / "prefetch"
    d.mkdir()
    cache = d / "cache"
    base_dir = cache / "rootfs" / diff_ids(shared / "deb", "deb")[0].split(":")[1]
    # a safety net against a hang, not a timing: the directory comes long before
    wait = (f"i=0; while [ ! -d {base_dir} ] && [ $i -lt 6000 ]; do sleep 0.1; i=$((i+1)); done;"
            f" test -d {base_dir} && echo seen > \"$KILN_OUT/seen\"")
    doc = {"recipe": 1, "name": "prefetch", "base": debian,
           "layers": [
               {"name": "waits", "kind": "build", "command": ["sh", "-c", wait],
                "install": "tree", "path": "/opt/waits"},
               {"name": "step", "kind": "run", "command": ["sh", "-c", "cat /opt/waits/seen > /etc/step"]}],
           "tag": {"repository": "example.invalid/prefetch", "tag": "v1"}}
    r = d / "r.json"
    r.write_text(json.dumps(doc))
    res, err = build(kiln, r, d / "out", cache, jobs=1)
    assert [l["state"] for l in res["layers"]] == ["built", "built"], err
    # everything cached: the base is not even read
    shutil.rmtree(cache / "rootfs")
    again, _ = build(kiln, r, d / "out2", cache, jobs=1)
    assert [l["state"] for l in again["layers"]] == ["cached", "cached"]
    assert again["digest"] == res["digest"]
    assert not (cache / "rootfs").exists() or not any((cache / "rootfs").iterdir())
