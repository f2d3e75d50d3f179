"""kiln diff: says whether two images differ, and where."""
import json

import pytest

from imagegen import make_image

BASE = {"etc/": ("dir",), "etc/hosts": b"127.0.0.1 localhost\n", "bin/tool": (b"#!/bin/sh\n", 0o755)}
APP = {"app/": ("dir",), "app/main.py": b"print('hi')\n", "app/lib": ("link", "/usr/lib")}


def diff(kiln, a, b, *extra):
    p = kiln.run("diff", *extra, a, b, check=False)
    assert p.returncode in (0, 1), p.stderr
    return p


def test_identical(kiln, tmp_path):
    make_image(tmp_path / "a", "x", [BASE, APP])
    make_image(tmp_path / "b", "x", [BASE, APP])
    p = diff(kiln, f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x")
    assert p.returncode == 0 and p.stdout == "identical\n"


def test_one_file_content(kiln, tmp_path):
    make_image(tmp_path / "a", "x", [BASE, APP])
    app2 = dict(APP, **{"app/main.py": b"print('bye')\n"})
    make_image(tmp_path / "b", "x", [BASE, app2])
    p = diff(kiln, f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x")
    assert p.returncode == 1
    assert "file /app/main.py (content) (layer 1): changed sha256:" in p.stdout
    assert "/app/lib" not in p.stdout and "/etc/hosts" not in p.stdout
    j = json.loads(kiln.run("diff", "--json", f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x",
                            check=False).stdout)
    assert j["identical"] is False
    files = [f for f in j["findings"] if f["level"] == "file"]
    assert {f["what"] for f in files} == {"/app/main.py (content)", "/app/main.py (size)"}
    assert all(f["layer"] == 1 for f in files)


def test_one_file_mode(kiln, tmp_path):
    make_image(tmp_path / "a", "x", [BASE])
    make_image(tmp_path / "b", "x", [dict(BASE, **{"bin/tool": (b"#!/bin/sh\n", 0o4755)})])
    p = diff(kiln, f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x")
    assert p.returncode == 1
    assert "file /bin/tool (mode) (layer 0): changed 0755 -> 4755" in p.stdout
    assert "(content)" not in p.stdout


def test_added_and_removed_files(kiln, tmp_path):
    make_image(tmp_path / "a", "x", [BASE])
    b = dict(BASE)
    del b["etc/hosts"]
    b["etc/motd"] = b"hello\n"
    make_image(tmp_path / "b", "x", [b])
    out = diff(kiln, f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x").stdout
    assert "file /etc/hosts (layer 0): removed" in out
    assert "file /etc/motd (layer 0): added" in out


def test_one_env_var_stops_at_config(kiln, tmp_path):
    make_image(tmp_path / "a", "x", [BASE], env=("PATH=/usr/bin", "MODE=a"))
    make_image(tmp_path / "b", "x", [BASE], env=("PATH=/usr/bin", "MODE=b"))
    p = diff(kiln, f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x")
    assert p.returncode == 1
    assert p.stdout == "config env MODE: changed a -> b\n"


def test_compression_level_is_same_content(kiln, tmp_path):
    big = {"data/blob": bytes(range(256)) * 4000 + b"tail" * 5000}
    make_image(tmp_path / "a", "x", [big], level=1)
    make_image(tmp_path / "b", "x", [big], level=9)
    p = diff(kiln, f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x")
    assert p.returncode == 1
    assert "layer 0: same content, different compression" in p.stdout
    assert "file " not in p.stdout


def test_reordered_layers(kiln, tmp_path):
    make_image(tmp_path / "a", "x", [BASE, APP])
    make_image(tmp_path / "b", "x", [APP, BASE])
    p = diff(kiln, f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x")
    assert p.returncode == 1
    assert "layer 0: reordered" in p.stdout and "layer 1: reordered" in p.stdout
    assert "file " not in p.stdout


def test_manifest_annotation_first(kiln, tmp_path):
    make_image(tmp_path / "a", "x", [BASE], annotations={"org.opencontainers.image.revision": "aaa"})
    make_image(tmp_path / "b", "x", [BASE, APP], annotations={"org.opencontainers.image.revision": "bbb"})
    out = diff(kiln, f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x").stdout
    assert "manifest annotation org.opencontainers.image.revision: changed aaa -> bbb" in out
    assert "manifest layer count: changed 1 -> 2" in out
    assert "config" not in out
    out = diff(kiln, f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x", "--all").stdout
    assert "layer 1: added" in out


def test_lying_media_type_is_an_error(kiln, tmp_path):
    make_image(tmp_path / "a", "x", [BASE])
    make_image(tmp_path / "b", "x", [dict(BASE, x=b"1")], compression="none")
    # B's layer says tar but A's says gzip: fine.  Now make B lie: tar bytes labelled gzip.
    import pathlib
    idx = json.loads((tmp_path / "b" / "index.json").read_text())
    from conftest import blob_path
    mpath = blob_path(tmp_path / "b", idx["manifests"][0]["digest"])
    m = json.loads(mpath.read_text())
    m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    raw = json.dumps(m).encode()
    import hashlib
    d = "sha256:" + hashlib.sha256(raw).hexdigest()
    blob_path(tmp_path / "b", d).write_bytes(raw)
    idx["manifests"][0]["digest"] = d
    idx["manifests"][0]["size"] = len(raw)
    (tmp_path / "b" / "index.json").write_text(json.dumps(idx))
    p = kiln.run("diff", f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x", check=False)
    assert p.returncode == 2
    assert "declared" in p.stderr and "gzip" in p.stderr and "none" in p.stderr
