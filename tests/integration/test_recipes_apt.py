"""apt sources trusted the way apt trusts them (issue #20): a signed
InRelease checked with gpgv, the Packages index against the Release, each
.deb against the Packages; plain http needs no flag.  The mirror is served
on 127.0.0.1 through an http proxy, so its name (apt.kiln.test) is not a
loopback host: what kiln allows is decided by the signature, not by the
address."""
import functools
import gzip
import http.server
import json
import os
import pathlib
import tarfile
import threading
import time

import pytest

from imagegen import make_image
from recipes_helpers import (gpg_key, kiln, kiln_fails, make_apt_repo, make_deb, make_simple_index,
                             make_wheel, sha256, sign_release, write_recipe)

HOST = "http://apt.kiln.test"


class Site:
    """A directory served for any host name, as an http proxy does."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.requests = []
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def translate_path(self, path):
                site.requests.append(path)
                # "GET http://host/x": a proxy request names the host
                if "://" in path:
                    path = "/" + path.split("://", 1)[1].split("/", 1)[1]
                return super().translate_path(path)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(self.root)))
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.env = {"http_proxy": f"http://127.0.0.1:{self.srv.server_address[1]}",
                    "HTTP_PROXY": "", "no_proxy": "", "NO_PROXY": ""}

    def fetched(self, suffix):
        return sum(1 for r in self.requests if r.endswith(suffix))

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path / "site")
    s.root.mkdir()
    yield s
    s.stop()


def base_image(tmp_path, layers=None):
    """A base in a local layout; layers: extra file dicts (keyrings)."""
    lay = tmp_path / "base"
    make_image(lay, "b", [{"etc/": ("dir",), "etc/os-release": b"ID=standin\n"}, *(layers or [])])
    return f"oci:{lay}:b"


def debs_of(tmp_path):
    jq = make_deb(tmp_path / "debs", "jq", {"usr/bin/jq": b"#!/bin/sh\necho jq\n"})
    lib = make_deb(tmp_path / "debs", "libjq1", {"usr/lib/libjq.so.1": b"lib"})
    return [jq, lib]


def recipe(tmp_path, base, source, name="r.json"):
    return write_recipe(tmp_path / name, {
        "base": base, "tag": {"repository": "kiln/apt", "tag": "t"},
        "layers": [{"name": "sys", "kind": "debs", "apt": [source]}]})


def build(tmp_path, r, env, *args, out="out"):
    return kiln("build", r, "--output", f"oci:{tmp_path / out}:t", "--cache", tmp_path / "cache",
                "--quiet", *args, env=env)


def layer_files(tmp_path, out="out"):
    """Path -> bytes of the files in the built image's last layer."""
    lay = tmp_path / out
    idx = json.loads((lay / "index.json").read_text())
    m = json.loads((lay / "blobs/sha256" / idx["manifests"][0]["digest"][7:]).read_bytes())
    blob = lay / "blobs/sha256" / m["layers"][-1]["digest"][7:]
    with tarfile.open(blob) as t:
        return {e.name: t.extractfile(e).read() for e in t if e.isfile()}


def source(key=None, **kw):
    s = {"mirror": f"{HOST}/debian", "suite": "bookworm", "components": ["main"],
         "packages": ["jq", "libjq1"]}
    if key:
        s["keyring"] = str(key)
    s.update(kw)
    return s


def test_signed_mirror_over_plain_http_needs_no_flag(tmp_path, site):
    make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm",
                  compressions=("xz", "gz"))
    r = recipe(tmp_path, base_image(tmp_path), source(gpg_key().keyring))
    build(tmp_path, r, site.env)
    files = layer_files(tmp_path)
    assert files["usr/bin/jq"] == b"#!/bin/sh\necho jq\n"
    # the index apt prefers: xz over gz, checked against the Release
    assert site.fetched("/dists/bookworm/InRelease") == 1
    assert site.fetched("/main/binary-amd64/Packages.xz") == 1
    assert site.fetched("/main/binary-amd64/Packages.gz") == 0


def test_index_form_and_armored_keyring_and_detached_signature(tmp_path, site):
    make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm", inrelease=False)
    r = recipe(tmp_path, base_image(tmp_path), {
        "mirror": f"{HOST}/debian", "index": "dists/bookworm/main/binary-amd64/Packages.gz",
        "signed_by": str(gpg_key().armored), "packages": ["jq"]})
    build(tmp_path, r, site.env)
    assert "usr/bin/jq" in layer_files(tmp_path)
    assert site.fetched("/dists/bookworm/Release.gpg") == 1


