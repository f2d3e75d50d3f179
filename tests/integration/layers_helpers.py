"""Helpers for the layers tests: trees, hand-made tars and OCI layouts."""
import gzip
import hashlib
import io
import json
import os
import pathlib
import stat
import tarfile


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def write_blob(layout, data):
    d = sha(data)
    p = pathlib.Path(layout) / "blobs" / "sha256" / d.split(":")[1]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return d


def make_layout(layout, layers, tag="v1"):
    """layers: list of (bytes, mediaType).  Writes a one-image OCI layout."""
    layout = pathlib.Path(layout)
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs, diffs = [], []
    for data, mt in layers:
        descs.append({"mediaType": mt, "digest": write_blob(layout, data), "size": len(data)})
        try:
            raw = gzip.decompress(data) if mt.endswith("+gzip") else data
        except Exception:  # hostile blobs: the diffID does not matter
            raw = data
        diffs.append(sha(raw))
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
    man = json.dumps({"schemaVersion": 2,
                      "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": write_blob(layout, cfg), "size": len(cfg)},
                      "layers": descs}).encode()
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "digest": write_blob(layout, man), "size": len(man),
                          "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(idx))
    return f"oci:{layout}:{tag}"


TAR = "application/vnd.oci.image.layer.v1.tar"
TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
TZST = "application/vnd.oci.image.layer.v1.tar+zstd"


def tar_bytes(entries):
    """entries: list of dicts {name, type: file|dir|sym|hard|chr|blk|fifo, data, link, mode}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.mode = e.get("mode", 0o644)
            kind = e.get("type", "file")
            data = e.get("data", b"")
            if kind == "file":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                       "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
                       "fifo": tarfile.FIFOTYPE}[kind]
            if kind == "dir":
                ti.mode = e.get("mode", 0o755)
            if kind in ("sym", "hard"):
                ti.linkname = e["link"]
            if kind in ("chr", "blk"):
                ti.devmajor, ti.devminor = e.get("dev", (1, 3))
            t.addfile(ti)
    return buf.getvalue()


def snapshot(root):
    """Every path under root (outside views): type, mode, size, content hash, link target."""
    out = {}
    root = pathlib.Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for n in dirnames + filenames:
            p = pathlib.Path(dirpath) / n
            st = p.lstat()
            rel = os.fsencode(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("f", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel] = ("o", stat.S_IFMT(st.st_mode))
    return out


def hardlink_groups(root):
    groups = {}
    root = pathlib.Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            p = pathlib.Path(dirpath) / n
            st = p.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                groups.setdefault((st.st_dev, st.st_ino), []).append(os.fsencode(p.relative_to(root)))
    return sorted(sorted(g) for g in groups.values())


def manifest_of(layout, tag=None):
    layout = pathlib.Path(layout)
    idx = json.loads((layout / "index.json").read_text())
    ms = idx["manifests"]
    if tag:
        ms = [m for m in ms if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    d = ms[0]["digest"].split(":")[1]
    return json.loads((layout / "blobs" / "sha256" / d).read_bytes())


def blob(layout, digest):
    return (pathlib.Path(layout) / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
