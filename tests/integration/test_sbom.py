"""kiln build --sbom: an SPDX 2.3 document of every wheel and .deb, attached to
the image as an OCI artifact whose subject is the image.

The real registry (Debian's docker-registry 2.8) has no referrers API, so kiln
keeps the tag-schema index sha256-<hex>.  Debian ships no registry with the
API either: registry_util.ReferrersProxy emulates it (distribution-spec 1.1)
in front of the real registry, so the API path is tested against the same
storage."""
import functools
import hashlib
import http.server
import json
import os
import re
import subprocess
import tarfile
import threading
import urllib.request
from urllib.parse import quote

import pytest

from conftest import blob_path, read_index
from imagegen import make_image
from recipes_helpers import gpg_key, make_apt_repo, make_deb, make_simple_index, make_wheel, sha256
from registry_util import ReferrersProxy

SPDX = "application/spdx+json"
EMPTY = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def make_world(kiln, registry, work, web):
    """A base in the registry and a recipe with every kind of package input:
    wheels by path, from a PEP 503 index (over http at web) and from a build
    step, .debs by path and from an apt mirror (over http).  Returns the
    recipe, the expected packages and the file the build step counts its
    runs in."""
    base = work / "base"
    make_image(base, "b", [{"etc/": ("dir",), "etc/os-release": b"ID=standin\n"}])
    kiln.run("copy", "-q", f"oci:{base}:b", f"{registry.host}/standin/base:1")
    w = work / "wheels"
    by_path = make_wheel(w, "Hello_World", "1.0", py="py3", abi="none", plat="any")
    numpy = make_wheel(w / "idx", "numpy", "1.26.4")
    torch = make_wheel(w / "idx", "torch", "2.7.1+cu126")
    index = make_simple_index(work / "simple", [numpy, torch])
    built = make_wheel(w / "built", "flash_attn", "2.7.4.post1")
    counter = work / "build-runs"
    debs = work / "debs"
    hello = make_deb(debs, "hello", {"usr/share/doc/hello/x": b"hello"}, version="2.10-3+b1")
    libfoo = make_deb(debs, "libfoo1", {"usr/lib/libfoo.so.1": b"foo"}, version="1.0-1")
    libbar = make_deb(debs, "libbar2", {"usr/lib/libbar.so.2": b"bar"}, version="0.9-2")
    mirror = make_apt_repo(work / "mirror", [libfoo, libbar])
    doc = {"recipe": 1, "name": "sbomapp", "base": f"{registry.host}/standin/base:1",
           "variables": {"repo": {"default": f"{registry.host}/sbom/app"}},
           "layers": [
               {"name": "system", "kind": "debs",
                "debs": [{"path": str(hello), "sha256": sha256(hello)}],
                "apt": [{"mirror": f"{web}/{mirror.name}",
                         "index": "dists/jammy/main/binary-amd64/Packages.gz",
                         "keyring": str(gpg_key().keyring),
                         "packages": ["libfoo1", "libbar2"]}]},
               {"name": "python", "kind": "wheels",
                "wheels": [{"path": str(by_path), "sha256": sha256(by_path)}],
                "index": f"{web}/{index.name}",
                "packages": ["torch==2.7.1+cu126", "numpy==1.26.4"]},
               {"name": "compiled", "kind": "build",
                "command": ["sh", "-c", 'cp "$1" "$KILN_OUT/" && echo run >> "$2"', "sh",
                            str(built), str(counter)],
                "inputs": [str(built)], "install": "wheels"}],
           "tag": {"repository": "${repo}", "tag": "v1"}}
    recipe = work / "sbomapp.json"
    recipe.write_text(json.dumps(doc, indent=2))
    files = index.parent / "files"
    want = {
        ("pypi", "hello-world"): ("1.0", sha256(by_path), None),
        ("pypi", "numpy"): ("1.26.4", sha256(files / numpy.name), None),
        ("pypi", "torch"): ("2.7.1+cu126", sha256(files / torch.name), None),
        ("pypi", "flash-attn"): ("2.7.4.post1", sha256(built), None),
        ("deb", "hello"): ("2.10-3+b1", sha256(hello), "amd64"),
        ("deb", "libfoo1"): ("1.0-1", sha256(libfoo), "amd64"),
        ("deb", "libbar2"): ("0.9-2", sha256(libbar), "amd64"),
    }
    return recipe, want, counter