def test_components_are_searched_in_order(tmp_path, site):
    jq, lib = debs_of(tmp_path)
    make_apt_repo(site.root / "debian", {"main": [jq], "contrib": [lib]}, suite="bookworm")
    r = recipe(tmp_path, base_image(tmp_path),
               source(gpg_key().keyring, components=["main", "contrib"]))
    build(tmp_path, r, site.env)
    assert {"usr/bin/jq", "usr/lib/libjq.so.1"} <= set(layer_files(tmp_path))


def test_another_key_is_refused(tmp_path, site):
    make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm")
    r = recipe(tmp_path, base_image(tmp_path), source(gpg_key("other key").keyring))
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out:t", "--cache",
                      tmp_path / "cache", env=site.env)
    assert f"apt source '{HOST}/debian' suite 'bookworm'" in line
    assert "which the keyring does not hold" in line
    assert not (tmp_path / "out").exists()


def test_unsigned_and_tampered_releases_are_refused(tmp_path, site):
    mirror = make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm", key=None)
    r = recipe(tmp_path, base_image(tmp_path), source(gpg_key().keyring))
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out:t", env=site.env)
    assert "suite 'bookworm': the Release is not signed" in line
    # signed, then a line of the signed text changed
    sign_release(mirror / "dists/bookworm", gpg_key())
    ir = mirror / "dists/bookworm/InRelease"
    ir.write_text(ir.read_text().replace("Origin: kiln tests", "Origin: kiln tezts"))
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out:t", env=site.env)
    assert "suite 'bookworm': bad signature by key" in line


def test_altered_packages_index_is_refused(tmp_path, site):
    mirror = make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm")
    idx = mirror / "dists/bookworm/main/binary-amd64/Packages.gz"
    text = gzip.decompress(idx.read_bytes()).replace(b"Package: libjq1", b"Package: libjq2")
    idx.write_bytes(gzip.compress(text, mtime=0))
    r = recipe(tmp_path, base_image(tmp_path), source(gpg_key().keyring))
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out:t", env=site.env)
    assert "'main/binary-amd64/Packages.gz'" in line and "the Release says" in line


def test_altered_deb_is_refused(tmp_path, site):
    mirror = make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm")
    deb = next(mirror.glob("pool/main/j/jq/*.deb"))
    deb.write_bytes(deb.read_bytes() + b"\0")
    r = recipe(tmp_path, base_image(tmp_path), source(gpg_key().keyring))
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out:t", env=site.env)
    assert "sha256 mismatch" in line and "jq" in line


def test_expired_release_is_refused(tmp_path, site):
    make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm",
                  valid_until=time.time() - 3600)
    r = recipe(tmp_path, base_image(tmp_path), source(gpg_key().keyring))
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out:t", env=site.env)
    assert "suite 'bookworm': the Release is expired (Valid-Until: " in line


def test_release_from_the_future_is_refused(tmp_path, site):
    mirror = make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm")
    sign_release(mirror / "dists/bookworm", gpg_key(), date=time.time() + 86400)
    r = recipe(tmp_path, base_image(tmp_path), source(gpg_key().keyring))
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out:t", env=site.env)
    assert "the Release is not valid yet (Date: " in line


@pytest.mark.parametrize("where", ["usr/share/keyrings/kiln-test.gpg",
                                   "etc/apt/trusted.gpg.d/kiln-test.asc",
                                   "etc/apt/keyrings/kiln-test.gpg"])
def test_the_base_images_keyrings_are_the_default(tmp_path, site, where):
    make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm")
    key = gpg_key().armored if where.endswith(".asc") else gpg_key().keyring
    layer = {where: key.read_bytes()}
    if where.startswith("etc/apt/keyrings/"):
        # apt reads etc/apt/keyrings only through a source's Signed-By
        layer["etc/apt/sources.list.d/debian.sources"] = (
            b"Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n"
            b"Components: main\nSigned-By: /" + where.encode() + b"\n")
    r = recipe(tmp_path, base_image(tmp_path, [layer]), source())
    build(tmp_path, r, site.env)
    assert "usr/bin/jq" in layer_files(tmp_path)


def test_a_keyring_the_base_deleted_is_not_trusted(tmp_path, site):
    make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm")
    base = base_image(tmp_path, [{"usr/share/keyrings/kiln-test.gpg": gpg_key().keyring.read_bytes()},
                                 {"usr/share/keyrings/.wh.kiln-test.gpg": b""}])
    r = recipe(tmp_path, base, source())
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out:t", "--cache",
                      tmp_path / "cache", env=site.env)
    assert "no keyring to check the Release against" in line


