"""Builds small OCI images in a layout from Python, independently of kiln,
so tests can make images that differ in one precise way."""
import gzip
import hashlib
import io
import json
import pathlib
import tarfile


def _put(layout, data):
    d = hashlib.sha256(data).hexdigest()
    p = pathlib.Path(layout) / "blobs" / "sha256" / d
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return "sha256:" + d


def make_tar(files):
    """files: {path: content bytes | ("dir",) | ("link", target)} or {path: (content, mode)}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path in sorted(files):
            spec = files[path]
            mode = 0o644
            if isinstance(spec, tuple) and spec[0] == "dir":
                ti = tarfile.TarInfo(path)
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                t.addfile(ti)
                continue
            if isinstance(spec, tuple) and spec[0] == "link":
                ti = tarfile.TarInfo(path)
                ti.type = tarfile.SYMTYPE
                ti.linkname = spec[1]
                t.addfile(ti)
                continue
            if isinstance(spec, tuple):
                spec, mode = spec
            ti = tarfile.TarInfo(path)
            ti.size = len(spec)
            ti.mode = mode
            t.addfile(ti, io.BytesIO(spec))
    return buf.getvalue()


def make_image(layout, tag, layers, env=("PATH=/usr/bin",), cmd=("/bin/sh",), level=6,
               compression="gzip", annotations=None, labels=None):
    layout = pathlib.Path(layout)
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs, diff_ids = [], []
    for files in layers:
        raw = make_tar(files)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        if compression == "gzip":
            blob = gzip.compress(raw, compresslevel=level, mtime=0)
            mt = "application/vnd.oci.image.layer.v1.tar+gzip"
        else:
            blob = raw
            mt = "application/vnd.oci.image.layer.v1.tar"
        descs.append({"mediaType": mt, "digest": _put(layout, blob), "size": len(blob)})
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": list(env), "Cmd": list(cmd)},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created_by": "imagegen"} for _ in layers]}
    if labels:
        config["config"]["Labels"] = labels
    cfg = json.dumps(config, separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": _put(layout, cfg), "size": len(cfg)},
                "layers": descs}
    if annotations:
        manifest["annotations"] = annotations
    mraw = json.dumps(manifest, separators=(",", ":")).encode()
    md = _put(layout, mraw)
    idx_path = layout / "index.json"
    index = json.loads(idx_path.read_text()) if idx_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({"mediaType": manifest["mediaType"], "digest": md, "size": len(mraw),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    idx_path.write_text(json.dumps(index))
    return md
