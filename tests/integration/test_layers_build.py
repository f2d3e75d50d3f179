"""kiln append: deterministic layers, compression, cache, interop with umoci."""
import gzip
import hashlib
import io
import json
import os
import pathlib
import re
import subprocess
import tarfile

import pytest

from conftest import run
from layers_helpers import blob, hardlink_groups, manifest_of, sha, snapshot

LONG = "l" * 180 + "/" + "n" * 200


def make_tree(root, reverse=False, owner=None, mtime=None):
    """The same content, created in a different order, owner and mtimes."""
    root = pathlib.Path(root)
    items = [
        ("dir", "etc", 0o755), ("file", "etc/hello", 0o644, b"hello\n"),
        ("dir", "empty", 0o700), ("dir", "bin", 0o755),
        ("file", "bin/tool", 0o4755, b"\x7fELF" + b"x" * 5000),
        ("file", "bin/sgid", 0o2750, b"sg"), ("dir", "tmp", 0o1777),
        ("sym", "bin/rel", "tool"), ("sym", "abs", "/etc/hello"),
        ("file", "data.bin", 0o600, os.urandom(0) + bytes(range(256)) * 8192),
        ("hard", "etc/hello2", "etc/hello"),
        ("dir", "ünïcødé", 0o755), ("file", "ünïcødé/ファイル", 0o644, b"utf8\n"),
        ("dir", "l" * 180, 0o755), ("file", LONG, 0o644, b"long\n"),
        ("file", "a-b", 0o644, b"dash\n"), ("dir", "a", 0o755), ("file", "a/b", 0o644, b"slash\n"),
    ]
    root.mkdir(parents=True)
    order = list(items)
    if reverse:
        # directories must exist first; everything else in reverse
        order = [i for i in items if i[0] == "dir"] + [i for i in reversed(items) if i[0] != "dir"]
        order = [i for i in order if i[0] != "hard"] + [i for i in order if i[0] == "hard"]
    for it in order:
        p = root / it[1]
        if it[0] == "dir":
            p.mkdir(exist_ok=True)
        elif it[0] == "file":
            p.write_bytes(it[3])
        elif it[0] == "sym":
            os.symlink(it[2], p)
        elif it[0] == "hard":
            os.link(root / it[2], p)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames + ["."]:
            p = os.path.join(dirpath, n)
            if owner:
                os.lchown(p, *owner)
            if mtime is not None:
                os.utime(p, (mtime, mtime), follow_symlinks=False)
    # after chown, which clears setuid/setgid
    for it in items:
        if it[0] in ("dir", "file"):
            os.chmod(root / it[1], it[2])
    return root


def append(kiln, tmp, src, name, *extra, env=None, umask=None):
    out = tmp / name
    args = ["append", "scratch", "--layer", f"{src}:/root", "-t", f"oci:{out}:v1",
            "--cache", tmp / f"cache-{name}", "-q", *extra]
    if umask is not None:
        p = subprocess.run(["sh", "-c", f'umask {umask:o}; exec "$@"', "sh", kiln.path, *map(str, args)],
                           capture_output=True, text=True, env={**os.environ, **(env or {})})
        assert p.returncode == 0, p.stderr
    else:
        kiln.run(*args, env=env)
    m = manifest_of(out)
    return out, m, m["layers"][-1]


@pytest.mark.parametrize("comp", ["gzip", "zstd", "none"])
def test_same_tree_gives_byte_identical_layers(kiln, tmp_path, comp):
    a = make_tree(tmp_path / "a", reverse=False, owner=(0, 0), mtime=1_000_000)
    b = make_tree(tmp_path / "b", reverse=True, owner=(1234, 5678), mtime=1_700_000_000)
    _, ma, la = append(kiln, tmp_path, a, "A", "--compression", comp, "--threads", "1", umask=0o022)
    _, mb, lb = append(kiln, tmp_path, b, "B", "--compression", comp, "--threads", "2", umask=0o077,
                       env={"TZ": "Asia/Kolkata", "HOSTNAME": "other", "LANG": "de_DE.UTF-8"})
    assert la["digest"] == lb["digest"]
    assert la["size"] == lb["size"]
    assert ma == mb  # configs (diffIDs, history) too


