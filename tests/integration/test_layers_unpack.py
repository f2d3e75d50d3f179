"""kiln unpack: hostile tars change nothing outside DIR and are reported; legitimate
but scary tars unpack like umoci."""
import copy
import gzip
import io
import os
import pathlib
import stat
import struct
import subprocess
import zlib

import pytest

from conftest import run
from layers_helpers import TAR, TGZ, TZST, hardlink_groups, make_layout, snapshot, tar_bytes


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


HOSTILE = {
    "dotdot": ([{"name": "../../outside/victim", "data": b"pwned"}], "climbs above the root"),
    "inner-dotdot": ([{"name": "a/../../outside/victim", "data": b"pwned"}], "climbs above the root"),
    "dot-dotdot": ([{"name": "./../outside/victim", "data": b"pwned"}], "climbs above the root"),
    "absolute": ([{"name": "/tmp/kiln-abs-test", "data": b"pwned"}], "absolute path"),
    "root-dotdot": ([{"name": "/../outside/victim", "data": b"pwned"}], "absolute path"),
    "hardlink-abs": ([{"name": "h", "type": "hard", "link": "/etc/passwd"}], "absolute path"),
    "hardlink-dotdot": ([{"name": "h", "type": "hard", "link": "../outside/etc/passwd"}],
                        "climbs above the root"),
    "hardlink-via-symlink": ([{"name": "d1", "type": "sym", "link": "../outside/etc"},
                              {"name": "h", "type": "hard", "link": "d1/passwd"}],
                             "is not in the layers so far"),
    "hardlink-later": ([{"name": "h", "type": "hard", "link": "later"},
                        {"name": "later", "data": b"x"}], "is not in the layers so far"),
    "hardlink-dir": ([{"name": "d", "type": "dir"}, {"name": "h", "type": "hard", "link": "d"}],
                     "is a directory"),
    "whiteout-dotdot": ([{"name": ".wh..."}], "refusing whiteout '.wh...'"),
    "whiteout-dot": ([{"name": "etc/.wh.."}], "refusing whiteout 'etc/.wh..'"),
    "whiteout-empty": ([{"name": ".wh."}], "refusing whiteout '.wh.'"),
    "symlink-named-dot": ([{"name": ".", "type": "sym", "link": "/etc"}],
                          "the root can only be a directory"),
    "symlink-named-dotdot": ([{"name": "..", "type": "sym", "link": "/etc"}],
                             "climbs above the root"),
}


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


CLAMPED = {
    # (entries, path that must exist inside root afterwards)
    "symlink-abs-dir": ([{"name": "evil", "type": "sym", "link": "/"},
                         {"name": "evil/outside/victim", "data": b"in root"}], "outside/victim"),
    "symlink-up": ([{"name": "evil", "type": "sym", "link": "../.."},
                    {"name": "evil/x", "data": b"in root"}], "x"),
    "symlink-chain": ([{"name": "d", "type": "dir"}, {"name": "d/up", "type": "sym", "link": ".."},
                       {"name": "d/up2", "type": "sym", "link": "up/.."},
                       {"name": "d/up2/x", "data": b"in root"}], "x"),
    "dir-overridden-by-symlink": ([{"name": "foo", "type": "dir"},
                                   {"name": "foo", "type": "sym", "link": "/"},
                                   {"name": "foo/tmp/x", "data": b"in root"}], "tmp/x"),
    "whiteout-through-symlink": ([{"name": "localetc", "type": "sym", "link": "/outside"},
                                  {"name": "localetc/.wh.victim"}], None),
    "hardlink-to-symlink-then-chmod": ([{"name": "s", "type": "sym", "link": "/outside/etc/passwd"},
                                        {"name": "h", "type": "hard", "link": "s"},
                                        {"name": "h", "type": "dir", "mode": 0o777}], "h"),
}


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


def gzip_bomb(size):
    """A tar holding one file of `size` zeros, gzip'd, built in constant memory."""
    hdr = bytearray(tar_bytes([{"name": "zeros", "data": b""}])[:512])
    hdr[124:136] = b"%011o\0" % size
    hdr[148:156] = b"        "
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(bytes(hdr))]
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(c.compress(chunk))
    out.append(c.compress(bytes(1024)))
    out.append(c.flush())
    return b"".join(out)


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


