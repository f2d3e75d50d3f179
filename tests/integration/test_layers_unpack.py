"""kiln unpack: hostile tars change nothing outside DIR and are reported; legitimate
but scary tars unpack like umoci."""
import copy
import gzip
import os
import pathlib
import stat
import subprocess

import pytest

from conftest import run
from layers_helpers import TAR, TGZ, TZST, hardlink_groups, make_layout, snapshot, tar_bytes
from unpack_cases import CLAMPED, HOSTILE, SCARY, gzip_bomb


@pytest.fixture
def world(tmp_path):
    """A sentinel tree next to DIR, and DIR itself."""
    outside = tmp_path / "outside"
    (outside / "etc").mkdir(parents=True)
    (outside / "etc" / "passwd").write_text("root:x:0:0\n")
    os.chmod(outside / "etc" / "passwd", 0o644)
    (outside / "victim").write_text("keep me\n")
    return tmp_path, outside, tmp_path / "root"


def state(outside):
    return {k: v for k, v in snapshot(outside).items()}, {
        str(p): (p.stat().st_mode, p.stat().st_nlink) for p in outside.rglob("*") if not p.is_symlink()}


def unpack(kiln, tmp, entries, *extra, mt=TAR, data=None, check=True):
    if data is None:
        data = tar_bytes(entries)
        if mt == TGZ:
            data = gzip.compress(data, mtime=0)
    place = make_layout(tmp / f"lay{len(list(tmp.glob('lay*')))}", [(data, mt)])
    return kiln.run("unpack", "--rootless", place, tmp / "root", *extra, check=check)


