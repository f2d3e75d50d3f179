"""kiln build writes a wheels layer straight from its wheels, nothing
staged: the same layer, byte for byte, as installing the wheels into a
staging tree and writing that tree (KILN_WHEELS_STAGED=1 forces the
latter), and the same errors."""
import base64
import gzip
import hashlib
import io
import json
import os
import pathlib
import re
import struct
import tarfile
import zipfile
import zlib

import pytest

from recipes_helpers import kiln, make_simple_index, make_wheel, sha256, write_recipe

SITE = "usr/local/lib/python3.11/site-packages"
STAGED = {"KILN_WHEELS_STAGED": "1"}


def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def zip_bytes(members, *, zip64_end=False):
    """A zip written by hand, for what zipfile does not write: directory
    entries, data descriptors, zip64 fields in the central directory and
    the zip64 end records.  members: (name, data, {mode, stored, dd,
    zip64}); data None: a directory."""
    out, cd = bytearray(), bytearray()
    for name, data, opt in members:
        raw = name.encode()
        is_dir = data is None
        data = b"" if is_dir else data
        method = 0 if opt.get("stored") or is_dir else 8
        if method == 8:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            comp = c.compress(data) + c.flush()
        else:
            comp = data
        crc = zlib.crc32(data)
        dd = opt.get("dd", False)
        flags = 0x08 if dd else 0
        mode = opt.get("mode", 0o40755 if is_dir else 0o100644)
        off = len(out)
        lcrc, lc, lu = (0, 0, 0) if dd else (crc, len(comp), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x5821, lcrc, lc,
                           lu, len(raw), 0) + raw + comp
        if dd:
            out += struct.pack("<IIII", 0x08074B50, crc, len(comp), len(data))
        extra, cc, cu, coff = b"", len(comp), len(data), off
        if opt.get("zip64"):
            extra = struct.pack("<HHQQQ", 1, 24, len(data), len(comp), off)
            cc = cu = coff = 0xFFFFFFFF
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 3 << 8 | 45, 45, flags, method, 0,
                          0x5821, crc, cc, cu, len(raw), len(extra), 0, 0, 0, mode << 16,
                          coff) + raw + extra
    cd_off, n = len(out), len(members)
    out += cd
    if zip64_end:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(cd), cd_off)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), cd_off, 0)
    return bytes(out)


def hand_wheel(outdir, dist, version, files, *, purelib=True, entry_points=None, extra=(),
               zip64_end=False, unrecorded=()):
    """NAME-VERSION-py3-none-any.whl from files {name: (data, opts)}; extra:
    members left out of RECORD (signatures), unrecorded: not in RECORD."""
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    di = f"{dist}-{version}.dist-info"
    files = dict(files)
    files[f"{di}/METADATA"] = (f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(), {})
    files[f"{di}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: "
                            f"{'true' if purelib else 'false'}\nTag: py3-none-any\n".encode(), {})
    if entry_points:
        files[f"{di}/entry_points.txt"] = (entry_points.encode(), {})
    lines = []
    for name, (data, _) in files.items():
        if data is None or name in unrecorded:
            continue
        q = f'"{name}"' if "," in name else name
        lines.append(f"{q},{record_hash(data)},{len(data)}\n")
    lines.append(f"{di}/RECORD,,\n")
    members = [(n, d, o) for n, (d, o) in files.items()]
    members += [(n, d, {}) for n, d in extra]
    members.append((f"{di}/RECORD", "".join(lines).encode(), {}))
    path = outdir / f"{dist}-{version}-py3-none-any.whl"
    path.write_bytes(zip_bytes(members, zip64_end=zip64_end))
    return path


def wheels_doc(wheels, **layer):
    return {"recipe": 1, "name": "streamed", "base": "scratch",
            "layers": [{"name": "py", "kind": "wheels",
                        "wheels": [{"path": str(w), "sha256": sha256(w)} for w in wheels],
                        **layer}],
            "tag": {"repository": "example.invalid/streamed", "tag": "v1"}}


def build(tmp_path, recipe, name, compression="gzip", env=None):
    out = tmp_path / f"out-{name}"
    p = kiln("build", recipe, "--output", f"oci:{out}", "--cache", tmp_path / f"cache-{name}",
             "--compression", compression, env=env)
    index = json.loads((out / "index.json").read_text())
    blob = lambda d: (out / "blobs" / "sha256" / d.split(":")[1]).read_bytes()
    man = json.loads(blob(index["manifests"][0]["digest"]))
    cfg = json.loads(blob(man["config"]["digest"]))
    return {"manifest": index["manifests"][0]["digest"],
            "layers": [l["digest"] for l in man["layers"]],
            "diff_ids": cfg["rootfs"]["diff_ids"], "stderr": p.stderr,
            "blobs": [blob(l["digest"]) for l in man["layers"]]}