def test_layer_content_is_normalized(kiln, tmp_path):
    src = make_tree(tmp_path / "t", owner=(1234, 5678), mtime=1_700_000_000)
    out, m, layer = append(kiln, tmp_path, src, "n", "--compression", "none", "--keep-modes",
                           env={"SOURCE_DATE_EPOCH": "1234567"})
    data = blob(out, layer["digest"])
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        members = t.getmembers()
        names = [x.name for x in members]
        assert names == sorted(names, key=lambda n: n.encode())
        for x in members:
            assert x.mtime == 1234567, x.name
            assert (x.uid, x.gid, x.uname, x.gname) == (0, 0, "", ""), x.name
            for k in x.pax_headers:
                assert k in ("path", "linkpath", "hdrcharset"), (x.name, k)
        by = {x.name: x for x in members}
        assert by["root/bin/tool"].mode == 0o4755
        assert by["root/bin/sgid"].mode == 0o2750
        assert by["root/tmp"].mode == 0o1777
        assert by["root/bin/rel"].issym() and by["root/bin/rel"].linkname == "tool"
        assert by["root/abs"].linkname == "/etc/hello"
        assert by["root/etc/hello2"].islnk() and by["root/etc/hello2"].linkname == "root/etc/hello"
        assert "root/" + LONG in by
        # parents before children
        seen = set()
        for n in names:
            parent = n.rsplit("/", 1)[0] if "/" in n else None
            assert parent is None or parent in seen, n
            seen.add(n)
    cfg = json.loads(blob(out, m["config"]["digest"]))
    assert cfg["rootfs"]["diff_ids"] == [sha(data)]
    assert layer["annotations"]["dev.kiln.layer.compression"] == "none"


def test_default_modes_follow_the_policy_whatever_the_umask(kiln, tmp_path):
    """git's rule by default (docs/layers.md, "Modes"); --keep-modes is the
    host's bits, as Docker's COPY keeps them; a MODE given is exact."""
    src = make_tree(tmp_path / "t")
    (tmp_path / "f").write_text("f\n")
    os.chmod(tmp_path / "f", 0o600)
    got = {}
    for name, umask in (("a", 0o022), ("b", 0o077)):
        out, _, layer = append(kiln, tmp_path, src, name, "--compression", "none",
                               "--file", f"{tmp_path}/f:/etc/f:0640", "--file",
                               f"{tmp_path}/f:/etc/g", umask=umask)
        with tarfile.open(fileobj=io.BytesIO(blob(out, layer["digest"]))) as t:
            got[name] = {x.name: x.mode for x in t.getmembers()}
        got[name + "digest"] = layer["digest"]
    assert got["adigest"] == got["bdigest"]
    by = got["a"]
    assert by["root/bin/tool"] == 0o755 and by["root/bin/sgid"] == 0o755
    assert by["root/data.bin"] == 0o644 and by["root/etc/hello"] == 0o644
    assert by["root/tmp"] == 0o755 and by["root/empty"] == 0o755 and by["root"] == 0o755
    assert by["root/bin/rel"] == 0o777
    assert by["etc/f"] == 0o640 and by["etc/g"] == 0o644 and by["etc"] == 0o755


@pytest.mark.parametrize("comp,pat", [("gzip", r"gzip-libdeflate-[0-9.]+-2"),
                                      ("zstd", r"zstd-[0-9.]+-3")])
def test_compression_is_annotated_and_diffid_matches(kiln, tmp_path, comp, pat):
    src = make_tree(tmp_path / "t")
    out, m, layer = append(kiln, tmp_path, src, "c", "--compression", comp)
    assert re.fullmatch(pat, layer["annotations"]["dev.kiln.layer.compression"])
    data = blob(out, layer["digest"])
    assert sha(data) == layer["digest"] and len(data) == layer["size"]
    if comp == "gzip":
        assert layer["mediaType"].endswith("+gzip")
        raw = gzip.decompress(data)
        # deterministic gzip header: mtime 0, no name, OS byte 255
        assert data[3] == 0 and data[4:8] == b"\0\0\0\0" and data[9] == 255
    else:
        assert layer["mediaType"].endswith("+zstd")
        raw = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    cfg = json.loads(blob(out, m["config"]["digest"]))
    assert cfg["rootfs"]["diff_ids"] == [sha(raw)]