class World:
    pass


@pytest.fixture
def world(kiln, registry_factory, tmp_path):
    """make_world's inputs, the index and the apt mirror served over http."""
    work = tmp_path / "w"
    work.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(Quiet, directory=str(work)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    w = World()
    w.reg = registry_factory()
    w.web = f"http://127.0.0.1:{srv.server_address[1]}"
    w.recipe, w.want, w.counter = make_world(kiln, w.reg, work, w.web)
    yield w
    srv.shutdown()
    srv.server_close()


def build(kiln, recipe, *args, cwd=None, env=None):
    p = subprocess.run([kiln.path, "build", str(recipe), "--sbom", "--json", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd,
                       env=dict(os.environ, **(env or {})), timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", res["sbom"] or ""), res
    return res


DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ$")


def check_spdx(doc):
    """The SPDX 2.3 shape (spec clauses 6-11 and its JSON schema): what every
    document must have, and what kiln promises for each package."""
    for k, t in (("spdxVersion", str), ("dataLicense", str), ("SPDXID", str), ("name", str),
                 ("documentNamespace", str), ("creationInfo", dict), ("packages", list),
                 ("relationships", list)):
        assert isinstance(doc.get(k), t), k
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["SPDXID"] == "SPDXRef-DOCUMENT"
    assert re.match(r"^https://\S+$", doc["documentNamespace"])
    ci = doc["creationInfo"]
    assert DATE.match(ci["created"]) and ci["creators"] and all(
        c.startswith("Tool: kiln-") for c in ci["creators"])
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(ids) == len(set(ids)), "SPDXIDs must be unique"
    for p in doc["packages"]:
        assert re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", p["SPDXID"]), p["SPDXID"]
        assert p["name"] and p["versionInfo"] and p["downloadLocation"]
        assert p["downloadLocation"] == "NOASSERTION" or "://" in p["downloadLocation"]
        assert p["filesAnalyzed"] is False
        assert [c["algorithm"] for c in p["checksums"]] == ["SHA256"]
        assert re.fullmatch(r"[0-9a-f]{64}", p["checksums"][0]["checksumValue"])
        refs = [r for r in p["externalRefs"] if r["referenceType"] == "purl"]
        assert len(refs) == 1 and refs[0]["referenceCategory"] == "PACKAGE-MANAGER"
        assert refs[0]["referenceLocator"].startswith("pkg:")
    rels = [(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
            for r in doc["relationships"]]
    described = [to for frm, typ, to in rels if frm == "SPDXRef-DOCUMENT" and typ == "DESCRIBES"]
    assert described == ["SPDXRef-image"]
    contained = sorted(to for frm, typ, to in rels if frm == "SPDXRef-image" and typ == "CONTAINS")
    assert contained == sorted(i for i in ids if i != "SPDXRef-image")
    # the rest: what the resolvers found, between packages of the document
    others = [r for r in rels if r[0] != "SPDXRef-DOCUMENT" and r[0] != "SPDXRef-image"]
    assert all(typ == "DEPENDS_ON" and frm in ids and to in ids for frm, typ, to in others), others
    assert len(rels) == len(ids) + len(others)


def purl_of(p):
    return next(r["referenceLocator"] for r in p["externalRefs"] if r["referenceType"] == "purl")


def check_lists(doc, want, image_digest, web):
    """Every wheel and .deb with its version, sha256 and purl; nothing else."""
    check_spdx(doc)
    img = next(p for p in doc["packages"] if p["SPDXID"] == "SPDXRef-image")
    assert img["versionInfo"] == image_digest
    assert img["checksums"][0]["checksumValue"] == image_digest.split(":")[1]
    assert img["primaryPackagePurpose"] == "CONTAINER"
    assert purl_of(img).startswith("pkg:oci/app@sha256%3A" + image_digest.split(":")[1])
    got = {}
    for p in doc["packages"]:
        if p is img:
            continue
        purl = purl_of(p)
        kind = purl.split(":")[1].split("/")[0]
        arch = re.search(r"\?arch=(.*)$", purl)
        got[(kind, p["name"])] = (p["versionInfo"], p["checksums"][0]["checksumValue"],
                                  arch.group(1) if arch else None)
    assert got == want
    purls = {purl_of(p) for p in doc["packages"]}
    assert "pkg:pypi/torch@2.7.1%2Bcu126" in purls
    assert "pkg:deb/debian/hello@2.10-3%2Bb1?arch=amd64" in purls
    by_name = {p["name"]: p for p in doc["packages"]}
    # where each came from: the URL it was fetched from; a local file or a built
    # wheel is NOASSERTION; the file name is always there
    numpy = "numpy-1.26.4-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert by_name["numpy"]["downloadLocation"] == f"{web}/files/{numpy}"
    assert by_name["numpy"]["packageFileName"] == numpy
    assert by_name["libfoo1"]["downloadLocation"] == \
        f"{web}/mirror/pool/main/l/libfoo1/libfoo1_1.0-1_amd64.deb"
    assert by_name["hello-world"]["downloadLocation"] == "NOASSERTION"
    assert by_name["flash-attn"]["downloadLocation"] == "NOASSERTION"
    assert by_name["flash-attn"]["packageFileName"].startswith("flash_attn-2.7.4.post1-")
    assert by_name["hello"]["packageFileName"] == "hello_2.10-3+b1_amd64.deb"


def http_get(host, path):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{host}{path}", timeout=10) as r:
        return r.status, dict(r.headers), r.read()


def fallback_index(reg, repo, digest):
    st, _, body = reg.api(f"/v2/{repo}/manifests/sha256-{digest.split(':')[1]}",
                          headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    return st, (json.loads(body) if st == 200 else None)


def get_manifest(reg, repo, digest):
    st, _, body = reg.api(f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert st == 200
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    return json.loads(body)


def get_blob(reg, repo, digest):
    st, _, body = reg.api(f"/v2/{repo}/blobs/{digest}")
    assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == digest
    return body


def check_artifact(m, image_digest, oci_schema):
    oci_schema("manifest", m)
    assert m["mediaType"] == OCI_MANIFEST and m["artifactType"] == SPDX
    assert m["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY,
                           "size": 2}
    assert [l["mediaType"] for l in m["layers"]] == [SPDX]
    assert m["subject"]["digest"] == image_digest
    assert m["subject"]["mediaType"] == OCI_MANIFEST
    assert m["annotations"] == {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"}


def test_sbom_through_the_tag_schema_of_a_registry_without_referrers(kiln, world, tmp_path,
                                                                      oci_schema):
    reg, recipe, want = world.reg, world.recipe, world.want
    res = build(kiln, recipe, "--push", "--cache", tmp_path / "cache")
    # distribution 2.8 answers no OCI-Subject: kiln wrote the fallback index
    st, idx = fallback_index(reg, "sbom/app", res["digest"])
    assert st == 200, "no sha256-<hex> fallback tag"
    oci_schema("index", idx)
    assert [(d["digest"], d["artifactType"]) for d in idx["manifests"]] == [(res["sbom"], SPDX)]
    m = get_manifest(reg, "sbom/app", res["sbom"])
    check_artifact(m, res["digest"], oci_schema)
    doc = json.loads(get_blob(reg, "sbom/app", m["layers"][0]["digest"]))
    check_lists(doc, want, res["digest"], world.web)
    assert doc["name"] == f"{reg.host}/sbom/app:v1"
    assert doc["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
    # kiln's own referrer listing finds it: copied along to a layout
    out = tmp_path / "copied"
    c = json.loads(kiln.run("copy", "--json", "--referrers", f"{reg.host}/sbom/app:v1",
                            f"oci:{out}:v1").stdout)
    assert c["referrersCopied"] == 1
    assert res["sbom"] in [e["digest"] for e in read_index(out)["manifests"]]
    kiln.run("fsck", f"oci:{out}")
    # pushing the same build again adds nothing to the index
    again = build(kiln, recipe, "--push", "--cache", tmp_path / "cache")
    assert again["sbom"] == res["sbom"] and again["layersBuilt"] == 0
    assert [d["digest"] for d in fallback_index(reg, "sbom/app", res["digest"])[1]["manifests"]] \
        == [res["sbom"]]


def test_sbom_through_the_referrers_api(kiln, world, registry_factory, tmp_path, oci_schema):
    reg, recipe, want = world.reg, world.recipe, world.want
    api = ReferrersProxy(reg.host)
    try:
        res = build(kiln, recipe, "--push", "--cache", tmp_path / "cache",
                    "--set", f"repo={api.host}/sbom/app")
        # the registry answered OCI-Subject: no fallback tag was written
        assert fallback_index(reg, "sbom/app", res["digest"])[0] == 404
        assert not [l for l in api.log if "/manifests/sha256-" in l[1]], api.log
        listed = api.referrers[("sbom/app", res["digest"])]
        assert [(d["digest"], d["artifactType"]) for d in listed] == [(res["sbom"], SPDX)]
        # the emulated API filters by artifactType
        st, h, body = http_get(api.host, f"/v2/sbom/app/referrers/{res['digest']}"
                                         f"?artifactType={quote(SPDX, safe='')}")
        assert st == 200 and [d["digest"] for d in json.loads(body)["manifests"]] == [res["sbom"]]
        assert h["OCI-Filters-Applied"] == "artifactType"
        st, h, body = http_get(api.host, f"/v2/sbom/app/referrers/{res['digest']}"
                                         "?artifactType=application/vnd.example.other")
        assert st == 200 and json.loads(body)["manifests"] == []
        # kiln copy --referrers finds it through the API and carries it over
        other = registry_factory()
        before = len(api.log)
        c = json.loads(kiln.run("copy", "--json", "--referrers", f"{api.host}/sbom/app:v1",
                                f"{other.host}/mirror/app:v1").stdout)
        assert c["digest"] == res["digest"] and c["referrersCopied"] == 1
        asked = [l for l in api.log[before:] if "/referrers/" in l[1]]
        # the image's referrers, then the SBOM's own (none): both through the API
        assert asked == [("GET", f"/v2/sbom/app/referrers/{res['digest']}", 200),
                         ("GET", f"/v2/sbom/app/referrers/{res['sbom']}", 200)]
        assert not [l for l in api.log[before:] if "/manifests/sha256-" in l[1]]
        # the other registry has no API: there it is listed by the tag schema
        st, idx = fallback_index(other, "mirror/app", res["digest"])
        assert st == 200 and [d["digest"] for d in idx["manifests"]] == [res["sbom"]]
        m = get_manifest(other, "mirror/app", res["sbom"])
        check_artifact(m, res["digest"], oci_schema)
        check_lists(json.loads(get_blob(other, "mirror/app", m["layers"][0]["digest"])), want,
                    res["digest"], world.web)
    finally:
        api.stop()


def test_sbom_is_reproducible_cold_warm_and_from_a_cache_repo(kiln, world, tmp_path):
    reg, recipe, want, counter = world.reg, world.recipe, world.want, world.counter
    cache_repo = f"{reg.host}/sbom/cache"
    runs = []
    for n, tz in (("one", "UTC"), ("two", "Pacific/Kiritimati")):
        d = tmp_path / n
        d.mkdir()
        runs.append(build(kiln, recipe, "--output", f"oci:{d}/out", "--cache", d / "cache",
                          "--cache-to", cache_repo, cwd=d, env={"TZ": tz}))
    assert runs[0]["digest"] == runs[1]["digest"] and runs[0]["sbom"] == runs[1]["sbom"]
    assert runs[0]["layersBuilt"] == 3
    sbom = blob_path(tmp_path / "one" / "out", runs[0]["sbom"]).read_bytes()
    assert sbom == blob_path(tmp_path / "two" / "out", runs[1]["sbom"]).read_bytes()
    layer = json.loads(sbom)["layers"][0]["digest"]
    doc = blob_path(tmp_path / "one" / "out", layer).read_bytes()
    check_lists(json.loads(doc), want, runs[0]["digest"], world.web)
    # warm: every layer from the local cache, nothing staged, the same bytes
    runs_before = counter.read_text().count("run")
    warm = build(kiln, recipe, "--output", f"oci:{tmp_path}/warm", "--cache",
                 tmp_path / "one" / "cache")
    assert warm["layersBuilt"] == 0 and warm["layersCached"] == 3
    assert warm["sbom"] == runs[0]["sbom"]
    assert blob_path(tmp_path / "warm", layer).read_bytes() == doc
    # a runner with an empty cache: layers and the build step's output from
    # the cache repository, the step not run again, the same SBOM
    fresh = build(kiln, recipe, "--output", f"oci:{tmp_path}/fresh", "--cache",
                  tmp_path / "fresh-cache", "--cache-from", cache_repo)
    assert fresh["layersFromCacheRepo"] == 3 and fresh["sbom"] == runs[0]["sbom"]
    assert counter.read_text().count("run") == runs_before
    # SOURCE_DATE_EPOCH dates the document as it dates the image
    dated = build(kiln, recipe, "--output", f"oci:{tmp_path}/dated", "--cache",
                  tmp_path / "one" / "cache", env={"SOURCE_DATE_EPOCH": "1700000000"})
    m = json.loads(blob_path(tmp_path / "dated", dated["sbom"]).read_bytes())
    d = json.loads(blob_path(tmp_path / "dated", m["layers"][0]["digest"]).read_bytes())
    assert d["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert m["annotations"]["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert dated["sbom"] != runs[0]["sbom"]


def test_sbom_in_a_layout_passes_fsck_and_the_schema(kiln, world, tmp_path, oci_schema):
    reg, recipe, want = world.reg, world.recipe, world.want
    out = tmp_path / "out"
    res = build(kiln, recipe, "--output", f"oci:{out}:v1", "--cache", tmp_path / "cache")
    idx = read_index(out)
    oci_schema("index", idx)
    entries = {e["digest"]: e for e in idx["manifests"]}
    # the image keeps its tag; the SBOM is an untagged entry beside it
    assert entries[res["digest"]]["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert "annotations" not in entries[res["sbom"]]
    assert entries[res["sbom"]]["mediaType"] == OCI_MANIFEST
    m = json.loads(blob_path(out, res["sbom"]).read_bytes())
    check_artifact(m, res["digest"], oci_schema)
    assert m["layers"][0]["annotations"] == {"org.opencontainers.image.title": "sbom.spdx.json"}
    check_lists(json.loads(blob_path(out, m["layers"][0]["digest"]).read_bytes()), want,
                res["digest"], world.web)
    kiln.run("fsck", f"oci:{out}")
    # building again into the same layout lists it once; the progress names it
    p = kiln.run("build", recipe, "--sbom", "--output", f"oci:{out}:v1", "--cache",
                 tmp_path / "cache")
    assert f"sbom {res['sbom']}" in p.stderr.splitlines()
    assert p.stdout.split() == ["%s/sbom/app:v1" % reg.host, res["digest"]]
    assert [e["digest"] for e in read_index(out)["manifests"]].count(res["sbom"]) == 1
    # an oci-archive holds it the same way
    arch = build(kiln, recipe, "--output", f"oci-archive:{tmp_path}/img.tar:v1", "--cache",
                 tmp_path / "cache")
    assert arch["sbom"] == res["sbom"]
    (tmp_path / "untar").mkdir()
    with tarfile.open(tmp_path / "img.tar") as t:
        t.extractall(tmp_path / "untar")
    assert [e["digest"] for e in read_index(tmp_path / "untar")["manifests"]] == \
        [res["digest"], res["sbom"]]
    assert blob_path(tmp_path / "untar", m["layers"][0]["digest"]).exists()
    # without --sbom there is none, and verify ignores the flag
    plain = json.loads(kiln.run("build", recipe, "--json", "--output", f"oci:{tmp_path}/plain",
                                "--cache", tmp_path / "cache").stdout)
    assert plain["sbom"] is None and plain["digest"] == res["digest"]
    assert len(read_index(tmp_path / "plain")["manifests"]) == 1
    v = kiln.run("verify", recipe, "--sbom", "--against", f"oci:{out}:v1", "--cache",
                 tmp_path / "cache")
    assert v.stdout.strip() == f"identical {res['digest']}"


def test_sbom_with_skip_if_built(kiln, world, tmp_path):
    reg, recipe = world.reg, world.recipe
    first = build(kiln, recipe, "--push", "--skip-if-built", "--cache", tmp_path / "cache")
    assert not first["skipped"]
    again = build(kiln, recipe, "--push", "--skip-if-built", "--cache", tmp_path / "cache")
    assert again["skipped"] and again["sbom"] == first["sbom"]
    st, idx = fallback_index(reg, "sbom/app", first["digest"])
    assert [d["digest"] for d in idx["manifests"]] == [first["sbom"]]


def test_sbom_of_the_linnaeus_image(kiln, registry_factory, tmp_path):
    """The shipped recipe with its stand-ins: the apt packages, torch,
    torchvision and torchaudio with torch's dependencies, the build tools,
    FlashAttention (the sdist it was compiled from) and linnaeus's
    dependency closure, each once."""
    from linnaeus_standins import TORCH, UPSTREAM_APT, build_args, make_inputs, push_base
    reg = registry_factory()
    push_base(kiln, reg, tmp_path)
    sets = make_inputs(tmp_path, "ampere")
    res = json.loads(kiln.run(*build_args(sets, reg, "--arch", "ampere", "--output",
                                          f"oci:{tmp_path}/out", "--cache", tmp_path / "cache",
                                          "--sbom", "--json")).stdout)
    m = json.loads(blob_path(tmp_path / "out", res["sbom"]).read_bytes())
    doc = json.loads(blob_path(tmp_path / "out", m["layers"][0]["digest"]).read_bytes())
    check_spdx(doc)
    pkgs = [p for p in doc["packages"] if p["SPDXID"] != "SPDXRef-image"]
    keys = [(purl_of(p).split("/")[0], p["name"]) for p in pkgs]
    assert len(keys) == len(set(keys)), [k for k in keys if keys.count(k) > 1]
    got = {(purl_of(p).split("/")[0], p["name"]): p["versionInfo"] for p in pkgs}
    torch, vision, audio, _, fa = TORCH["ampere"]
    want = {("pkg:deb", d): "1.0-1" for d in UPSTREAM_APT}
    want.update({("pkg:pypi", "torch"): torch, ("pkg:pypi", "torchvision"): vision,
                 ("pkg:pypi", "torchaudio"): audio, ("pkg:pypi", "nvidia-cudnn-cu12"): "9.5.1.17",
                 ("pkg:pypi", "ninja"): "1.11.1.3", ("pkg:pypi", "uv"): "0.5.11",
                 ("pkg:pypi", "flash-attn"): fa, ("pkg:pypi", "pandas"): "2.2.3",
                 ("pkg:pypi", "numpy"): "2.1.3", ("pkg:pypi", "pytest"): "8.3.3"})
    assert want.items() <= got.items()
    # only what pip would install: no marker-false or Windows-only packages
    assert not {("pkg:pypi", n) for n in ("tomli", "colorama", "exceptiongroup")} & got.keys()
    fa_pkg = next(p for p in pkgs if p["name"] == "flash-attn")
    sdist = next((tmp_path / "fa").glob(f"flash_attn-{fa}.tar.gz"))
    assert fa_pkg["checksums"][0]["checksumValue"] == sha256(sdist)
    tqdm = next(p for p in pkgs if p["name"] == "tqdm")
    wheel = next((tmp_path / "lw").glob("tqdm-*.whl"))
    assert tqdm["checksums"][0]["checksumValue"] == sha256(wheel)
