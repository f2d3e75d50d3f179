"""Referrers: a manifest with a `subject` pushed to a registry without the
referrers API updates the tag-schema index "sha256-<hex>"; kiln copy
--referrers carries the referrers along, to a registry or to a layout."""
import hashlib
import json

import imagegen

SBOM_TYPE = "application/vnd.example.sbom.v1"


def _put(lay, data):
    d = hashlib.sha256(data).hexdigest()
    (lay / "blobs" / "sha256" / d).write_bytes(data)
    return "sha256:" + d


def _artifact_layout(lay, subject_digest, subject_size):
    (lay / "blobs" / "sha256").mkdir(parents=True)
    (lay / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    empty = _put(lay, b"{}")
    body = b'{"spdxVersion":"SPDX-2.3","name":"kiln-test"}'
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "artifactType": SBOM_TYPE,
         "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
         "layers": [{"mediaType": "application/spdx+json", "digest": _put(lay, body), "size": len(body)}],
         "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "digest": subject_digest, "size": subject_size},
         "annotations": {"org.example.kind": "sbom"}}
    raw = json.dumps(m, separators=(",", ":")).encode()
    md = _put(lay, raw)
    (lay / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": m["mediaType"], "digest": md, "size": len(raw),
         "annotations": {"org.opencontainers.image.ref.name": "sbom"}}]}))
    return md


def _fallback(reg, repo, digest):
    st, h, body = reg.api(f"/v2/{repo}/manifests/sha256-{digest.split(':')[1]}",
                          headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    return st, (json.loads(body) if st == 200 else None)


def test_registry_referrers_tag_schema_and_copy(kiln, registry, registry_factory, tmp_path):
    other = registry_factory()
    img = tmp_path / "img"
    imagegen.make_image(img, "v1", [{"a": b"subject image"}])
    d = kiln.run("copy", f"oci:{img}:v1", registry.ref("ref/app", "v1")).stdout.strip()
    size = len((img / "blobs" / "sha256" / d.split(":")[1]).read_bytes())
    art = _artifact_layout(tmp_path / "art", d, size)
    kiln.run("copy", f"oci:{tmp_path / 'art'}:sbom", f"{registry.host}/ref/app@{art}")
    # the registry (distribution 2.8) has no referrers API: kiln wrote the tag schema index
    st, idx = _fallback(registry, "ref/app", d)
    assert st == 200, "no fallback index"
    assert [(m["digest"], m.get("artifactType")) for m in idx["manifests"]] == [(art, SBOM_TYPE)]
    assert idx["manifests"][0]["annotations"] == {"org.example.kind": "sbom"}
    # pushing it again does not list it twice
    kiln.run("copy", f"oci:{tmp_path / 'art'}:sbom", f"{registry.host}/ref/app@{art}")
    assert len(_fallback(registry, "ref/app", d)[1]["manifests"]) == 1
    # --referrers: registry -> registry
    res = json.loads(kiln.run("copy", "--json", "--referrers", registry.ref("ref/app", "v1"),
                              other.ref("copied/app", "v1")).stdout)
    assert res["digest"] == d and res["referrersCopied"] == 1
    st, idx2 = _fallback(other, "copied/app", d)
    assert st == 200 and [m["digest"] for m in idx2["manifests"]] == [art]
    # --referrers: registry -> layout (an untagged entry next to the image)
    out = tmp_path / "out"
    kiln.run("copy", "--referrers", registry.ref("ref/app", "v1"), f"oci:{out}:v1")
    digests = [m["digest"] for m in json.loads((out / "index.json").read_text())["manifests"]]
    assert d in digests and art in digests
    kiln.run("fsck", f"oci:{out}")


def test_registry_copy_without_referrers_flag_leaves_them(kiln, registry, registry_factory, tmp_path):
    other = registry_factory()
    img = tmp_path / "img"
    imagegen.make_image(img, "v1", [{"a": b"subject image 2"}])
    d = kiln.run("copy", f"oci:{img}:v1", registry.ref("ref2/app", "v1")).stdout.strip()
    size = len((img / "blobs" / "sha256" / d.split(":")[1]).read_bytes())
    art = _artifact_layout(tmp_path / "art", d, size)
    kiln.run("copy", f"oci:{tmp_path / 'art'}:sbom", f"{registry.host}/ref2/app@{art}")
    kiln.run("copy", registry.ref("ref2/app", "v1"), other.ref("copied2/app", "v1"))
    assert _fallback(other, "copied2/app", d)[0] == 404


def _artifact(lay, subject_digest, subject_size, artifact_type, body, tag):
    """Adds to the layout lay an artifact of artifact_type about subject, tagged tag."""
    (lay / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (lay / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    empty = _put(lay, b"{}")
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "artifactType": artifact_type,
         "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
         "layers": [{"mediaType": "application/octet-stream", "digest": _put(lay, body),
                     "size": len(body)}],
         "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "digest": subject_digest, "size": subject_size}}
    raw = json.dumps(m, separators=(",", ":")).encode()
    md = _put(lay, raw)
    idx = lay / "index.json"
    entries = json.loads(idx.read_text())["manifests"] if idx.exists() else []
    entries.append({"mediaType": m["mediaType"], "digest": md, "size": len(raw),
                    "annotations": {"org.opencontainers.image.ref.name": tag}})
    idx.write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    return md, len(raw)


def test_registry_referrers_of_referrers_and_type_filter(kiln, registry, registry_factory, tmp_path):
    other = registry_factory()
    img = tmp_path / "img"
    imagegen.make_image(img, "v1", [{"a": b"subject image 3"}])
    d = kiln.run("copy", f"oci:{img}:v1", registry.ref("ref3/app", "v1")).stdout.strip()
    size = len((img / "blobs" / "sha256" / d.split(":")[1]).read_bytes())
    art = tmp_path / "art"
    sbom, sbom_size = _artifact(art, d, size, SBOM_TYPE, b"sbom body", "sbom")
    sig_of_sbom, _ = _artifact(art, sbom, sbom_size, "application/vnd.example.sig.v1", b"sig", "sig")
    other_kind, _ = _artifact(art, d, size, "application/vnd.example.other.v1", b"other", "other")
    for tag, dg in (("sbom", sbom), ("sig", sig_of_sbom), ("other", other_kind)):
        kiln.run("copy", f"oci:{art}:{tag}", f"{registry.host}/ref3/app@{dg}")
    # all of them, the signature of the SBOM included
    res = json.loads(kiln.run("copy", "--json", "--referrers", registry.ref("ref3/app", "v1"),
                              other.ref("all/app", "v1")).stdout)
    assert res["referrersCopied"] == 3
    assert sorted(m["digest"] for m in _fallback(other, "all/app", d)[1]["manifests"]) == \
        sorted([sbom, other_kind])
    assert [m["digest"] for m in _fallback(other, "all/app", sbom)[1]["manifests"]] == [sig_of_sbom]
    # only SBOMs (and what refers to them)
    res = json.loads(kiln.run("copy", "--json", "--artifact-type", SBOM_TYPE,
                              registry.ref("ref3/app", "v1"), other.ref("some/app", "v1")).stdout)
    assert res["referrersCopied"] == 2
    assert [m["digest"] for m in _fallback(other, "some/app", d)[1]["manifests"]] == [sbom]
    assert [m["digest"] for m in _fallback(other, "some/app", sbom)[1]["manifests"]] == [sig_of_sbom]