# Two layers mixing several of the cases below (kiln flatten's test uses them).
def scary_layers():
    l1 = [
        {"name": "usr", "type": "dir"}, {"name": "usr/lib", "type": "dir"},
        {"name": "lib", "type": "sym", "link": "usr/lib"},
        {"name": "lib/x.so", "data": b"ELF"},
        {"name": "etc", "type": "dir"}, {"name": "etc/alternatives", "type": "dir"},
        {"name": "etc/alternatives/java", "type": "sym", "link": "/usr/lib/jvm/java/bin/java"},
        {"name": "usr/lib/jvm", "type": "dir"},
        {"name": "usr/lib/jvm/cacerts", "type": "sym",
         "link": "../../../../../../../../../../etc/pki/java/cacerts"},
        {"name": "bin", "type": "dir"}, {"name": "bin/dash", "type": "sym", "link": "dash"},
        {"name": "opt", "type": "dir"}, {"name": "opt/a", "data": b"a"}, {"name": "opt/b", "data": b"b"},
        {"name": "var", "type": "dir"}, {"name": "var/keep", "data": b"k"},
        {"name": "var/gone", "data": b"g"}, {"name": "ro", "type": "dir", "mode": 0o555},
        {"name": "ro/f", "data": b"r", "mode": 0o444},
    ]
    l2 = [
        {"name": "opt", "type": "dir"}, {"name": "opt/.wh..wh..opq"}, {"name": "opt/c", "data": b"c"},
        {"name": "var/.wh.gone"}, {"name": "lib/y.so", "data": b"ELF2"},
        {"name": "usr/lib/jvm/../../local", "type": "dir"},
    ]
    return [(gzip.compress(tar_bytes(l1), mtime=0), TGZ), (gzip.compress(tar_bytes(l2), mtime=0), TGZ)]


# Legitimate but scary layers (threats.md T7-T9): each must unpack exactly as
# `umoci unpack --rootless` does, through both resolution paths.  A case is a
# list of layers (lists of entries) and a check of kiln's tree.
def _rd(root, path):
    return (root / path).read_bytes()


