"""Issue: foundation. The verbs on local places, interop with umoci, skopeo,
oci-image-tool and the image-spec schemas, and bad input."""
import gzip
import io
import json
import os
import pathlib
import tarfile

import pytest

from conftest import blob_path, read_index, run


def test_version_and_help(kiln):
    assert kiln.run("version").stdout.startswith("kiln ")
    out = kiln.run("help").stdout
    for verb in ("inspect", "digest", "copy", "ls", "fsck"):
        assert verb in out
    p = kiln.run("frobnicate", check=False)
    assert p.returncode == 2 and "unknown verb 'frobnicate'" in p.stderr


def test_reads_umoci_layout(kiln, umoci_image):
    want = [m for m in read_index(umoci_image)["manifests"]
            if m["annotations"]["org.opencontainers.image.ref.name"] == "base"][0]
    assert kiln.run("digest", f"oci:{umoci_image}:base").stdout.strip() == want["digest"]
    out = kiln.run("inspect", f"oci:{umoci_image}:base").stdout
    manifest = json.loads(blob_path(umoci_image, want["digest"]).read_bytes())
    assert manifest["config"]["digest"] in out
    for layer in manifest["layers"]:
        assert layer["digest"] in out
    assert "A=1" in out and "/bin/sh" in out
    # --raw gives the exact bytes, --config the exact config bytes
    raw = kiln.run("inspect", "--raw", f"oci:{umoci_image}:base").stdout
    assert raw.encode() == blob_path(umoci_image, want["digest"]).read_bytes()
    cfg = kiln.run("inspect", "--config", "--raw", f"oci:{umoci_image}:base").stdout
    assert cfg.encode() == blob_path(umoci_image, manifest["config"]["digest"]).read_bytes()


def test_reads_skopeo_layout(kiln, umoci_image, tmp_path):
    dst = tmp_path / "sk"
    run("skopeo", "copy", f"oci:{umoci_image}:base", f"oci:{dst}:v1")
    want = read_index(dst)["manifests"][0]["digest"]
    assert kiln.run("digest", f"oci:{dst}:v1").stdout.strip() == want
    assert kiln.run("fsck", f"oci:{dst}").returncode == 0


def test_copy_preserves_digest_and_passes_validators(kiln, umoci_image, tmp_path, oci_schema):
    src = f"oci:{umoci_image}:base"
    digest = kiln.run("digest", src).stdout.strip()
    out = tmp_path / "out"
    assert kiln.run("copy", src, f"oci:{out}:v1").stdout.strip() == digest
    # independent validators
    run("oci-image-tool", "validate", "--type", "image", "--ref", "name=v1", out)
    index = read_index(out)
    oci_schema("index", index)
    oci_schema("layout", json.loads((out / "oci-layout").read_text()))
    manifest = json.loads(blob_path(out, index["manifests"][0]["digest"]).read_bytes())
    oci_schema("manifest", manifest)
    oci_schema("config", json.loads(blob_path(out, manifest["config"]["digest"]).read_bytes()))
    insp = json.loads(run("skopeo", "inspect", f"oci:{out}:v1").stdout)
    assert insp["Digest"] == digest
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"oci:{out}:v1".removeprefix("oci:"), bundle)
    assert (bundle / "rootfs" / "etc" / "hello").read_text() == "hello from umoci\n"
    assert kiln.run("fsck", f"oci:{out}").stdout.endswith("0 problems\n")
    ls = kiln.run("ls", f"oci:{out}").stdout
    assert ls == f"v1\t{digest}\n"


