"""kiln against the real distribution registry: push, pull, interop with skopeo
and umoci, copies between registries, no-op re-push, ls/tag/delete."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

import imagegen
from conftest import run


def _image(tmp_path, name="lay", n=2, size=50000):
    lay = tmp_path / name
    layers = [{f"f{i}.txt": (f"layer {i} " * (size // 8 + i)).encode()} for i in range(n)]
    imagegen.make_image(lay, "v1", layers)
    return lay


def _manifest_digest(registry, repo, tag):
    st, h, body = registry.api(f"/v2/{repo}/manifests/{tag}",
                               headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 200, (st, body)
    return h["Docker-Content-Digest"]


def test_registry_push_then_pull_roundtrip(kiln, registry, tmp_path):
    lay = _image(tmp_path)
    p = kiln.run("copy", "--json", f"oci:{lay}:v1", registry.ref("rt/app", "v1"))
    res = json.loads(p.stdout)
    assert res["blobsCopied"] == 3
    assert _manifest_digest(registry, "rt/app", "v1") == res["digest"]
    out = tmp_path / "out"
    p2 = kiln.run("copy", "--json", registry.ref("rt/app", "v1"), f"oci:{out}:v1")
    assert json.loads(p2.stdout)["digest"] == res["digest"]
    kiln.run("fsck", f"oci:{out}")
    assert kiln.run("digest", registry.ref("rt/app", "v1")).stdout.strip() == res["digest"]


def test_registry_second_push_transfers_no_blob(kiln, registry, tmp_path):
    lay = _image(tmp_path, n=3)
    kiln.run("copy", f"oci:{lay}:v1", registry.ref("again/app", "v1"))
    p = kiln.run("copy", "--json", f"oci:{lay}:v1", registry.ref("again/app", "v1"))
    res = json.loads(p.stdout)
    assert res["blobsCopied"] == 0 and res["bytesCopied"] == 0
    assert res["blobsSkipped"] == 4


def test_registry_kiln_push_skopeo_pull_same_digest(kiln, registry, tmp_path):
    lay = _image(tmp_path)
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref("interop/k2s", "v1")).stdout.strip()
    out = tmp_path / "sk"
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{registry.ref('interop/k2s', 'v1')}",
        f"oci:{out}:v1")
    idx = json.loads((out / "index.json").read_text())
    assert idx["manifests"][0]["digest"] == d
    raw = run("skopeo", "inspect", "--raw", "--tls-verify=false",
              f"docker://{registry.ref('interop/k2s', 'v1')}").stdout
    import hashlib
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == d


def test_registry_skopeo_push_kiln_pull_fsck(kiln, registry, umoci_image, tmp_path):
    run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{umoci_image}:base",
        f"docker://{registry.ref('interop/s2k', 'base')}")
    raw = run("skopeo", "inspect", "--raw", "--tls-verify=false",
              f"docker://{registry.ref('interop/s2k', 'base')}").stdout
    import hashlib
    want = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    out = tmp_path / "pulled"
    d = kiln.run("copy", registry.ref("interop/s2k", "base"), f"oci:{out}:base").stdout.strip()
    assert d == want
    p = kiln.run("fsck", "--deep", f"oci:{out}")
    assert "0 problems" in p.stdout


def test_registry_copy_between_two_registries_keeps_digest(kiln, registry, registry_factory,
                                                           tmp_path):
    other = registry_factory()
    lay = _image(tmp_path, n=2)
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref("x2/app", "v1")).stdout.strip()
    d2 = kiln.run("copy", registry.ref("x2/app", "v1"), other.ref("mirror/app", "v7")).stdout.strip()
    assert d == d2
    assert _manifest_digest(other, "mirror/app", "v7") == d


def test_registry_cross_repo_mount(kiln, registry, tmp_path):
    from registry_util import FaultProxy
    lay = _image(tmp_path, n=2, size=300000)
    kiln.run("copy", f"oci:{lay}:v1", registry.ref("mnt/src", "v1"))
    proxy = FaultProxy(registry.host)  # records the requests
    try:
        kiln.run("copy", f"{proxy.host}/mnt/src:v1", f"{proxy.host}/mnt/dst:v1")
    finally:
        proxy.stop()
    assert _manifest_digest(registry, "mnt/dst", "v1") == _manifest_digest(registry, "mnt/src", "v1")
    mounts = [l for l in proxy.log if l[0] == "POST" and "mount=" in l[1]]
    assert len(mounts) == 3 and all(l[2] == 201 for l in mounts), proxy.log
    assert not [l for l in proxy.log if l[0] in ("PUT", "PATCH") and "/blobs/" in l[1]]


def _make_index(lay):
    """Two single-platform images and an index naming both, tagged v1."""
    import hashlib
    entries = []
    for plat, data in (("amd64", b"amd"), ("arm64", b"arm")):
        md = imagegen.make_image(lay, "p-" + plat, [{"a": data}])
        raw = (lay / "blobs" / "sha256" / md.split(":")[1]).read_bytes()
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
                        "size": len(raw), "platform": {"os": "linux", "architecture": plat}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": entries}
    raw = json.dumps(index, separators=(",", ":")).encode()
    d = "sha256:" + hashlib.sha256(raw).hexdigest()
    (lay / "blobs" / "sha256" / d.split(":")[1]).write_bytes(raw)
    top = json.loads((lay / "index.json").read_text())
    top["manifests"].append({"mediaType": index["mediaType"], "digest": d, "size": len(raw),
                             "annotations": {"org.opencontainers.image.ref.name": "v1"}})
    (lay / "index.json").write_text(json.dumps(top))
    return d, entries


def test_registry_index_kept_whole_and_platform_resolved(kiln, registry, tmp_path):
    lay = tmp_path / "multi"
    d, entries = _make_index(lay)
    assert kiln.run("copy", f"oci:{lay}:v1", registry.ref("multi/app", "v1")).stdout.strip() == d
    st, h, _ = registry.api("/v2/multi/app/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    assert st == 200 and h["Docker-Content-Digest"] == d
    for e in entries:  # the index's manifests were pushed before it
        assert registry.api(f"/v2/multi/app/manifests/{e['digest']}", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json"})[0] == 200
    out = tmp_path / "one"
    got = kiln.run("copy", "--platform", "linux/arm64", registry.ref("multi/app", "v1"),
                   f"oci:{out}:arm").stdout.strip()
    assert got == entries[1]["digest"]


def test_registry_ls_tag_delete(kiln, registry, tmp_path):
    lay = _image(tmp_path, n=1)
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref("verbs/app", "v1")).stdout.strip()
    t = json.loads(kiln.run("tag", "--json", registry.ref("verbs/app", "v1"), "v2").stdout)
    assert t["digest"] == d
    tags = json.loads(kiln.run("ls", "--json", registry.ref("verbs/app")).stdout)
    assert tags == ["v1", "v2"]
    kiln.run("delete", registry.ref("verbs/app", "v2"))
    st, _, _ = registry.api(f"/v2/verbs/app/manifests/{d}",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 404
    _, err = kiln.fails("copy", registry.ref("verbs/app", "v1"), f"oci:{tmp_path}/gone:v1", code=5)
    assert "not found" in err


def test_registry_ls_follows_link_pages(kiln, registry, tmp_path):
    lay = _image(tmp_path, n=1)
    kiln.run("copy", f"oci:{lay}:v1", registry.ref("pages/app", "t0"))
    for i in range(1, 7):
        kiln.run("tag", registry.ref("pages/app", "t0"), f"t{i}")
    from registry_util import FaultProxy
    proxy = FaultProxy(registry.host)
    try:
        proxy.add(match="GET /v2/pages/app/tags/list", action="paginate", n=2, times=1)
        tags = kiln.run("ls", f"{proxy.host}/pages/app").stdout.split()
        assert tags == [f"t{i}" for i in range(7)]
        pages = [l for l in proxy.log if "/tags/list" in l[1]]
        assert len(pages) == 4, pages
    finally:
        proxy.stop()


def test_registry_invalid_tag_and_missing_repo(kiln, registry, tmp_path):
    _, err = kiln.fails("ls", registry.ref("does/not/exist"), code=5)
    assert "not found" in err
    _, err = kiln.fails("tag", registry.ref("verbs/app", "v1"), "bad tag!", code=3)
    assert "invalid tag" in err


def test_registry_mirror_list_to_other_registry(kiln, registry, registry_factory, tmp_path):
    other = registry_factory()
    a = _image(tmp_path, "a", n=1)
    b = _image(tmp_path, "b", n=2, size=9000)
    da = kiln.run("copy", f"oci:{a}:v1", registry.ref("lib/a", "v1")).stdout.strip()
    db = kiln.run("copy", f"oci:{b}:v1", registry.ref("lib/b", "v2")).stdout.strip()
    lst = tmp_path / "list.txt"
    lst.write_text(f"# images to carry over\n{registry.ref('lib/a', 'v1')}\n\n"
                   f"{registry.host}/lib/b@{db}\n{registry.ref('lib/missing', 'v1')}\n")
    p = kiln.run("mirror", "--json", lst, "--to", f"{other.host}/mirrored", check=False)
    assert p.returncode == 5, p.stderr  # one line failed (not found), the others were copied
    res = json.loads(p.stdout)
    assert [r["digest"] for r in res] == [da, db]
    assert "lib/missing" in p.stderr
    assert _manifest_digest(other, "mirrored/lib/a", "v1") == da
    st, h, _ = other.api(f"/v2/mirrored/lib/b/manifests/{db}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 200


def test_registry_loopback_is_never_proxied(kiln, registry, tmp_path):
    lay = _image(tmp_path, n=1)
    dead = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": ""}
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref("noproxy/app", "v1"), env=dead).stdout.strip()
    assert _manifest_digest(registry, "noproxy/app", "v1") == d


def _tags_registry(n_tags, page):
    """A registry on 127.0.0.1 that has only a tag list: n_tags tags
    t0000000.. in pages of `page` (whatever n the client asks for), each
    with a Link to the next.  .asked: the n of every request."""
    import http.server
    import socketserver
    import threading
    from urllib.parse import parse_qs, urlparse

    asked = []

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            u = urlparse(self.path)
            hs = [("Content-Type", "application/json")]
            if u.path == "/v2/":
                data = b"{}"
            else:
                q = parse_qs(u.query)
                asked.append(q.get("n", [None])[0])
                last = q.get("last", [None])[0]
                start = int(last[1:]) + 1 if last else 0
                end = min(start + page, n_tags)
                data = json.dumps({"name": "big/app",
                                   "tags": [f"t{i:07d}" for i in range(start, end)]}).encode()
                if end < n_tags:
                    hs.append(("Link", f'</v2/big/app/tags/list?n={page}&last=t{end - 1:07d}>; rel="next"'))
            self.send_response(200)
            for k, v in hs + [("Content-Length", str(len(data)))]:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    srv = S(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.asked = asked
    return srv


# peak RSS of one kiln process, measured in a wrapper whose only child it is
_PEAK_RSS = """import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    rc = subprocess.run(sys.argv[2:], stdout=out).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_registry_ls_streams_pages_in_bounded_memory(kiln, tmp_path, fmt):
    # 1.5 M tags in 150 pages of 10000: held whole (the old way), the list
    # alone takes over 100 MiB under ASan; streamed, one page at a time
    n = 1_500_000
    srv = _tags_registry(n, 10000)
    try:
        out = tmp_path / "tags"
        args = [kiln.path, "ls", *(["--json"] if fmt == "json" else []),
                f"127.0.0.1:{srv.server_address[1]}/big/app"]
        # ASan holds freed memory in a 256 MiB quarantine: keep it small, so
        # the peak is what kiln keeps, not what it freed
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:quarantine_size_mb=8")
        p = subprocess.run([sys.executable, "-c", _PEAK_RSS, out, *args],
                           capture_output=True, text=True, check=True, env=env)
        rc, peak_kib = map(int, p.stdout.split())
        assert rc == 0, p.stderr
        if fmt == "json":
            tags = json.loads(out.read_text())
        else:
            tags = out.read_text().split("\n")[:-1]
        assert len(tags) == n and tags[0] == "t0000000" and tags[-1] == f"t{n - 1:07d}"
        assert peak_kib < 80 * 1024, f"peak RSS {peak_kib} KiB"  # streamed: about 34 MiB
        assert srv.asked[0] == "1000" and len(srv.asked) == n // 10000
    finally:
        srv.shutdown()