@pytest.mark.parametrize("walk", [False, True], ids=["openat2", "walk"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_is_refused_and_changes_nothing_outside(kiln, world, case, walk):
    tmp, outside, root = world
    entries, msg = HOSTILE[case]
    before = state(outside)
    p = unpack(kiln, tmp, entries, *(["--walk"] if walk else []), check=False)
    assert p.returncode == 3, p.stderr
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(errs) == 1 and msg in errs[0], p.stderr
    assert "layer 1" in errs[0]
    assert state(outside) == before
    assert not pathlib.Path("/tmp/kiln-abs-test").exists()


@pytest.mark.parametrize("walk", [False, True], ids=["openat2", "walk"])
@pytest.mark.parametrize("case", sorted(CLAMPED))
def test_escaping_links_resolve_inside_root(kiln, world, case, walk):
    tmp, outside, root = world
    entries, inside = copy.deepcopy(CLAMPED[case])
    # make the absolute paths of the entries point at the real sentinel
    for e in entries:
        if e.get("link", "").startswith("/outside"):
            e["link"] = str(outside) + e["link"][len("/outside"):]
        if e["name"].startswith("evil/outside"):
            e["name"] = "evil/" + str(outside).lstrip("/") + e["name"][len("evil/outside"):]
            inside = str(outside).lstrip("/") + "/victim"
    before = state(outside)
    unpack(kiln, tmp, entries, *(["--walk"] if walk else []))
    assert state(outside) == before
    if inside:
        assert (root / inside).exists() or (root / inside).is_symlink()


def test_devices_and_privileged_xattrs_are_skipped_with_a_warning(kiln, world):
    tmp, outside, root = world
    p = unpack(kiln, tmp, [{"name": "dev", "type": "dir"}, {"name": "dev/null", "type": "chr"},
                           {"name": "fifo", "type": "fifo"}, {"name": "f", "data": b"x"}])
    assert "warning: layer 1" in p.stderr and "skipped device 'dev/null'" in p.stderr
    assert not (root / "dev/null").exists()
    assert (root / "f").read_bytes() == b"x"
    assert os.stat(root / "fifo", follow_symlinks=False).st_mode & 0o170000 == 0o010000


def test_gzip_bomb_stops_at_the_size_limit(kiln, world):
    tmp, outside, root = world
    data = gzip_bomb(256 << 20)
    assert len(data) < 1 << 20
    p = unpack(kiln, tmp, None, "--max-size", "64M", mt=TGZ, data=data, check=False)
    assert p.returncode == 8, p.stderr
    assert "limit" in p.stderr and "layer 1" in p.stderr
    assert not (root / "zeros").exists() or (root / "zeros").stat().st_size <= 64 << 20


def test_zstd_window_over_2_27_is_refused(kiln, world):
    tmp, outside, root = world
    raw = tar_bytes([{"name": "f", "data": b"x" * 1000}])
    # frame header: magic, FHD (no checksum, single segment off, no dict), window descriptor 2^31
    frame = subprocess.run(["zstd", "-c", "-q", "--no-check"], input=raw, capture_output=True,
                           check=True).stdout
    fhd = frame[4]
    assert not fhd & 0x20, "expected a frame with a window descriptor"
    body = bytearray(frame)
    body[5] = (31 - 10) << 3  # windowLog 31
    p = unpack(kiln, tmp, None, mt=TZST, data=bytes(body), check=False)
    assert p.returncode == 8, p.stderr
    assert "window" in p.stderr


@pytest.mark.parametrize("cut", [2000, 4500, 4999])
def test_truncated_tar_is_an_error(kiln, world, cut):
    tmp, outside, root = world
    raw = tar_bytes([{"name": "f", "data": b"y" * 5000}])
    p = unpack(kiln, tmp, None, data=raw[:512 + cut], check=False)
    assert p.returncode == 3 and "truncated" in p.stderr.lower(), p.stderr


def test_media_type_must_match_the_bytes(kiln, world):
    tmp, outside, root = world
    raw = tar_bytes([{"name": "f", "data": b"y"}])
    zst = subprocess.run(["zstd", "-c", "-q"], input=raw, capture_output=True, check=True).stdout
    p = unpack(kiln, tmp, None, mt=TGZ, data=zst, check=False)
    assert p.returncode == 3 and "says gzip but its bytes are zstd" in p.stderr, p.stderr


def test_multi_member_gzip_is_valid(kiln, world):
    tmp, outside, root = world
    raw = tar_bytes([{"name": "f", "data": b"z" * 3000}])
    data = gzip.compress(raw[:1024], mtime=0) + gzip.compress(raw[1024:], mtime=0)
    unpack(kiln, tmp, None, mt=TGZ, data=data)
    assert (root / "f").read_bytes() == b"z" * 3000


def test_garbage_after_gzip_is_an_error(kiln, world):
    tmp, outside, root = world
    raw = tar_bytes([{"name": "f", "data": b"z"}])
    p = unpack(kiln, tmp, None, mt=TGZ, data=gzip.compress(raw) + b"garbage!", check=False)
    assert p.returncode == 3 and "trailing data" in p.stderr, p.stderr


@pytest.fixture(scope="module")
def umoci_trees(tmp_path_factory):
    """The tree `umoci unpack --rootless` makes of each case, made once."""
    cache = {}

    def tree(case):
        if case not in cache:
            d = tmp_path_factory.mktemp("umoci-" + case)
            layers = [(gzip.compress(tar_bytes(l), mtime=0), TGZ) for l in SCARY[case][0]]
            make_layout(d / "lay", layers)
            run("umoci", "unpack", "--rootless", "--image", f"{d / 'lay'}:v1", d / "u")
            cache[case] = (d / "lay", snapshot(d / "u" / "rootfs"), hardlink_groups(d / "u" / "rootfs"))
        return cache[case]

    return tree


@pytest.mark.parametrize("walk", [False, True], ids=["openat2", "walk"])
@pytest.mark.parametrize("case", list(SCARY))
def test_legitimate_scary_case_unpacks_like_umoci(kiln, tmp_path, umoci_trees, case, walk):
    lay, want, want_links = umoci_trees(case)
    kiln.run("unpack", "--rootless", *(["--walk"] if walk else []), f"oci:{lay}:v1", tmp_path / "k")
    assert snapshot(tmp_path / "k") == want
    assert hardlink_groups(tmp_path / "k") == want_links
    assert SCARY[case][1](tmp_path / "k")


def test_paths_beyond_path_max_still_resolve_inside(kiln, world):
    tmp, outside, root = world
    comp = "c" * 250
    deep = "/".join([comp] * 33)  # ~8 KiB
    entries = [{"name": deep + "/up", "type": "sym", "link": "/" + "../" * 40},
               {"name": deep + "/f", "data": b"deep"},
               {"name": deep + "/up/escaped", "data": b"inside"}]
    before = state(outside)
    unpack(kiln, tmp, entries)
    assert state(outside) == before
    assert (root / "escaped").read_bytes() == b"inside"
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(33):
            nfd = os.open(comp, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        assert os.read(os.open("f", os.O_RDONLY, dir_fd=fd), 10) == b"deep"
    finally:
        os.close(fd)


def test_duplicate_paths_last_wins(kiln, world):
    tmp, outside, root = world
    unpack(kiln, tmp, [{"name": "x", "data": b"first"}, {"name": "x", "type": "dir"},
                       {"name": "x", "data": b"last", "mode": 0o600}])
    assert (root / "x").read_bytes() == b"last"
    assert (root / "x").stat().st_mode & 0o777 == 0o600


def test_unpack_does_not_depend_on_umask(kiln, tmp_path):
    entries = [{"name": "implicit/parent/file", "data": b"x", "mode": 0o664},
               {"name": "fifo", "type": "fifo", "mode": 0o666},
               {"name": "d", "type": "dir", "mode": 0o775}]
    place = make_layout(tmp_path / "lay", [(tar_bytes(entries), TAR)])
    snaps = []
    for mask in (0o022, 0o077):
        dest = tmp_path / f"u{mask:o}"
        p = subprocess.run(["sh", "-c", f'umask {mask:o}; exec "$@"', "sh", kiln.path, "unpack",
                            "--rootless", place, dest], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        snaps.append(snapshot(dest))
        assert os.stat(dest / "fifo").st_mode & 0o777 == 0o666
    assert snaps[0] == snaps[1]
    assert snaps[0][b"implicit"] == ("d", 0o755)


@pytest.mark.skipif(os.geteuid() != 0, reason="creating devices needs root (CI runs as root)")
def test_devices_get_their_mode_as_root(kiln, tmp_path):
    entries = [{"name": "dev", "type": "dir"},
               {"name": "dev/null", "type": "chr", "dev": (1, 3), "mode": 0o666},
               {"name": "dev/private", "type": "chr", "dev": (1, 3), "mode": 0o600},
               {"name": "fifo", "type": "fifo", "mode": 0o666}]
    place = make_layout(tmp_path / "lay", [(tar_bytes(entries), TAR)])
    dest = tmp_path / "root"
    p = subprocess.run(["sh", "-c", 'umask 022; exec "$@"', "sh", kiln.path, "unpack", place, dest],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for name, mode in (("dev/null", 0o666), ("dev/private", 0o600), ("fifo", 0o666)):
        st = os.lstat(dest / name)
        assert stat.S_IMODE(st.st_mode) == mode, (name, oct(st.st_mode))
    assert stat.S_ISCHR(os.lstat(dest / "dev/null").st_mode)
    assert os.lstat(dest / "dev/null").st_rdev == os.makedev(1, 3)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_dir_is_created_0755_without_a_root_entry(kiln, tmp_path, mask):
    place = make_layout(tmp_path / "lay", [(tar_bytes([{"name": "bin/sh", "data": b"#!"}]), TAR)])
    dest = tmp_path / "root"
    p = subprocess.run(["sh", "-c", f'umask {mask:o}; exec "$@"', "sh", kiln.path, "unpack",
                        "--rootless", place, dest], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o755


def test_root_entry_named_slash_unpacks_and_flattens_like_umoci(kiln, tmp_path):
    """`umoci insert DIR /` writes a root entry named '/'."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "x").write_text("hi\n")
    (src / "bin").mkdir()
    os.symlink("/etc/x", src / "bin" / "l")
    lay = tmp_path / "lay"
    run("umoci", "init", "--layout", lay)
    run("umoci", "new", "--image", f"{lay}:v1")
    run("umoci", "insert", "--rootless", "--image", f"{lay}:v1", src, "/")
    names = subprocess.run(["sh", "-c", f"for b in {lay}/blobs/sha256/*; do gzip -dc $b 2>/dev/null | "
                            "tar tf - 2>/dev/null; done"], capture_output=True, text=True).stdout.split("\n")
    assert "/" in names, names  # the case this test is about
    run("umoci", "unpack", "--rootless", "--image", f"{lay}:v1", tmp_path / "u")
    kiln.run("unpack", "--rootless", f"oci:{lay}:v1", tmp_path / "k")
    assert snapshot(tmp_path / "k") == snapshot(tmp_path / "u" / "rootfs")
    kiln.run("flatten", f"oci:{lay}:v1", "-t", f"oci:{tmp_path / 'flat'}:v1")
    kiln.run("unpack", "--rootless", f"oci:{tmp_path / 'flat'}:v1", tmp_path / "kf")
    assert snapshot(tmp_path / "kf") == snapshot(tmp_path / "u" / "rootfs")


@pytest.mark.parametrize("walk", [False, True], ids=["openat2", "walk"])
@pytest.mark.parametrize("layers", [
    # a read-only dir whose name later leads to DIR: its deferred mode must not reach DIR
    [[{"name": "a", "type": "dir", "mode": 0o577}, {"name": "a", "type": "sym", "link": "/"}]],
    [[{"name": "a", "type": "dir", "mode": 0o577}], [{"name": "a", "type": "sym", "link": "/"}]],
    [[{"name": "a", "type": "dir", "mode": 0o577}], [{"name": ".wh.a"}, {"name": "a", "type": "sym",
                                                                        "link": ".."}]],
    [[{"name": "p/a", "type": "dir", "mode": 0o577}, {"name": "p", "type": "sym", "link": "."}]],
], ids=["same-layer", "next-layer", "whiteout-then-link", "parent-replaced"])
def test_hostile_deferred_chmod_never_reaches_dir(kiln, world, layers, walk):
    tmp, outside, root = world
    before, tmp_mode = state(outside), stat.S_IMODE(os.stat(tmp).st_mode)
    place = make_layout(tmp / "lay", [(tar_bytes(l), TAR) for l in layers])
    kiln.run("unpack", "--rootless", *(["--walk"] if walk else []), place, root)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp).st_mode) == tmp_mode
    assert state(outside) == before


def test_deferred_mode_reaches_the_directory_it_was_meant_for(kiln, world):
    tmp, outside, root = world
    l1 = [{"name": "ro", "type": "dir", "mode": 0o555}, {"name": "ro/f", "data": b"x"},
          {"name": "w", "type": "dir", "mode": 0o555}, {"name": "w", "type": "dir", "mode": 0o755},
          {"name": "gone", "type": "dir", "mode": 0o500}]
    l2 = [{"name": ".wh.gone"}, {"name": "gone/new", "data": b"n"}]
    kiln.run("unpack", "--rootless", make_layout(tmp / "lay", [(tar_bytes(l1), TAR), (tar_bytes(l2), TAR)]),
             root)
    assert stat.S_IMODE(os.stat(root / "ro").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(root / "w").st_mode) == 0o755  # the last entry wins
    assert stat.S_IMODE(os.stat(root / "gone").st_mode) == 0o755  # a new directory, implicit


def _tar_with_xattrs(entries):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, xattrs in entries:
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.DIRTYPE if kind == "dir" else tarfile.REGTYPE
            ti.mode = 0o755 if kind == "dir" else 0o644
            ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
            t.addfile(ti, io.BytesIO(b""))
    return buf.getvalue()


@pytest.mark.skipif(os.geteuid() != 0, reason="trusted.* xattrs need root (CI runs as root)")
def test_overlay_xattrs_are_dropped(kiln, tmp_path):
    xattrs = {"trusted.overlay.opaque": "y", "trusted.overlay.redirect": "/etc",
              "user.overlay.metacopy": "", "user.keep": "1", "trusted.keep": "2"}
    data = _tar_with_xattrs([("d", "dir", xattrs), ("d/f", "file", xattrs)])
    place = make_layout(tmp_path / "lay", [(data, TAR)])
    p = kiln.run("unpack", place, tmp_path / "root")
    for name in ("d", "d/f"):
        got = set(os.listxattr(tmp_path / "root" / name))
        assert {"user.keep", "trusted.keep"} <= got, got
        assert not any(".overlay." in k for k in got), got
    assert "dropped overlayfs xattr 'trusted.overlay.opaque' of 'd" in p.stderr


def _low_fd_limit():
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def _rm_deep(path):
    subprocess.run(["rm", "-rf", str(path)], check=True)


DEPTH = 10000
DEEP = "/".join(["a"] * DEPTH)


def _listdir_deep(root, depth):
    """os.listdir of root/a/a/.../a (depth levels), one level at a time: the
    path is longer than PATH_MAX."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            nfd = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


@pytest.mark.parametrize("case", ["whiteout-at-the-bottom", "whiteout-of-the-top",
                                  "opaque-at-the-top", "whiteout-of-same-layer-tree"])
def test_deep_tree_whiteouts_under_a_low_fd_limit(kiln, tmp_path, case):
    l1 = [{"name": DEEP + "/x", "data": b"x"}, {"name": DEEP + "/y", "data": b"y"}]
    l2, check = {
        "whiteout-at-the-bottom": ([{"name": DEEP + "/.wh.x"}],
                                   lambda r: _listdir_deep(r, DEPTH) == ["y"]),
        "whiteout-of-the-top": ([{"name": ".wh.a"}], lambda r: os.listdir(r) == []),
        "opaque-at-the-top": ([{"name": "b", "data": b"b"}, {"name": ".wh..wh..opq"}],
                              lambda r: os.listdir(r) == ["b"]),
        "whiteout-of-same-layer-tree": ([{"name": DEEP + "/z", "data": b"z"}, {"name": ".wh.a"}],
                                        lambda r: _listdir_deep(r, DEPTH) == ["z"]),
    }[case]
    place = make_layout(tmp_path / "lay", [(tar_bytes(l1), TAR), (tar_bytes(l2), TAR)])
    try:
        p = subprocess.run([kiln.path, "unpack", "--rootless", place, tmp_path / "root"],
                           preexec_fn=_low_fd_limit, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert check(tmp_path / "root")
    finally:
        _rm_deep(tmp_path / "root")


def test_wide_tree_of_read_only_dirs(kiln, tmp_path):
    n = 10000
    l1 = [{"name": "w", "type": "dir"}] + [{"name": f"w/d{i}", "type": "dir", "mode": 0o555}
                                           for i in range(n)]
    l1 += [{"name": f"w/d{i}/f", "data": b"f"} for i in range(0, n, 100)]
    l2 = [{"name": f"w/d{i}", "type": "dir", "mode": 0o755} for i in range(0, n, 2)]
    l2 += [{"name": "w/.wh.d1"}]
    place = make_layout(tmp_path / "lay", [(tar_bytes(l1), TAR), (tar_bytes(l2), TAR)])
    kiln.run("unpack", "--rootless", place, tmp_path / "root")
    w = tmp_path / "root" / "w"
    assert len(os.listdir(w)) == n - 1
    modes = {i: stat.S_IMODE(os.stat(w / f"d{i}").st_mode) for i in range(n) if i != 1}
    assert all(m == (0o755 if i % 2 == 0 else 0o555) for i, m in modes.items())
    assert (w / "d100" / "f").read_bytes() == b"f"


def _sparse_tar(tmp_path, fmt, size, name="sparse", chunks=((0, b"head"), (512 << 20, b"middle"))):
    """A tar made by GNU tar --sparse of a file of `size` apparent bytes that
    holds only `chunks` of data."""
    src = tmp_path / f"src-{fmt}-{name}"
    src.mkdir()
    with open(src / name, "wb") as f:
        for off, data in chunks:
            f.seek(off)
            f.write(data)
        f.truncate(size)
    out = tmp_path / f"{fmt}-{name}.tar"
    run("tar", "--sparse", f"--format={fmt}", "-C", src, "-cf", out, name)
    (src / name).unlink()
    return out.read_bytes()


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_entry_keeps_its_holes(kiln, tmp_path, fmt):
    data = _sparse_tar(tmp_path, fmt, 1 << 30)
    assert len(data) < 64 << 10
    place = make_layout(tmp_path / "lay", [(data, TAR)])
    kiln.run("unpack", "--rootless", place, tmp_path / "root")
    f = tmp_path / "root" / "sparse"
    st = f.stat()
    assert st.st_size == 1 << 30
    assert st.st_blocks * 512 < 16 << 20, st.st_blocks  # holes, not a GiB of zeros
    with open(f, "rb") as fh:
        assert fh.read(4) == b"head"
        fh.seek(512 << 20)
        assert fh.read(6) == b"middle"
        fh.seek((512 << 20) - 4)
        assert fh.read(4) == bytes(4)


def test_sparse_entry_counts_its_apparent_size_against_the_layer_limit(kiln, tmp_path):
    data = _sparse_tar(tmp_path, "posix", 1 << 30)
    place = make_layout(tmp_path / "lay", [(data, TAR)])
    p = kiln.run("unpack", "--rootless", "--max-size", "512M", place, tmp_path / "root", check=False)
    assert p.returncode == 8, p.stderr
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(errs) == 1 and "entry 'sparse' takes the layer past" in errs[0], p.stderr
    assert not (tmp_path / "root" / "sparse").exists() or (tmp_path / "root" / "sparse").stat().st_size == 0


def test_sparse_layers_stop_at_the_total_limit(kiln, tmp_path):
    layers = [(_sparse_tar(tmp_path, "posix", 600 << 20, name=f"s{i}"), TAR) for i in range(3)]
    place = make_layout(tmp_path / "lay", layers)
    # each layer is under --max-size; together they pass --max-total in layer 2
    p = kiln.run("unpack", "--rootless", "--max-size", "1G", "--max-total", "1G", place,
                 tmp_path / "root", check=False)
    assert p.returncode == 8, p.stderr
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(errs) == 1 and "layer 2" in errs[0] and "all layers" in errs[0], p.stderr
    kiln.run("unpack", "--rootless", "--max-total", "2G", place, tmp_path / "ok")
    assert sorted(os.listdir(tmp_path / "ok")) == ["s0", "s1", "s2"]