def layer_tar(data):
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return tarfile.open(fileobj=io.BytesIO(data))


def both_ways(tmp_path, recipe, compression="gzip"):
    streamed = build(tmp_path, recipe, f"streamed-{compression}", compression)
    staged = build(tmp_path, recipe, f"staged-{compression}", compression, env=STAGED)
    assert "nothing staged" not in staged["stderr"]
    for k in ("manifest", "layers", "diff_ids"):
        assert streamed[k] == staged[k], (k, streamed["stderr"], staged["stderr"])
    return streamed


def many_wheels(tmp_path):
    w = tmp_path / "w"
    alpha = hand_wheel(w, "alpha", "1.0", {
        "alpha/__init__.py": (b"A = 1\n", {}),
        "alpha/_ext.cpython-311-x86_64-linux-gnu.so": (b"\x7fELF" + bytes(range(256)) * 64,
                                                       {"mode": 0o100755}),
        "alpha/empty/": (None, {}),                    # an empty directory: not installed
        "alpha/sub/deep/mod.py": (b"old = True\n", {}),
        "alpha/stored.bin": (bytes(range(256)) * 8, {"stored": True}),
        "alpha/big.txt": (b"".join(b"line %d\n" % i for i in range(400000)), {"dd": True}),
        "alpha/zip64.py": (b"Z = 64\n", {"zip64": True}),
        "alpha/we,ird.py": (b"W = 1\n", {}),           # quoted in RECORD
        "ns/alpha_part/x.py": (b"X = 1\n", {}),        # a namespace package, shared
        "alpha-1.0.data/scripts/alpha-run": (b"#!python\nprint('a')\n", {"mode": 0o100755}),
        "alpha-1.0.data/scripts/alpha-w": (b"#!pythonw\nprint('w')\n", {}),
        "alpha-1.0.data/scripts/alpha.sh": (b"#!/bin/sh\necho a\n", {}),
        "alpha-1.0.data/purelib/alpha_pure.py": (b"P = 1\n", {}),
        "alpha-1.0.data/platlib/alpha_plat.py": (b"Q = 1\n", {"dd": True}),
        "alpha-1.0.data/headers/alpha.h": (b"int alpha;\n", {}),
        "alpha-1.0.data/data/share/alpha/doc.txt": (b"doc\n", {}),
        "alpha-1.0.data/data/etc/alpha.conf": (b"conf\n", {}),
    }, entry_points="[console_scripts]\nalpha-cli = alpha:main\nshared = alpha.cli:run [x]\n"
                    "[gui_scripts]\nalpha-gui = alpha.gui:start\n",
        extra=[("alpha-1.0.dist-info/RECORD.jws", b"{}")], zip64_end=True)
    beta = make_wheel(w, "beta", "2.0", files={
        "beta/__init__.py": b"B = 2\n",
        "ns/beta_part/y.py": b"Y = 2\n",
        "alpha/sub/shared.py": b"S = 1\n",             # a directory of another wheel
        "alpha/sub/deep/mod.py": b"new = True\n",      # a file of another wheel, replaced
        "beta/lib.so": b"\x7fELF beta",
    }, data={"scripts/beta-tool": b"#!python\nimport beta\n",
             "headers/beta.h": b"int beta;\n", "data/share/beta/b.txt": b"b\n"},
        entry_points="[console_scripts]\nshared = beta:main\n")
    return alpha, beta


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_streamed_layer_is_the_staged_layer(tmp_path, compression):
    alpha, beta = many_wheels(tmp_path)
    r = write_recipe(tmp_path / "r.json", wheels_doc([alpha, beta]))
    res = both_ways(tmp_path, r, compression)
    assert "layer py: written from 2 wheels, nothing staged" in res["stderr"]
    if compression == "gzip":
        t = layer_tar(res["blobs"][0])
        names = t.getnames()
        assert names == sorted(names)
        site = SITE + "/"
        assert t.extractfile(site + "alpha/sub/deep/mod.py").read() == b"new = True\n"
        assert t.getmember(site + "alpha/_ext.cpython-311-x86_64-linux-gnu.so").mode == 0o755
        assert t.getmember(site + "alpha/__init__.py").mode == 0o644
        assert site + "alpha/empty" not in names
        assert t.getmember(site + "ns").isdir() and t.getmember(site + "ns/beta_part/y.py")
        assert t.extractfile("usr/local/bin/alpha-run").read() == b"#!/usr/bin/python3.11\nprint('a')\n"
        assert t.extractfile("usr/local/bin/alpha-w").read() == b"#!/usr/bin/python3.11\nprint('w')\n"
        assert b"from beta import main" in t.extractfile("usr/local/bin/shared").read()
        assert t.getmember("usr/local/bin/alpha.sh").mode == 0o755
        record = t.extractfile(site + "alpha-1.0.dist-info/RECORD").read().decode()
        assert '"alpha/we,ird.py",' in record and "../../../bin/alpha-gui," in record
        assert site + "alpha-1.0.dist-info/RECORD.jws" not in names
        assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in t.getmembers())