@pytest.mark.parametrize("comp", ["gzip", "zstd"])
def test_blob_does_not_depend_on_thread_count(kiln, tmp_path, comp):
    src = tmp_path / "big"
    src.mkdir()
    rnd = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB, poorly compressible pattern
    for i in range(6):
        (src / f"f{i}").write_bytes(rnd[i:] + bytes(300_000))
    digests = set()
    for t in (1, 2, 3, 8):
        _, _, layer = append(kiln, tmp_path, src, f"t{t}", "--compression", comp, "--threads", str(t))
        digests.add(layer["digest"])
    assert len(digests) == 1


def test_level_changes_blob_not_diffid(kiln, tmp_path):
    src = make_tree(tmp_path / "t")
    o1, m1, l1 = append(kiln, tmp_path, src, "l1", "--level", "1")
    o9, m9, l9 = append(kiln, tmp_path, src, "l9", "--level", "9")
    assert l1["digest"] != l9["digest"]
    c1 = json.loads(blob(o1, m1["config"]["digest"]))
    c9 = json.loads(blob(o9, m9["config"]["digest"]))
    assert c1["rootfs"]["diff_ids"] == c9["rootfs"]["diff_ids"]
    assert l1["annotations"]["dev.kiln.layer.compression"].endswith("-1")


def test_umoci_unpacks_kiln_layer_exactly(kiln, tmp_path):
    src = make_tree(tmp_path / "t")
    out, _, _ = append(kiln, tmp_path, src, "u", "--compression", "gzip", "--keep-modes")
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{out}:v1", bundle)
    got = bundle / "rootfs" / "root"
    assert snapshot(got) == snapshot(src)
    assert hardlink_groups(got) == hardlink_groups(src) != []


@pytest.mark.parametrize("comp", ["gzip", "zstd", "none"])
def test_kiln_unpack_reproduces_tree(kiln, tmp_path, comp):
    src = make_tree(tmp_path / "t")
    out, _, _ = append(kiln, tmp_path, src, "k", "--compression", comp, "--keep-modes")
    dest = tmp_path / "dest"
    kiln.run("unpack", f"oci:{out}:v1", dest)
    assert snapshot(dest / "root") == snapshot(src)
    assert hardlink_groups(dest / "root") == hardlink_groups(src)


def test_append_on_umoci_base_keeps_base_layers(kiln, tmp_path, umoci_image):
    src = tmp_path / "app"
    src.mkdir()
    (src / "main.py").write_text("print(1)\n")
    out = tmp_path / "out"
    kiln.run("append", f"oci:{umoci_image}:base", "--layer", f"{src}:/app", "-t", f"oci:{out}:new",
             "--cache", tmp_path / "cache", "-q")
    base = manifest_of(umoci_image, "base")
    m = manifest_of(out, "new")
    assert m["layers"][:-1] == base["layers"]
    cfg = json.loads(blob(out, m["config"]["digest"]))
    assert len(cfg["rootfs"]["diff_ids"]) == len(m["layers"])
    assert cfg["config"]["Env"] == ["A=1"] or "A=1" in cfg["config"]["Env"]
    dest = tmp_path / "rootfs"
    kiln.run("unpack", f"oci:{out}:new", dest)
    assert (dest / "etc/hello").read_text() == "hello from umoci\n"
    assert (dest / "app/main.py").read_text() == "print(1)\n"
    run("umoci", "unpack", "--rootless", "--image", f"{out}:new", tmp_path / "b2")
    assert (tmp_path / "b2/rootfs/app/main.py").read_text() == "print(1)\n"


def test_excludes_follow_dockerignore(kiln, tmp_path):
    src = tmp_path / "ctx"
    for p in ["keep.py", "build/x.o", "node_modules/a/b.js", "docs/a.md", "docs/keep.md",
              "src/deep/x.pyc", "src/y.py", ".git/HEAD"]:
        (src / p).parent.mkdir(parents=True, exist_ok=True)
        (src / p).write_text(p)
    ign = tmp_path / "ignore"
    ign.write_text("# comment\n/build\nnode_modules\ndocs/*.md\n!docs/keep.md\n**/*.pyc\n.git\n")
    out, _, layer = append(kiln, tmp_path, src, "x", "--ignore-file", ign, "--compression", "none")
    with tarfile.open(fileobj=io.BytesIO(blob(out, layer["digest"]))) as t:
        names = sorted(t.getnames())
    assert names == ["root", "root/docs", "root/docs/keep.md", "root/keep.py", "root/src",
                     "root/src/deep", "root/src/y.py"]


