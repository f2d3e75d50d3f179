"""kiln unpack: hostile tars change nothing outside DIR and are reported; legitimate
but scary tars unpack like umoci."""
import copy
import gzip
import os
import pathlib
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
