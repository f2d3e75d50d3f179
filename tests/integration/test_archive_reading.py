"""Reading oci-archive and docker-archive places (issue #12): only the
members a descriptor names are extracted into TMPDIR, each bound by its
descriptor's size and checked against its digest; sparse members are
refused; a full TMPDIR is named.  TMPDIR is a small tmpfs here, so an
archive that would fill it shows, and it must be empty afterwards."""
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

from imagegen import make_image

MiB = 1 << 20


@pytest.fixture
def small_tmpdir(tmp_path):
    """A 4 MiB tmpfs as TMPDIR (the tests run as root)."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", d], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", d], check=True)


def left_bytes(d):
    n = 0
    for dirpath, dirnames, filenames in os.walk(d):
        n += len(dirnames) + sum(os.lstat(os.path.join(dirpath, f)).st_size + 1 for f in filenames)
    return n


class Zeros(io.RawIOBase):
    def __init__(self, n):
        self.left = n

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def members_of(archive):
    with tarfile.open(archive) as t:
        return [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]


def write_archive(path, members, extra=(), compress=False):
    """members: (TarInfo, data) pairs; extra: (TarInfo, fileobj) appended."""
    raw = io.BytesIO() if not compress else None
    f = gzip.open(path, "wb", compresslevel=1) if compress else open(path, "wb")
    with f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
        for ti, fo in extra:
            t.addfile(ti, fo)
    return path


@pytest.fixture
def good_archive(kiln, tmp_path):
    make_image(tmp_path / "img", "x", [{"etc/": ("dir",), "etc/a": os.urandom(300_000)}],
               compression="none")
    a = tmp_path / "good.tar"
    kiln.run("copy", f"oci:{tmp_path}/img:x", f"oci-archive:{a}:x")
    digest = kiln.run("digest", f"oci:{tmp_path}/img:x").stdout.strip()
    return a, digest


def read(kiln, archive, tmpdir, kind="oci-archive"):
    return kiln.run("digest", f"{kind}:{archive}", check=False, env={"TMPDIR": str(tmpdir)})


def record(figures, tmpdir, escaped=0):
    left = left_bytes(tmpdir)
    figures.count("archives: hostile archive members tried")
    figures.zero("archives: hostile archive members / TMPDIR bytes left or escapes", left + escaped)
    assert left == 0, os.listdir(tmpdir)


def test_reads_plain_and_gzipped_archives_in_a_small_tmpdir(kiln, tmp_path, good_archive, small_tmpdir):
    a, digest = good_archive
    p = read(kiln, a, small_tmpdir)
    assert p.returncode == 0 and p.stdout.strip() == digest, p.stderr
    gz = tmp_path / "good.tar.gz"
    gz.write_bytes(gzip.compress(a.read_bytes()))
    p = read(kiln, gz, small_tmpdir)
    assert p.returncode == 0 and p.stdout.strip() == digest, p.stderr
    assert left_bytes(small_tmpdir) == 0


def test_hostile_unreferenced_huge_member_is_not_extracted(kiln, tmp_path, good_archive,
                                                          small_tmpdir, figures):
    a, digest = good_archive
    ti = tarfile.TarInfo("blobs/sha256/" + "0" * 64)
    ti.size = 64 * MiB  # 16 times the tmpfs
    bad = write_archive(tmp_path / "huge.tar", members_of(a), [(ti, Zeros(ti.size))])
    p = read(kiln, bad, small_tmpdir)
    assert p.returncode == 0 and p.stdout.strip() == digest, p.stderr
    record(figures, small_tmpdir)


def test_hostile_gzip_bomb_is_not_extracted(kiln, tmp_path, good_archive, small_tmpdir, figures):
    a, digest = good_archive
    ti = tarfile.TarInfo("blobs/sha256/" + "1" * 64)
    ti.size = 256 * MiB
    bomb = write_archive(tmp_path / "bomb.tar.gz", members_of(a), [(ti, Zeros(ti.size))],
                         compress=True)
    assert bomb.stat().st_size < 2 * MiB
    p = read(kiln, bomb, small_tmpdir)
    assert p.returncode == 0 and p.stdout.strip() == digest, p.stderr
    record(figures, small_tmpdir)


def _sparse_member(name, realsize):
    """A PAX 1.0 GNU sparse member: one 512-byte chunk at the end of realsize."""
    smap = f"1\n{realsize - 512}\n512\n".encode().ljust(512, b"\0")
    ti = tarfile.TarInfo("GNUSparseFile.0/" + name.rsplit("/", 1)[-1])
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                      "GNU.sparse.name": name, "GNU.sparse.realsize": str(realsize)}
    data = smap + b"s" * 512
    ti.size = len(data)
    return ti, data


@pytest.mark.parametrize("referenced", [False, True])
def test_hostile_sparse_member_is_refused(kiln, tmp_path, good_archive, small_tmpdir, figures,
                                         referenced):
    a, _ = good_archive
    ms = members_of(a)
    if referenced:
        # the image's own layer, as a 1 TiB sparse member
        layer = max((m for m in ms if m[0].name.startswith("blobs/")), key=lambda m: m[0].size)
        ms = [m for m in ms if m is not layer]
        ti, data = _sparse_member(layer[0].name, 1 << 40)
    else:
        ti, data = _sparse_member("blobs/sha256/" + "2" * 64, 1 << 40)
    bad = write_archive(tmp_path / "sparse.tar", ms + [(ti, data)])
    assert bad.stat().st_size < 1 * MiB
    _, line = kiln.fails("digest", f"oci-archive:{bad}", env={"TMPDIR": str(small_tmpdir)})
    assert "is sparse" in line and "sparse.tar" in line, line
    record(figures, small_tmpdir)


def test_hostile_member_larger_than_its_descriptor_is_refused(kiln, tmp_path, good_archive,
                                                             small_tmpdir, figures):
    a, _ = good_archive
    ms = members_of(a)
    layer = max((m for m in ms if m[0].name.startswith("blobs/")), key=lambda m: m[0].size)
    grown = tarfile.TarInfo(layer[0].name)
    data = layer[1] + bytes(8 * MiB)
    grown.size = len(data)
    bad = write_archive(tmp_path / "grown.tar", [m for m in ms if m is not layer] + [(grown, data)])
    _, line = kiln.fails("digest", f"oci-archive:{bad}", env={"TMPDIR": str(small_tmpdir)})
    assert f"entry '{layer[0].name}' is larger than the {layer[0].size} bytes its descriptor says" \
        in line, line
    record(figures, small_tmpdir)


def test_hostile_member_with_another_digest_is_refused(kiln, tmp_path, good_archive,
                                                      small_tmpdir, figures):
    a, _ = good_archive
    ms = members_of(a)
    layer = max((m for m in ms if m[0].name.startswith("blobs/")), key=lambda m: m[0].size)
    data = bytes(len(layer[1]))
    ti = tarfile.TarInfo(layer[0].name)
    ti.size = len(data)
    bad = write_archive(tmp_path / "other.tar", [m for m in ms if m is not layer] + [(ti, data)])
    _, line = kiln.fails("digest", f"oci-archive:{bad}", env={"TMPDIR": str(small_tmpdir)})
    assert "does not match its digest" in line, line
    record(figures, small_tmpdir)


def test_full_tmpdir_is_named(kiln, tmp_path, small_tmpdir):
    make_image(tmp_path / "img", "x", [{"big": os.urandom(6 * MiB)}], compression="none")
    a = tmp_path / "big.tar"
    kiln.run("copy", f"oci:{tmp_path}/img:x", f"oci-archive:{a}:x")
    _, line = kiln.fails("digest", f"oci-archive:{a}", env={"TMPDIR": str(small_tmpdir)})
    assert "no space left on device writing '" + str(small_tmpdir) in line, line
    assert left_bytes(small_tmpdir) == 0


def test_docker_archive_reads_only_what_manifest_json_names(kiln, tmp_path, good_archive,
                                                            small_tmpdir, figures):
    a, digest = good_archive
    da = tmp_path / "d.tar"
    kiln.run("copy", f"oci-archive:{a}:x", f"docker-archive:{da}:example.com/a:1")
    ti = tarfile.TarInfo("unrelated/layer.tar")
    ti.size = 64 * MiB
    bad = write_archive(tmp_path / "dhuge.tar", members_of(da), [(ti, Zeros(ti.size))])
    p = read(kiln, bad, small_tmpdir, kind="docker-archive")
    assert p.returncode == 0 and p.stdout.strip() == digest, p.stderr
    record(figures, small_tmpdir)
