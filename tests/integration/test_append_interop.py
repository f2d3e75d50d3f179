"""kiln append / kiln config: owners of directory sources, the config's
`created`, pax names, and input tars that unpack would refuse (issue #12)."""
import io
import json
import os
import tarfile

import pytest

from conftest import run
from layers_helpers import TAR, blob, make_layout, manifest_of, tar_bytes


def _append(kiln, tmp, src, name, *extra, env=None, dest="/"):
    out = tmp / name
    kiln.run("append", "scratch", "--layer", f"{src}:{dest}", "-t", f"oci:{out}:v1",
             "--cache", tmp / "cache", "-q", "--compression", "none", *extra, env=env)
    m = manifest_of(out)
    return out, m


def _members(out, m):
    with tarfile.open(fileobj=io.BytesIO(blob(out, m["layers"][-1]["digest"]))) as t:
        return {x.name: x for x in t.getmembers()}


def test_keep_owners_keeps_owners_of_a_directory_source(kiln, tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "shadow").write_bytes(b"root:*:1::::::\n")
    (root / "etc" / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    os.chown(root / "etc" / "shadow", 0, 42)  # root:shadow
    os.chown(root / "etc", 7, 8)
    out, m = _append(kiln, tmp_path, root, "kept", "--keep-owners")
    by = _members(out, m)
    assert (by["etc/shadow"].uid, by["etc/shadow"].gid) == (0, 42)
    assert (by["etc"].uid, by["etc"].gid) == (7, 8)
    # the same owners as through a tar (which adds the host's names)
    tarball = tmp_path / "rootfs.tar"
    run("tar", "-cf", tarball, "-C", root, ".")
    out2, m2 = _append(kiln, tmp_path, tarball, "kept-tar", "--keep-owners")
    assert {n: (x.uid, x.gid) for n, x in _members(out2, m2).items()} == \
        {n: (x.uid, x.gid) for n, x in by.items()}
    # without --keep-owners: 0:0 (and another cache entry)
    out3, m3 = _append(kiln, tmp_path, root, "plain")
    assert all((x.uid, x.gid) == (0, 0) for x in _members(out3, m3).values())


def _created(kiln, place):
    return json.loads(kiln.run("inspect", "--config", place).stdout).get("created")


def _skopeo_created(layout):
    p = run("skopeo", "inspect", f"oci:{layout}:v1")
    return json.loads(p.stdout)["Created"]


def test_append_and_config_write_created(kiln, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    # scratch, no SOURCE_DATE_EPOCH: the layers' own time
    out = tmp_path / "a"
    kiln.run("append", "scratch", "--layer", f"{src}:/", "-t", f"oci:{out}:v1",
             "--cache", tmp_path / "c", "-q", env={"SOURCE_DATE_EPOCH": ""})
    assert _created(kiln, f"oci:{out}:v1") == "1970-01-01T00:00:00Z"
    assert _skopeo_created(out) is not None
    # SOURCE_DATE_EPOCH wins
    sde = tmp_path / "sde"
    kiln.run("append", f"oci:{out}:v1", "--layer", f"{src}:/more", "-t", f"oci:{sde}:v1",
             "--cache", tmp_path / "c", "-q", env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert _created(kiln, f"oci:{sde}:v1") == "2023-11-14T22:13:20Z"
    assert _skopeo_created(sde).startswith("2023-11-14T22:13:20")
    # without it, the base's created is kept, by append and by config
    kept = tmp_path / "kept"
    kiln.run("append", f"oci:{sde}:v1", "--layer", f"{src}:/again", "-t", f"oci:{kept}:v1",
             "--cache", tmp_path / "c", "-q", env={"SOURCE_DATE_EPOCH": ""})
    assert _created(kiln, f"oci:{kept}:v1") == "2023-11-14T22:13:20Z"
    cfg = tmp_path / "cfg"
    kiln.run("config", f"oci:{kept}:v1", "--label", "a=b", "-t", f"oci:{cfg}:v1",
             env={"SOURCE_DATE_EPOCH": ""})
    assert _skopeo_created(cfg).startswith("2023-11-14T22:13:20")
    # a base without created (written by another tool): the layers' own time
    base = make_layout(tmp_path / "bare", [(tar_bytes([{"name": "f", "data": b"x"}]), TAR)])
    assert _created(kiln, base) is None
    for verb, extra in (("config", ["--label", "c=d"]), ("append", ["--layer", f"{src}:/x", "-q"])):
        dst = tmp_path / f"from-bare-{verb}"
        kiln.run(verb, base, *extra, "-t", f"oci:{dst}:v1", env={"SOURCE_DATE_EPOCH": ""})
        assert _skopeo_created(dst).startswith("1970-01-01T00:00:00"), verb


@pytest.mark.parametrize("value", ["yesterday", "-1", "1.5", " 1", "253402300800"])
def test_malformed_source_date_epoch_is_refused_by_every_writer(kiln, tmp_path, value):
    """The reproducible-builds spec: a malformed value SHOULD stop the build.
    Every verb that writes an image refuses it before writing anything."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    base = make_layout(tmp_path / "base", [(tar_bytes([{"name": "f", "data": b"x"}]), TAR)])
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({
        "recipe": 1, "name": "sde", "base": "scratch",
        "variables": {"repo": {"default": "localhost:5000/sde/app"}},
        "layers": [{"name": "app", "kind": "tree", "src": "src", "dest": "/app"}],
        "tag": {"repository": "${repo}", "tag": "v1"}}))
    env = {"SOURCE_DATE_EPOCH": value}
    for verb, args in (("append", [base, "--layer", f"{src}:/", "--cache", tmp_path / "c"]),
                       ("config", [base, "--label", "a=b"]),
                       ("flatten", [base]),
                       ("build", [recipe, "--cache", tmp_path / "c"])):
        dst = tmp_path / f"out-{verb}"
        where = ["--output", f"oci:{dst}"] if verb == "build" else ["-t", f"oci:{dst}:v1"]
        _, err = kiln.fails(verb, *args, *where, code=2, env=env)
        assert err.startswith(f"kiln: error: invalid SOURCE_DATE_EPOCH '{value}': "), (verb, err)
        assert not dst.exists(), verb
    # nothing was built into the cache either
    assert not any((tmp_path / "c").glob("entries/*"))


def test_only_names_that_are_not_utf8_carry_hdrcharset(kiln, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ünïcødé").write_bytes(b"u")
    (src / "ファイル").write_bytes(b"j")
    os.symlink("ünïcødé", src / "link")
    (src / os.fsdecode(b"bad\xff")).write_bytes(b"b")
    out, m = _append(kiln, tmp_path, src, "names")
    with tarfile.open(fileobj=io.BytesIO(blob(out, m["layers"][-1]["digest"])),
                      encoding="utf-8", errors="surrogateescape") as t:
        by = {os.fsencode(x.name): x for x in t.getmembers()}
    assert "hdrcharset" not in by["ünïcødé".encode()].pax_headers
    assert by["ünïcødé".encode()].pax_headers.get("path") == "ünïcødé"
    assert "hdrcharset" not in by["ファイル".encode()].pax_headers
    assert "hdrcharset" not in by[b"link"].pax_headers
    assert by[b"link"].linkname == "ünïcødé"
    assert by[b"bad\xff"].pax_headers.get("hdrcharset") == "BINARY"
    # and kiln reads them back
    kiln.run("unpack", f"oci:{out}:v1", tmp_path / "u")
    assert (tmp_path / "u" / "ünïcødé").read_bytes() == b"u"
    assert (tmp_path / "u" / os.fsdecode(b"bad\xff")).read_bytes() == b"b"


BAD_TARS = {
    "symlinked-parent": ([{"name": "etc", "type": "sym", "link": "/tmp"},
                          {"name": "etc/passwd", "data": b"x"}], "'etc/passwd': its parent 'etc' is a symlink"),
    "symlinked-grandparent": ([{"name": "a", "type": "dir"}, {"name": "a/b", "type": "sym", "link": "."},
                               {"name": "a/b/c/d", "data": b"x"}], "'a/b/c/d': its parent 'a/b' is a symlink"),
    "file-parent": ([{"name": "f", "data": b"x"}, {"name": "f/g", "data": b"y"}],
                    "'f/g': its parent 'f' is a non-directory"),
    "whiteout": ([{"name": "etc", "type": "dir"}, {"name": "etc/.wh.passwd"}],
                 "refusing whiteout 'etc/.wh.passwd'"),
    "opaque-whiteout": ([{"name": "etc", "type": "dir"}, {"name": "etc/.wh..wh..opq"}],
                        "refusing whiteout 'etc/.wh..wh..opq'"),
}


@pytest.mark.parametrize("case", sorted(BAD_TARS))
def test_append_refuses_tars_unpack_would_refuse(kiln, tmp_path, case):
    entries, want = BAD_TARS[case]
    tarball = tmp_path / f"{case}.tar"
    tarball.write_bytes(tar_bytes(entries))
    out = tmp_path / "o"
    _, line = kiln.fails("append", "scratch", "--layer", f"{tarball}:/", "-t", f"oci:{out}:v1",
                         "--cache", tmp_path / "c")
    assert want in line and f"{case}.tar" in line, line
    assert not (out / "index.json").exists() or \
        json.loads((out / "index.json").read_text())["manifests"] == []


def test_append_drops_device_nodes_of_a_root_filesystem(kiln, tmp_path):
    # mmdebstrap and debootstrap tarballs carry /dev/console, /dev/null, ...:
    # the runtime provides /dev, and an unprivileged unpack could not make them
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(tar_bytes([{"name": "dev", "type": "dir"},
                                   {"name": "dev/console", "type": "chr", "dev": (5, 1)},
                                   {"name": "dev/sda", "type": "blk", "dev": (8, 0)},
                                   {"name": "etc", "type": "dir"},
                                   {"name": "etc/os-release", "data": b"ID=debian\n"}]))
    out = tmp_path / "o"
    kiln.run("append", "scratch", "--layer", f"{tarball}:/", "-t", f"oci:{out}:v1",
             "--cache", tmp_path / "c")
    listing = run("skopeo", "inspect", f"oci:{out}:v1").stdout
    assert "Layers" in listing
    root = tmp_path / "u"
    kiln.run("unpack", f"oci:{out}:v1", root)
    assert (root / "etc/os-release").read_bytes() == b"ID=debian\n"
    assert (root / "dev").is_dir() and not list((root / "dev").iterdir())


def test_what_append_accepts_unpack_accepts(kiln, tmp_path):
    # the neighbours of the refused cases: a symlink whose name only starts
    # like a directory, a link to a directory with nothing below it, a fifo,
    # a name containing ".wh." not at the start, a path given twice
    entries = [{"name": "etc", "type": "dir"}, {"name": "etc/passwd", "data": b"root\n"},
               {"name": "etc2", "type": "sym", "link": "etc"},
               {"name": "etcetera/x", "data": b"x"},
               {"name": "usr/lib", "type": "dir"}, {"name": "lib", "type": "sym", "link": "usr/lib"},
               {"name": "run/fifo", "type": "fifo"},
               {"name": "a.wh.b", "data": b"w"},
               {"name": "twice", "type": "sym", "link": "etc"}, {"name": "twice", "type": "dir"},
               {"name": "twice/in", "data": b"i"}]
    tarball = tmp_path / "ok.tar"
    tarball.write_bytes(tar_bytes(entries))
    out, m = _append(kiln, tmp_path, tarball, "ok")
    kiln.run("unpack", f"oci:{out}:v1", tmp_path / "u")
    assert (tmp_path / "u" / "twice" / "in").read_bytes() == b"i"
    assert os.readlink(tmp_path / "u" / "lib") == "usr/lib"