def test_copy_through_archives_keeps_digest(kiln, umoci_image, tmp_path):
    src = f"oci:{umoci_image}:base"
    digest = kiln.run("digest", src).stdout.strip()
    oa = tmp_path / "img.oci.tar"
    da = tmp_path / "img.docker.tar"
    kiln.run("copy", src, f"oci-archive:{oa}:v1")
    assert kiln.run("digest", f"oci-archive:{oa}:v1").stdout.strip() == digest
    kiln.run("copy", f"oci-archive:{oa}:v1", f"docker-archive:{da}:example.com/team/img:v2")
    with tarfile.open(da) as t:
        mj = json.load(t.extractfile("manifest.json"))
    assert mj[0]["RepoTags"] == ["example.com/team/img:v2"]
    assert kiln.run("digest", f"docker-archive:{da}").stdout.strip() == digest
    back = tmp_path / "back"
    assert kiln.run("copy", f"docker-archive:{da}:example.com/team/img:v2",
                    f"oci:{back}:v3").stdout.strip() == digest
    # skopeo reads kiln's archives
    insp = json.loads(run("skopeo", "inspect", f"oci-archive:{oa}:v1").stdout)
    assert insp["Digest"] == digest
    run("skopeo", "inspect", f"docker-archive:{da}")
    # the archive is deterministic: same image, same bytes
    oa2 = tmp_path / "img2.oci.tar"
    kiln.run("copy", src, f"oci-archive:{oa2}:v1")
    assert oa.read_bytes() == oa2.read_bytes()


def test_reads_skopeo_docker_archive(kiln, umoci_image, tmp_path):
    da = tmp_path / "sk.tar"
    run("skopeo", "copy", f"oci:{umoci_image}:base", f"docker-archive:{da}:foo/bar:1")
    out = tmp_path / "out"
    kiln.run("copy", f"docker-archive:{da}:foo/bar:1", f"oci:{out}:x")
    assert kiln.run("fsck", f"oci:{out}").returncode == 0
    insp = kiln.run("inspect", f"oci:{out}:x").stdout
    assert "application/vnd.docker.distribution.manifest.v2+json" in insp
    p, line = kiln.fails("copy", f"docker-archive:{da}:foo/bar:2", f"oci:{out}:y", code=5)
    assert "'foo/bar:2' not found" in line


def _copy_layout(kiln, umoci_image, tmp_path, name="c"):
    out = tmp_path / name
    kiln.run("copy", f"oci:{umoci_image}:base", f"oci:{out}:v1")
    index = read_index(out)
    mdigest = index["manifests"][0]["digest"]
    manifest = json.loads(blob_path(out, mdigest).read_bytes())
    return out, mdigest, manifest


def test_bad_index_json(kiln, umoci_image, tmp_path):
    out, _, _ = _copy_layout(kiln, umoci_image, tmp_path)
    idx = out / "index.json"
    good = idx.read_bytes()
    idx.write_bytes(good[: len(good) // 2])
    _, line = kiln.fails("inspect", f"oci:{out}:v1", code=3)
    assert "invalid JSON" in line and "index" in line
    idx.write_bytes(b"this is not json")
    kiln.fails("digest", f"oci:{out}:v1", code=3)
    p = kiln.run("fsck", f"oci:{out}", check=False)
    assert p.returncode == 1 and "problem: index.json" in p.stdout
    idx.write_bytes(b'{"schemaVersion":2,"manifests":[],"manifests":[]}')
    _, line = kiln.fails("inspect", f"oci:{out}:v1")
    assert "duplicate" in line


def test_blob_bytes_not_matching_name(kiln, umoci_image, tmp_path):
    out, mdigest, manifest = _copy_layout(kiln, umoci_image, tmp_path)
    layer = blob_path(out, manifest["layers"][0]["digest"])
    data = bytearray(layer.read_bytes())
    data[-1] ^= 0xFF
    os.chmod(layer, 0o644)
    layer.write_bytes(bytes(data))
    p = kiln.run("fsck", f"oci:{out}", check=False)
    assert p.returncode == 1
    assert manifest["layers"][0]["digest"] in p.stdout and "does not match its digest" in p.stdout
    # copying the corrupt image fails, leaves no tag and no bad blob behind
    dst = tmp_path / "dst"
    _, line = kiln.fails("copy", f"oci:{out}:v1", f"oci:{dst}:v1", code=4)
    assert manifest["layers"][0]["digest"] in line
    assert read_index(dst)["manifests"] == []
    assert not blob_path(dst, manifest["layers"][0]["digest"]).exists()
    assert not blob_path(dst, mdigest).exists()
    assert kiln.run("fsck", f"oci:{dst}").returncode == 0


def test_descriptor_with_wrong_size(kiln, umoci_image, tmp_path):
    out, mdigest, manifest = _copy_layout(kiln, umoci_image, tmp_path)
    index = read_index(out)
    index["manifests"][0]["size"] += 1
    (out / "index.json").write_text(json.dumps(index))
    _, line = kiln.fails("inspect", f"oci:{out}:v1", code=4)
    assert mdigest in line and "bytes" in line
    p = kiln.run("fsck", f"oci:{out}", check=False)
    assert p.returncode == 1 and mdigest in p.stdout


def test_missing_blob(kiln, umoci_image, tmp_path):
    out, mdigest, manifest = _copy_layout(kiln, umoci_image, tmp_path)
    blob_path(out, manifest["config"]["digest"]).unlink()
    _, line = kiln.fails("inspect", f"oci:{out}:v1", code=5)
    assert manifest["config"]["digest"] in line
    p = kiln.run("fsck", f"oci:{out}", check=False)
    assert p.returncode == 1
    assert f"blob '{manifest['config']['digest']}' (config of manifest" in p.stdout
    assert "is missing" in p.stdout


def _big_manifest_layout(kiln, umoci_image, tmp_path):
    """A layout whose tag 'big' names a manifest of just over 4 MiB."""
    out, mdigest, manifest = _copy_layout(kiln, umoci_image, tmp_path)
    manifest["annotations"] = {"pad": "x" * (4 * 1024 * 1024 + 1)}
    raw = json.dumps(manifest).encode()
    import hashlib
    d = "sha256:" + hashlib.sha256(raw).hexdigest()
    blob_path(out, d).write_bytes(raw)
    index = read_index(out)
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": len(raw),
                               "annotations": {"org.opencontainers.image.ref.name": "big"}})
    (out / "index.json").write_text(json.dumps(index))
    return out