def test_single_file_layer_with_mode(kiln, tmp_path):
    f = tmp_path / "script.sh"
    f.write_text("#!/bin/sh\n")
    os.chmod(f, 0o600)
    out = tmp_path / "o"
    kiln.run("append", "scratch", "--layer", f"{f}:/usr/local/bin/run:0755", "-t", f"oci:{out}:v1",
             "--compression", "none", "--cache", tmp_path / "c", "-q")
    m = manifest_of(out)
    with tarfile.open(fileobj=io.BytesIO(blob(out, m["layers"][0]["digest"]))) as t:
        ms = {x.name: x for x in t.getmembers()}
    assert list(ms) == ["usr", "usr/local", "usr/local/bin", "usr/local/bin/run"]
    assert ms["usr/local/bin/run"].mode == 0o755 and ms["usr"].mode == 0o755


def test_cache_hit_on_warm_rebuild_and_miss_on_change(kiln, tmp_path):
    src = make_tree(tmp_path / "t")
    cache = tmp_path / "cache"

    def build(name):
        p = kiln.run("append", "scratch", "--layer", f"{src}:/r", "-t", f"oci:{tmp_path / name}:v1",
                     "--cache", cache)
        return p.stderr.split()[0], manifest_of(tmp_path / name)["layers"][0]["digest"]

    s1, d1 = build("o1")
    assert s1 == "built"
    os.utime(cache / "stat", None)
    # the stat index is only trusted for files older than itself (git's racy rule)
    for st in (cache / "stat").iterdir():
        os.utime(st, (os.stat(st).st_mtime + 5, os.stat(st).st_mtime + 5))
    s2, d2 = build("o2")
    assert (s2, d2) == ("cached", d1)
    (src / "etc/hello").write_text("changed\n")
    s3, d3 = build("o3")
    assert s3 == "built" and d3 != d1


def test_bad_cache_entry_is_rebuilt(kiln, tmp_path):
    src = make_tree(tmp_path / "t")
    cache = tmp_path / "cache"
    kiln.run("append", "scratch", "--layer", f"{src}:/r", "-t", f"oci:{tmp_path / 'o1'}:v1",
             "--cache", cache, "-q")
    for st in (cache / "stat").iterdir():
        os.utime(st, (os.stat(st).st_mtime + 5, os.stat(st).st_mtime + 5))
    d = manifest_of(tmp_path / "o1")["layers"][0]["digest"]
    p = cache / "layout" / "blobs" / "sha256" / d.split(":")[1]
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    r = kiln.run("append", "scratch", "--layer", f"{src}:/r", "-t", f"oci:{tmp_path / 'o2'}:v1",
                 "--cache", cache)
    assert "warning: cached layer" in r.stderr
    assert manifest_of(tmp_path / "o2")["layers"][0]["digest"] == d
    assert sha(blob(tmp_path / "o2", d)) == d