def test_streamed_editable_project_and_built_wheels(tmp_path):
    """A dependency from an index, the editable wheel kiln writes itself
    (libarchive's zip: data descriptors, its extra fields) and a build
    step's wheels."""
    idx = make_simple_index(tmp_path / "idx" / "simple", [
        make_wheel(tmp_path / "w", "dep", "1.0", py="py3", abi="none", plat="any")])
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0.3"\ndependencies = ["dep"]\n'
        '[project.scripts]\napp = "app.cli:main"\n')
    w = make_wheel(tmp_path / "prebuilt", "flash_attn", "2.7.4.post1",
                   data={"scripts/fa": b"#!python\n"})
    doc = {"recipe": 1, "name": "streamed", "base": "scratch",
           "layers": [{"name": "app", "kind": "wheels", "project": str(proj),
                       "project_path": "/srv/app", "index": str(idx)},
                      {"name": "fa", "kind": "build", "command": ["sh", "-c", f'cp "{w}" "$KILN_OUT/"'],
                       "inputs": [str(w)], "install": "wheels"}],
           "tag": {"repository": "example.invalid/streamed", "tag": "v1"}}
    res = both_ways(tmp_path, write_recipe(tmp_path / "r.json", doc))
    assert "layer app: written from 2 wheels, nothing staged" in res["stderr"]
    assert "layer fa: written from 1 wheels, nothing staged" in res["stderr"]
    t = layer_tar(res["blobs"][0])
    assert t.extractfile(SITE + "/__editable__.app-0.3.pth").read() == b"/srv/app\n"
    assert t.extractfile(SITE + "/dep/__init__.py").read() == b"__version__ = '1.0'\n"
    assert b"from app.cli import main" in t.extractfile("usr/local/bin/app").read()