SCARY = {
    "absolute-symlink": ([[{"name": "etc", "type": "dir"}, {"name": "etc/alternatives", "type": "dir"},
                           {"name": "etc/alternatives/java", "type": "sym",
                            "link": "/usr/lib/jvm/java/bin/java"}]],
                         lambda r: os.readlink(r / "etc/alternatives/java") == "/usr/lib/jvm/java/bin/java"),
    "merged-usr": ([[{"name": "usr", "type": "dir"}, {"name": "usr/lib", "type": "dir"},
                     {"name": "lib", "type": "sym", "link": "usr/lib"}, {"name": "lib/x.so", "data": b"ELF"}],
                    [{"name": "lib/y.so", "data": b"ELF2"}, {"name": "lib/sub", "type": "dir"},
                     {"name": "lib/sub/z.so", "data": b"ELF3"}]],
                   lambda r: os.readlink(r / "lib") == "usr/lib" and _rd(r, "usr/lib/x.so") == b"ELF"
                   and _rd(r, "usr/lib/y.so") == b"ELF2" and _rd(r, "usr/lib/sub/z.so") == b"ELF3"),
    "merged-usr-absolute": ([[{"name": "usr/bin", "type": "dir"}, {"name": "bin", "type": "sym", "link": "/usr/bin"}],
                             [{"name": "bin/sh", "data": b"#!"}]],
                            lambda r: _rd(r, "usr/bin/sh") == b"#!"),
    "deep-dotdot-link": ([[{"name": "usr/lib/jvm", "type": "dir"},
                           {"name": "usr/lib/jvm/cacerts", "type": "sym",
                            "link": "../../../../../../../../../../etc/pki/java/cacerts"},
                           {"name": "etc/pki/java/cacerts", "data": b"certs"}]],
                         lambda r: os.readlink(r / "usr/lib/jvm/cacerts").startswith("../../../")),
    "link-to-root": ([[{"name": "rootlink", "type": "sym", "link": "/"},
                       {"name": "up", "type": "sym", "link": "../../.."},
                       {"name": "self", "type": "sym", "link": "."}],
                      [{"name": "rootlink/etc/through-root", "data": b"in"}]],
                     lambda r: _rd(r, "etc/through-root") == b"in" and os.readlink(r / "rootlink") == "/"),
    "self-loop-link": ([[{"name": "bin", "type": "dir"}, {"name": "bin/dash", "type": "sym", "link": "dash"},
                         {"name": "a", "type": "sym", "link": "b"}, {"name": "b", "type": "sym", "link": "a"}]],
                       lambda r: os.readlink(r / "bin/dash") == "dash"),
    "opaque-whiteout": ([[{"name": "opt", "type": "dir"}, {"name": "opt/a", "data": b"a"},
                          {"name": "opt/sub", "type": "dir"}, {"name": "opt/sub/b", "data": b"b"}],
                         [{"name": "opt", "type": "dir"}, {"name": "opt/.wh..wh..opq"},
                          {"name": "opt/c", "data": b"c"}]],
                        lambda r: sorted(os.listdir(r / "opt")) == ["c"]),
    "whiteouts-of-files-and-dirs": ([[{"name": "var/keep", "data": b"k"}, {"name": "var/gone", "data": b"g"},
                                      {"name": "var/cache/x", "data": b"x"}],
                                     [{"name": "var/.wh.gone"}, {"name": "var/.wh.cache"}]],
                                    lambda r: sorted(os.listdir(r / "var")) == ["keep"]),
    "whiteout-under-symlinked-dir": ([[{"name": "real", "type": "dir"}, {"name": "real/f", "data": b"f"},
                                       {"name": "real/g", "data": b"g"},
                                       {"name": "alias", "type": "sym", "link": "real"}],
                                      [{"name": "alias/.wh.f"}]],
                                     lambda r: sorted(os.listdir(r / "real")) == ["g"]),
    "hardlinks-to-earlier-files": ([[{"name": "bin/busybox", "data": b"bb", "mode": 0o755},
                                     {"name": "bin/ls", "type": "hard", "link": "bin/busybox"}],
                                    [{"name": "sbin/init", "type": "hard", "link": "bin/busybox"}]],
                                   lambda r: os.stat(r / "bin/ls").st_ino == os.stat(r / "bin/busybox").st_ino),
    "hardlink-to-symlink": ([[{"name": "target", "data": b"t"}, {"name": "s", "type": "sym", "link": "target"},
                              {"name": "h", "type": "hard", "link": "s"}]],
                            lambda r: os.readlink(r / "h") == "target"),
    "read-only-dir-then-entries": ([[{"name": "ro", "type": "dir", "mode": 0o555},
                                     {"name": "ro/f", "data": b"r", "mode": 0o444},
                                     {"name": "ro/sub", "type": "dir", "mode": 0o500}],
                                    [{"name": "ro/g", "data": b"later", "mode": 0o400}]],
                                   lambda r: _rd(r, "ro/g") == b"later"
                                   and stat.S_IMODE(os.stat(r / "ro").st_mode) == 0o555),
    "setuid-setgid-sticky": ([[{"name": "usr/bin/passwd", "data": b"suid", "mode": 0o4755},
                               {"name": "usr/bin/wall", "data": b"sgid", "mode": 0o2755},
                               {"name": "srv", "type": "dir", "mode": 0o2775},
                               {"name": "tmp", "type": "dir", "mode": 0o1777}]],
                             lambda r: stat.S_IMODE(os.stat(r / "tmp").st_mode) == 0o1777
                             and stat.S_IMODE(os.stat(r / "usr/bin/passwd").st_mode) == 0o4755),
    "file-replaced-by-dir": ([[{"name": "x", "data": b"file"}], [{"name": "x", "type": "dir"},
                                                                {"name": "x/y", "data": b"y"}]],
                             lambda r: _rd(r, "x/y") == b"y"),
    "dir-replaced-by-file": ([[{"name": "d", "type": "dir"}, {"name": "d/z", "data": b"z"}],
                              [{"name": "d", "data": b"now a file"}]],
                             lambda r: _rd(r, "d") == b"now a file"),
    "symlink-replaced-by-dir": ([[{"name": "target", "type": "dir"}, {"name": "target/t", "data": b"t"},
                                  {"name": "l", "type": "sym", "link": "target"}],
                                 [{"name": "l", "type": "dir"}, {"name": "l/f", "data": b"f"}]],
                                lambda r: stat.S_ISDIR(os.lstat(r / "l").st_mode)),
    "long-names": ([[{"name": "n" * 255, "data": b"255"},
                     {"name": "/".join(["d" * 200] * 5) + "/" + "f" * 255, "data": b"deep"},
                     {"name": "l" * 100, "type": "sym", "link": "t" * 1000}]],
                   lambda r: _rd(r, "n" * 255) == b"255"),
    "non-ascii-names": ([[{"name": "naïve", "type": "dir"}, {"name": "naïve/日本語.txt", "data": b"nihongo"},
                          {"name": "with space & 'quotes'", "data": b"q"},
                          {"name": "emoji-\U0001f600", "type": "sym", "link": "naïve/日本語.txt"}]],
                        lambda r: _rd(r, "naïve/日本語.txt") == b"nihongo"),
    "non-utf8-and-control-names": ([[{"name": "latin1-\udce9t\udce9", "data": b"x"},
                                     {"name": "new\nline", "data": b"y"},
                                     {"name": "ctl-\x01-\x7f", "type": "sym", "link": "latin1-\udce9t\udce9"}]],
                                   lambda r: (r / os.fsdecode(b"latin1-\xe9t\xe9")).read_bytes() == b"x"),
    "empty-dirs-and-files": ([[{"name": "a/b/c", "type": "dir"}, {"name": "empty", "data": b""},
                               {"name": "e", "type": "dir", "mode": 0o700}]],
                             lambda r: os.listdir(r / "a/b/c") == []),
    "implicit-parents-and-dot-paths": ([[{"name": "./p/q/r/f", "data": b"f"},
                                         {"name": "usr/lib/jvm/../../local", "type": "dir"},
                                         {"name": "usr/./share//doc/x", "data": b"x"}]],
                                       lambda r: _rd(r, "p/q/r/f") == b"f" and (r / "usr/local").is_dir()),
    "fifo-rootless": ([[{"name": "run", "type": "dir"}, {"name": "run/initctl", "type": "fifo", "mode": 0o600}]],
                      lambda r: stat.S_ISFIFO(os.lstat(r / "run/initctl").st_mode)),
}


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