def test_warm_rebuild_links_the_stamped_blob_and_catches_writes_in_place(kiln, tmp_path):
    src = make_tree(tmp_path / "t")
    cache = tmp_path / "cache"

    def build(name):
        return kiln.run("append", "scratch", "--layer", f"{src}:/r", "-t",
                        f"oci:{tmp_path / name}:v1", "--cache", cache)

    build("o1")
    for st in (cache / "stat").iterdir():
        os.utime(st, (os.stat(st).st_mtime + 5, os.stat(st).st_mtime + 5))
    d = manifest_of(tmp_path / "o1")["layers"][0]["digest"]
    hexd = d.split(":")[1]
    cached = cache / "layout" / "blobs" / "sha256" / hexd
    # a hit into a new layout: the cache's blob, linked, not copied
    assert build("o2").stderr.split()[0] == "cached"
    assert os.stat(tmp_path / "o2/blobs/sha256" / hexd).st_ino == os.stat(cached).st_ino
    assert (cache / "verified" / hexd).exists()
    # bytes changed in place, size and mtime put back: the ctime gives it away
    st = os.stat(cached)
    with open(cached, "r+b") as f:
        f.seek(st.st_size // 2)
        b = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = build("o3")
    assert "warning: cached layer" in r.stderr
    assert manifest_of(tmp_path / "o3")["layers"][0]["digest"] == d
    assert sha(blob(tmp_path / "o3", d)) == d
    kiln.run("fsck", "--deep", f"oci:{tmp_path / 'o3'}")


def test_append_usage_errors(kiln, tmp_path):
    p, line = kiln.fails("append", "scratch", "-t", f"oci:{tmp_path}/o:v1", code=2) if False else (None, None)
    p = kiln.run("append", "scratch", "-t", f"oci:{tmp_path}/o:v1", check=False)
    assert p.returncode == 2 and "missing --layer" in p.stderr
    _, line = kiln.fails("append", "scratch", "--layer", f"{tmp_path}/nope:/x", "-t",
                         f"oci:{tmp_path}/o:v1", "--cache", tmp_path / "c")
    assert "does not exist" in line


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "tar.zst"])
def test_existing_tar_is_renormalized_like_the_tree(kiln, tmp_path, fmt):
    src = make_tree(tmp_path / "t", owner=(7, 8), mtime=1_600_000_000)
    # b-link sorts before its target: the data must move to it
    os.link(src / "data.bin", src / "a-first-link")
    tarball = tmp_path / f"in.{fmt}"
    flag = {"tar": [], "tar.gz": ["-z"], "tar.zst": ["--zstd"]}[fmt]
    # GNU tar, readdir order, real owners and mtimes, './' prefixes
    run("tar", *flag, "-cf", tarball, "-C", src, ".")
    _, mt, lt = append(kiln, tmp_path, tarball, "fromtar", "--compression", "gzip")
    # a tar's modes are its content; the tree's exact modes need --keep-modes
    _, md, ld = append(kiln, tmp_path, src, "fromdir", "--compression", "gzip", "--keep-modes")
    assert lt["digest"] == ld["digest"]


def test_tar_with_dotdot_names_is_refused(kiln, tmp_path):
    tarball = tmp_path / "bad.tar"
    import layers_helpers
    tarball.write_bytes(layers_helpers.tar_bytes([{"name": "../escape", "data": b"x"}]))
    _, line = kiln.fails("append", "scratch", "--layer", f"{tarball}:/x", "-t",
                         f"oci:{tmp_path}/o:v1", "--cache", tmp_path / "c")
    assert "'..' is not allowed" in line and "bad.tar" in line