def bzip2_wheel(outdir):
    """A wheel whose members are compressed with bzip2 (zip method 12),
    which libarchive reads and a streamed layer does not."""
    outdir.mkdir(parents=True, exist_ok=True)
    files = {"bz/__init__.py": b"B = 2\n" * 100,
             "bz-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: bz\nVersion: 1.0\n",
             "bz-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d in files.items())
    files["bz-1.0.dist-info/RECORD"] = (record + "bz-1.0.dist-info/RECORD,,\n").encode()
    path = outdir / "bz-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return path


@pytest.mark.parametrize("case", ["keep_modes", "bzip2"])
def test_what_is_not_streamed_is_staged(tmp_path, case):
    alpha, beta = many_wheels(tmp_path)
    if case == "keep_modes":
        doc = wheels_doc([beta], keep_modes=True)
    else:
        doc = wheels_doc([beta, bzip2_wheel(tmp_path / "bz")])
    res = both_ways(tmp_path, write_recipe(tmp_path / "r.json", doc))
    assert "nothing staged" not in res["stderr"]
    assert "layer py: built" in res["stderr"]


def bad_wheels(tmp_path, case):
    w = tmp_path / "w"
    if case == "tampered":
        return [make_wheel(w, "demo", "1.0", tamper="demo/__init__.py")]
    if case == "unhashed":
        return [make_wheel(w, "demo", "1.0", unhashed="demo/__init__.py")]
    if case == "unlisted":
        return [make_wheel(w, "demo", "1.0", unlisted="demo/extra.py")]
    if case == "unsafe":
        return [make_wheel(w, "evil", "1.0", files={"../../etc/passwd": b"x"})]
    if case == "symlink":
        return [hand_wheel(w, "demo", "1.0", {"demo/link": (b"target", {"mode": 0o120777})})]
    if case == "scheme":
        return [hand_wheel(w, "demo", "1.0", {"demo-1.0.data/elsewhere/x": (b"x", {})})]
    if case == "bad-crc":
        p = hand_wheel(w, "demo", "1.0", {"demo/a.py": (b"A" * 100, {"stored": True})})
        data = bytearray(p.read_bytes())
        data[data.index(b"A" * 100)] = ord("B")                 # the RECORD hash breaks too
        p.write_bytes(bytes(data))
        return [p]
    if case == "file-then-dir":
        return [make_wheel(w, "one", "1.0", files={"pkg": b"a file\n"}),
                make_wheel(w, "two", "1.0", files={"pkg/mod.py": b"M = 1\n"})]
    if case == "long-name":
        return [make_wheel(w, "demo", "1.0", files={"demo/" + "x" * 300 + ".py": b"X = 1\n"})]
    if case == "dir-then-file":
        return [make_wheel(w, "one", "1.0", files={"pkg/mod.py": b"M = 1\n"}),
                make_wheel(w, "two", "1.0", files={"pkg": b"a file\n"})]
    raise AssertionError(case)


def error_line(p, base):
    lines = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(lines) == 1, p.stderr
    # the staging directory's name is random
    return re.sub(r"stage-[A-Za-z0-9]{6}", "stage-X", lines[0].replace(str(base), "BASE"))


@pytest.mark.parametrize("case", ["tampered", "unhashed", "unlisted", "unsafe", "symlink", "scheme",
                                  "bad-crc", "file-then-dir", "dir-then-file", "long-name"])
def test_streamed_layer_refuses_what_staging_refuses(tmp_path, case):
    r = write_recipe(tmp_path / "r.json", wheels_doc(bad_wheels(tmp_path, case)))
    out = []
    for name, env in (("streamed", None), ("staged", STAGED)):
        base = tmp_path / name
        p = kiln("build", r, "--output", f"oci:{base}/out", "--cache", base / "cache",
                 check=False, env=env)
        assert p.returncode != 0, p.stderr
        assert "nothing staged" not in p.stderr
        out.append((p.returncode, error_line(p, base)))
        assert not list((base / "cache").glob("stage-*/*")), "a staging tree was left"
    assert out[0] == out[1]


ROOTFS = pathlib.Path(os.environ.get("KILN_TEST_ROOTFS_DIR", "/var/cache/kiln-test")) / "bookworm-gcc.tar"


@pytest.fixture(scope="module")
def debian(tmp_path_factory):
    """The real Debian root filesystem of test_sandbox.py as a base."""
    assert ROOTFS.is_file(), f"{ROOTFS} is missing: run scripts/setup.sh (it makes it with mmdebstrap)"
    d = tmp_path_factory.mktemp("debian")
    kiln("append", "scratch", "--layer", f"{ROOTFS}:/", "-t", f"oci:{d}/deb:deb",
         "--cache", d / "cache", env={"SOURCE_DATE_EPOCH": "0"})
    return f"oci:{d}/deb:deb"


def test_a_step_in_the_image_sees_a_streamed_layer(tmp_path, debian):
    """A layer below a step made in the image is unpacked for the sandbox
    while it is written: from the wheels too."""
    alpha, beta = many_wheels(tmp_path)
    check = (f"test \"$(cat /{SITE}/alpha/sub/deep/mod.py)\" = 'new = True'"
             " && test -x /usr/local/bin/alpha-run && cmp /usr/local/include/python3.11/alpha/alpha.h"
             " /usr/local/include/python3.11/alpha/alpha.h"
             f" && sha256sum /{SITE}/alpha/big.txt /usr/local/bin/shared > /etc/checked")
    doc = wheels_doc([alpha, beta])
    doc["base"] = debian
    doc["layers"].append({"name": "check", "kind": "run", "command": ["sh", "-c", check]})
    res = both_ways(tmp_path, write_recipe(tmp_path / "r.json", doc))
    assert "layer py: written from 2 wheels, nothing staged" in res["stderr"]
    assert len(res["layers"]) == 3 and "warning" not in res["stderr"]
    # unpacked as it was written, where the step took it from
    unpacked = tmp_path / "cache-streamed-gzip" / "rootfs" / res["diff_ids"][1].split(":")[1]
    assert (unpacked / SITE / "alpha/sub/deep/mod.py").read_bytes() == b"new = True\n"