def test_manifest_over_4mib(kiln, umoci_image, tmp_path):
    out = _big_manifest_layout(kiln, umoci_image, tmp_path)
    _, line = kiln.fails("inspect", f"oci:{out}:big", code=8)
    assert "larger than the limit" in line


def test_manifest_limit_env_raises_and_is_bounded(kiln, umoci_image, tmp_path):
    """KILN_MANIFEST_MAX raises the limit up to 64 MiB; a larger or malformed
    value is refused before anything is read or written."""
    out = _big_manifest_layout(kiln, umoci_image, tmp_path)
    kiln.run("inspect", f"oci:{out}:big", env={"KILN_MANIFEST_MAX": str(8 * 1024 * 1024)})
    dst = tmp_path / "dst"
    for bad in (str(64 * 1024 * 1024 + 1), "18446744073709551617", "-1", "4MiB", "0"):
        _, line = kiln.fails("copy", f"oci:{out}:big", f"oci:{dst}:big", code=2,
                             env={"KILN_MANIFEST_MAX": bad})
        assert line == f"kiln: error: invalid KILN_MANIFEST_MAX '{bad}': expected a number of bytes from 1 to 67108864"
        assert not dst.exists()


@pytest.mark.parametrize("ref,part", [
    ("Ubuntu:22.04", "repository name must be lowercase"),
    ("foo@sha256:abc", "needs 64 hex characters"),
    ("foo:" + "a" * 129, "longer than 128"),
    ("foo//bar", "empty path component"),
    ("oci:", "missing path"),
])
def test_invalid_reference(kiln, ref, part):
    _, line = kiln.fails("inspect", ref, code=3)
    assert part in line and "'" in line


def test_unknown_tag_and_missing_layout(kiln, umoci_image, tmp_path):
    _, line = kiln.fails("inspect", f"oci:{umoci_image}:nope", code=5)
    assert "'nope'" in line
    _, line = kiln.fails("inspect", f"oci:{tmp_path}/none:x", code=5)
    empty = tmp_path / "empty"
    empty.mkdir()
    _, line = kiln.fails("inspect", f"oci:{empty}:x", code=3)
    assert "missing oci-layout" in line