def test_two_processes_share_a_cache(kiln, tmp_path):
    src = make_tree(tmp_path / "t")
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([kiln.path, "append", "scratch", "--layer", f"{src}:/r", "-t",
                               f"oci:{tmp_path / f'o{i}'}:v1", "--cache", cache, "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    digests = {manifest_of(tmp_path / f"o{i}")["layers"][0]["digest"] for i in range(4)}
    assert len(digests) == 1
    entries = list((cache / "entries").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".json"
    assert not [p for p in (cache / "layout" / "blobs" / "sha256").iterdir() if p.name.startswith(".tmp")]


def test_killed_build_leaves_no_entry(kiln, tmp_path):
    import signal
    from conftest import wait_for_state
    src = tmp_path / "big"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}").write_bytes(os.urandom(16 << 20))
    cache = tmp_path / "cache"
    p = subprocess.Popen([kiln.path, "append", "scratch", "--layer", f"{src}:/r", "-t",
                          f"oci:{tmp_path / 'killed'}:v1", "--cache", cache, "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # killed while the layer is being written: its temp blob has data
    def writing():
        try:
            return any(f.stat().st_size > (1 << 20) for f in cache.rglob(".tmp-*"))
        except FileNotFoundError:  # renamed while looked at
            return False
    assert wait_for_state(p, writing), "the build finished before its layer was written"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the build finished before it was killed"
    assert not (cache / "entries").exists() or list((cache / "entries").iterdir()) == []
    blobs = cache / "layout" / "blobs" / "sha256"
    for b in blobs.iterdir() if blobs.exists() else []:
        assert b.name.startswith(".tmp-") or sha(b.read_bytes()).endswith(b.name)
    # the next build completes and matches a build with a fresh cache
    _, _, l1 = append(kiln, tmp_path, src, "again")
    r = kiln.run("append", "scratch", "--layer", f"{src}:/root", "-t", f"oci:{tmp_path / 'k2'}:v1",
                 "--cache", cache, "-q")
    assert manifest_of(tmp_path / "k2")["layers"][0]["digest"] == l1["digest"]


def test_security_capability_kept_only_when_asked(kiln, tmp_path):
    src = tmp_path / "caps"
    src.mkdir()
    (src / "ping").write_bytes(b"\x7fELF")
    run("setcap", "cap_net_raw+ep", src / "ping")
    cap = os.getxattr(src / "ping", "security.capability")
    _, _, plain = append(kiln, tmp_path, src, "plain", "--compression", "none")
    out, _, kept = append(kiln, tmp_path, src, "kept", "--compression", "none", "--keep-caps")
    assert plain["digest"] != kept["digest"]
    with tarfile.open(fileobj=io.BytesIO(blob(out, kept["digest"]))) as t:
        m = t.getmember("root/ping")
        assert m.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == cap \
            or m.pax_headers["SCHILY.xattr.security.capability"].encode("latin-1") == cap
    with tarfile.open(fileobj=io.BytesIO(blob(tmp_path / "plain", plain["digest"]))) as t:
        assert not t.getmember("root/ping").pax_headers
    # applied when unpacking as root, skipped with a warning when rootless
    kiln.run("unpack", f"oci:{out}:v1", tmp_path / "rootful")
    assert os.getxattr(tmp_path / "rootful" / "root" / "ping", "security.capability") == cap
    p = kiln.run("unpack", "--rootless", f"oci:{out}:v1", tmp_path / "rootless")
    assert "skipped xattr 'security.capability' of 'root/ping': not root" in p.stderr
    with pytest.raises(OSError):
        os.getxattr(tmp_path / "rootless" / "root" / "ping", "security.capability")


def test_files_join_the_layer_before_them(kiln, tmp_path):
    tree = tmp_path / "app"
    tree.mkdir()
    (tree / "main.py").write_text("print()\n")
    f1 = tmp_path / "entry.sh"
    f1.write_text("#!/bin/sh\n")
    f2 = tmp_path / "conf"
    f2.write_text("x=1\n")
    out = tmp_path / "o"
    kiln.run("append", "scratch", "--file", f"{f2}:/etc/app/", "--layer", f"{tree}:/app",
             "--file", f"{f1}:/usr/bin/entry:0755", "--file", f"{f2}:/app/conf:0600",
             "-t", f"oci:{out}:v1", "--compression", "none", "--cache", tmp_path / "c", "-q")
    m = manifest_of(out)
    assert len(m["layers"]) == 2
    names = []
    for layer in m["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(out, layer["digest"]))) as t:
            names.append({x.name: x.mode for x in t.getmembers()})
    assert names[0] == {"etc": 0o755, "etc/app": 0o755, "etc/app/conf": 0o644}
    assert names[1] == {"app": 0o755, "app/conf": 0o600, "app/main.py": 0o644, "usr": 0o755,
                        "usr/bin": 0o755, "usr/bin/entry": 0o755}


def test_stale_temp_files_of_killed_builds_are_swept(kiln, tmp_path):
    src = make_tree(tmp_path / "t")
    cache = tmp_path / "cache"
    append(kiln, tmp_path, src, "first")
    cache = tmp_path / "cache-first"
    blobs = cache / "layout" / "blobs" / "sha256"
    old, fresh = blobs / ".tmp-old123", blobs / ".tmp-new456"
    spool = cache / "spool-abcdef"
    spool.mkdir()
    (spool / "0").write_bytes(b"x")
    for p in (old, fresh):
        p.write_bytes(b"partial")
    stat_files = list((cache / "stat").iterdir())
    two_hours_ago = os.stat(old).st_mtime - 7200
    for p in (old, spool, *stat_files):
        os.utime(p, (two_hours_ago, two_hours_ago))
    append(kiln, tmp_path, src, "first")
    assert not old.exists() and not spool.exists()
    assert fresh.exists()  # may belong to a build still running
    assert all(p.exists() for p in stat_files)  # real index files stay


def test_fresh_layer_is_written_once(kiln, tmp_path):
    src = make_tree(tmp_path / "t")
    out, _, layer = append(kiln, tmp_path, src, "once")
    p = out / "blobs" / "sha256" / layer["digest"].split(":")[1]
    cached = tmp_path / "cache-once" / "layout" / "blobs" / "sha256" / p.name
    assert os.stat(p).st_ino == os.stat(cached).st_ino
    assert sha(p.read_bytes()) == layer["digest"]
    run("umoci", "unpack", "--rootless", "--image", f"{out}:v1", tmp_path / "b")