def test_a_locked_build_reads_the_locked_index_from_the_cache(tmp_path, site):
    make_apt_repo(site.root / "debian", debs_of(tmp_path), suite="bookworm")
    r = recipe(tmp_path, base_image(tmp_path), source(gpg_key().keyring))
    kiln("lock", r, "--cache", tmp_path / "cache", env=site.env)
    lock = json.loads((tmp_path / "r.lock.json").read_text())
    inrelease = site.root / "debian/dists/bookworm/InRelease"
    assert lock["layers"]["sys"]["apt"] == ["sha256:" + sha256(inrelease)]
    before = len(site.requests)
    build(tmp_path, r, site.env, "--locked")
    # the Release and the Packages by their digests from the cache: only the .debs
    assert not [q for q in site.requests[before:] if "/dists/" in q]
    assert "usr/bin/jq" in layer_files(tmp_path)
    # a new Release on the mirror and an empty cache: --locked refuses it
    sign_release(site.root / "debian/dists/bookworm", gpg_key(), date=time.time() - 60)
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out2:t", "--cache",
                      tmp_path / "cache2", "--locked", env=site.env)
    assert "but the lock pins sha256:" in line


def test_local_mirror_with_a_keyring_is_verified(tmp_path):
    mirror = make_apt_repo(tmp_path / "mirror", debs_of(tmp_path), suite="bookworm")
    r = write_recipe(tmp_path / "r.json", {"base": "scratch", "layers": [
        {"name": "sys", "kind": "debs", "apt": [
            {"mirror": str(mirror), "suite": "bookworm", "components": ["main"],
             "keyring": str(gpg_key("other key").keyring), "packages": ["jq"]}]}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s")
    assert "which the keyring does not hold" in line


def test_insecure_registry_no_longer_opens_http_for_recipe_inputs(tmp_path, site):
    w = make_wheel(tmp_path / "w", "tiny", "1.0", py="py3", abi="none", plat="any")
    make_simple_index(site.root / "simple", [w])
    r = write_recipe(tmp_path / "r.json", {"base": base_image(tmp_path),
                                           "tag": {"repository": "kiln/apt", "tag": "t"}, "layers": [
        {"name": "py", "kind": "wheels", "index": f"{HOST}/simple", "packages": ["tiny==1.0"]}]})
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/out:t", "--insecure-registry",
                      "apt.kiln.test", env=site.env)
    assert f"refusing plain http for '{HOST}/simple/tiny/'" in line
    assert "recipe inputs need https" in line
    assert site.requests == []


@pytest.mark.parametrize("src, msg", [
    ({"mirror": "m", "packages": ["x"]}, "needs 'index' or 'suite' (not both)"),
    ({"mirror": "m", "suite": "s", "packages": ["x"]}, "with 'suite' in layer 'sys' needs 'components'"),
    ({"mirror": "m", "index": "i", "components": ["main"], "packages": ["x"]},
     "'components' and 'arch' in layer 'sys' go with 'suite'"),
    ({"mirror": "m", "suite": "s", "components": ["main"], "keyring": "a", "signed_by": "b",
      "packages": ["x"]}, "'keyring' and 'signed_by' in layer 'sys' name the same thing"),
])
def test_apt_source_schema(tmp_path, src, msg):
    r = write_recipe(tmp_path / "r.json", {"base": "scratch", "layers": [
        {"name": "sys", "kind": "debs", "apt": [src]}]})
    line = kiln_fails("build", r, "--dry-run", code=3)
    assert msg in line and "line " in line


def test_packages_unpack_in_their_order_whatever_runs_ahead(tmp_path, site):
    """Checks and decompression run on several CPUs ahead of the unpacking
    (a few packages at a time): the files are still laid down in the
    packages' order, so of two packages with the same path the later one's
    is in the layer, in every batch."""
    names = [f"p{i:02}" for i in range(13)]
    debs = [make_deb(tmp_path / "debs", n, {"usr/share/kiln/shared": n.encode(),
                                            f"usr/share/kiln/{n}": n.encode() * 1000})
            for n in names]
    make_apt_repo(site.root / "debian", debs, suite="bookworm")
    for order, out in ((names, "fwd"), (names[::-1], "rev")):
        r = write_recipe(tmp_path / f"{out}.json", {
            "base": base_image(tmp_path), "tag": {"repository": "kiln/apt", "tag": "t"},
            "layers": [{"name": "sys", "kind": "debs", "resolve": False,
                        "apt": [source(gpg_key().keyring, packages=order)]}]})
        build(tmp_path, r, site.env, out=out)
        files = layer_files(tmp_path, out=out)
        assert files["usr/share/kiln/shared"] == order[-1].encode()
        assert all(files[f"usr/share/kiln/{n}"] == n.encode() * 1000 for n in names)
        # nothing decompressed ahead is left beside the staging tree
        assert not list((tmp_path / "cache").rglob("*.debs-*"))