def _tar_with(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data, kind in members:
            ti = tarfile.TarInfo(name)
            if kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("members,part", [
    ([("../escape", b"x", "file")], "unsafe entry name '../escape'"),
    ([("/abs", b"x", "file")], "unsafe entry name"),
    ([("blobs/sha256/evil", "/etc/passwd", "sym")], "points outside the archive"),
    ([("index.json", b"x" * (4 * 1024 * 1024 + 1), "file")], "larger than the limit"),
])
def test_hostile_oci_archive_refused(kiln, tmp_path, members, part):
    a = tmp_path / "bad.tar"
    a.write_bytes(_tar_with([("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', "file")] + members))
    _, line = kiln.fails("inspect", f"oci-archive:{a}")
    assert part in line
    assert not (tmp_path.parent / "escape").exists()


def test_failed_archive_write_leaves_no_file(kiln, umoci_image, tmp_path):
    out, _, manifest = _copy_layout(kiln, umoci_image, tmp_path)
    blob_path(out, manifest["layers"][0]["digest"]).unlink()
    target = tmp_path / "x.tar"
    kiln.fails("copy", f"oci:{out}:v1", f"oci-archive:{target}:v1", code=5)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".x.tar")] == []


def test_fsck_deep_names_layer_and_both_digests(kiln, tmp_path):
    import hashlib
    from imagegen import make_image
    lay = tmp_path / "img"
    md = make_image(lay, "x", [{"a": b"one"}, {"b": b"two"}])
    assert kiln.run("fsck", "--deep", f"oci:{lay}").returncode == 0
    # a config whose second diffID is wrong: plain fsck cannot see it, --deep can
    manifest = json.loads(blob_path(lay, md).read_bytes())
    cfg = json.loads(blob_path(lay, manifest["config"]["digest"]).read_bytes())
    real = cfg["rootfs"]["diff_ids"][1]
    cfg["rootfs"]["diff_ids"][1] = "sha256:" + "0" * 64
    raw = json.dumps(cfg).encode()
    cd = "sha256:" + hashlib.sha256(raw).hexdigest()
    blob_path(lay, cd).write_bytes(raw)
    manifest["config"] = {"mediaType": manifest["config"]["mediaType"], "digest": cd, "size": len(raw)}
    mraw = json.dumps(manifest).encode()
    nd = "sha256:" + hashlib.sha256(mraw).hexdigest()
    blob_path(lay, nd).write_bytes(mraw)
    index = read_index(lay)
    index["manifests"][0].update(digest=nd, size=len(mraw))
    (lay / "index.json").write_text(json.dumps(index))
    assert kiln.run("fsck", f"oci:{lay}").returncode == 0
    p = kiln.run("fsck", "--deep", f"oci:{lay}", check=False)
    assert p.returncode == 1
    assert manifest["layers"][1]["digest"] in p.stdout and real in p.stdout and "0" * 64 in p.stdout
    assert "layer 1 of manifest" in p.stdout


def test_index_with_unknown_entries_copied_bit_for_bit(kiln, tmp_path):
    import hashlib
    from imagegen import make_image, _put
    lay = tmp_path / "src"
    md = make_image(lay, "one", [{"a": b"1"}])
    mraw = blob_path(lay, md).read_bytes()
    other = b"opaque artifact bytes"
    od = _put(lay, other)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [
                 {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
                  "size": len(mraw), "platform": {"architecture": "amd64", "os": "linux"}},
                 {"mediaType": "application/x.unknown+thing", "digest": od, "size": len(other),
                  "x-future-field": {"kept": True}}],
             "x-top-level-unknown": 1}
    iraw = json.dumps(index, indent=3).encode()   # odd formatting must survive
    idg = _put(lay, iraw)
    top = read_index(lay)
    top["manifests"].append({"mediaType": index["mediaType"], "digest": idg, "size": len(iraw),
                             "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    (lay / "index.json").write_text(json.dumps(top))
    dst = tmp_path / "dst"
    assert kiln.run("copy", f"oci:{lay}:multi", f"oci:{dst}:multi").stdout.strip() == idg
    assert blob_path(dst, idg).read_bytes() == iraw
    assert blob_path(dst, od).read_bytes() == other
    assert kiln.run("fsck", f"oci:{dst}").returncode == 0
    # --platform picks the one image out of the index
    one = tmp_path / "one"
    assert kiln.run("copy", "--platform", "linux/amd64", f"oci:{lay}:multi",
                    f"oci:{one}:x").stdout.strip() == md
    _, line = kiln.fails("copy", "--platform", "linux/s390x", f"oci:{lay}:multi", f"oci:{one}:y", code=5)
    assert "linux/s390x" in line
