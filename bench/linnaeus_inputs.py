#!/usr/bin/python3
"""Stand-ins of realistic size for bench/build.sh: the linnaeus image's
inputs as tests/integration/linnaeus_standins.py makes them for the build in
the image (a real Debian 12 base with gcc and a stand-in nvcc, upstream's apt
list as real Debian .debs, a FlashAttention sdist compiled in the image), with
the sizes of the real build:

- torch: the stand-in torch (headers, a shared library extensions link to)
  plus TORCH_MIB MiB of shared-object-like files under torch/lib (a few
  large, many small; 64 KiB blocks of random bytes, of bytes from a 16-symbol
  alphabet and of a repeated 2 KiB pattern, so that they deflate about 2.3x
  as real .so files do) and a few thousand .py and .h files;
- about 100 small wheels: linnaeus's closure from the stand-in PyPI, the
  build tools, and synthetic projects (bench-dep-NNN) that the bench
  pyproject.toml adds to its dependencies;
- the linnaeus source: a git repository of a few thousand files.

    bench/linnaeus_inputs.py make WORK REGISTRY_HOST KILN [--arch A] [--torch-mib N]
        [--small-wheels N] [--source-files N]
            writes WORK/inputs.json: the recipe's --set values and the paths
    bench/linnaeus_inputs.py context WORK LOCK SYSTEM_DIGEST REGISTRY_DATA
            lays out WORK/ctx, buildah's build context: hardlinks to the files
            kiln read (the wheels of each wheels layer and the sdist as the
            lock lists them, the .debs kiln's system layer installed), and
            the source's work tree
    bench/linnaeus_inputs.py edit WORK
            changes one file of the source and commits it
    bench/linnaeus_inputs.py compare DIR_A DIR_B
            where two unpacked images' files differ
    bench/linnaeus_inputs.py report WORK [REGISTRY BASE KILN_REF BUILDAH_REF]
            the per-layer table of bench/build.sh from its stamped logs, and
            the sizes the two images pushed
"""
import argparse
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import urllib.parse
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from linnaeus_standins import (BUILD_TOOLS, PYPROJECT, TORCH, _host_wheel,  # noqa: E402
                               _real_flash_attn_sdists, _real_torch_wheels, image_apt_mirror,
                               linnaeus_closure, push_image_base)
from recipes_helpers import (gpg_key, make_git_repo, make_simple_index, make_wheel,  # noqa: E402
                             run)

BLOCK = 64 * 1024
# 16 symbols: deflate codes them in about 4 bits
NIBBLES = bytes((b & 0x0F) * 17 for b in range(256))
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


class Kiln:
    """What push_image_base needs of the tests' kiln fixture."""

    def __init__(self, path):
        self.path = str(path)

    def run(self, *args, env=None):
        e = dict(os.environ, **(env or {}))
        p = subprocess.run([self.path, *map(str, args)], capture_output=True, text=True, env=e)
        if p.returncode != 0:
            raise SystemExit(f"kiln {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
        return p


class Registry:
    def __init__(self, host):
        self.host = host


def so_chunks(size, seed):
    """size bytes of shared-object-like data, in blocks."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(BLOCK, left)
        kind = rng.random()
        if kind < 0.30:
            yield os.urandom(n)
        elif kind < 0.50:
            yield os.urandom(n).translate(NIBBLES)
        else:
            yield (os.urandom(2048) * (BLOCK // 2048))[:n]
        left -= n


def py_text(i, lines=80):
    """A Python module of about lines lines, each a little different."""
    out = [f'"""module {i}"""', "import os", ""]
    for j in range(lines):
        out.append(f"def f_{i}_{j}(x, y={j}):\n    return os.path.join(str(x), 'p{i * 7 + j}') * y")
    return ("\n".join(out) + "\n").encode()


def so_sizes(total):
    """File sizes that add up to total bytes: 45% in 3 large files, 30% in 20,
    25% in files of about 1.5 MiB (real torch/lib, and the nvidia wheels)."""
    sizes = [int(total * 0.45 / 3)] * 3 + [int(total * 0.30 / 20)] * 20
    rest = total - sum(sizes)
    small = 1536 * 1024
    sizes += [small] * (rest // small)
    if rest % small:
        sizes.append(rest % small)
    return sizes


def _record_line(name, digest, size):
    import base64
    b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"{name},sha256={b64},{size}\n"


def big_torch(small, torch_mib, level=1):
    """Rewrites the stand-in torch wheel small (same name) with torch_mib MiB
    of shared objects and 3000 .py and .h files added; entries written one at
    a time, so the generator's memory stays small."""
    tmp = small.with_suffix(".tmp")
    record = []
    with zipfile.ZipFile(small) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        def put(name, chunks, size, mode=0o644):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info._compresslevel = level   # (3.13: an alias of compress_level)
            info.file_size = size
            h = hashlib.sha256()
            with z.open(info, "w") as f:
                for c in chunks:
                    f.write(c)
                    h.update(c)
            record.append(_record_line(name, h.digest(), size))

        distinfo = None
        for name in src.namelist():
            if name.endswith(".dist-info/RECORD"):
                distinfo = name.rsplit("/", 1)[0]
                continue
            data = src.read(name)
            put(name, [data], len(data), 0o755 if name.endswith(".so") else 0o644)
        for i, size in enumerate(so_sizes(torch_mib * 1024 * 1024)):
            put(f"torch/lib/libbench_{i:03}.so", so_chunks(size, i), size, 0o755)
        for i in range(2000):
            data = py_text(i)
            put(f"torch/_bench/m{i // 100:02}/mod_{i:04}.py", [data], len(data))
        for i in range(1000):
            data = (f"#pragma once\n// header {i}\n" +
                    "".join(f"int bench_{i}_{j}(int x);\n" for j in range(60))).encode()
            put(f"torch/include/bench/h{i // 100:02}/h_{i:04}.h", [data], len(data))
        rec = f"{distinfo}/RECORD"
        text = "".join(record) + f"{rec},,\n"
        put(rec, [text.encode()], len(text.encode()))
    os.replace(tmp, small)
    return small


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for c in iter(lambda: f.read(1 << 20), b""):
            h.update(c)
    return h.hexdigest()


def linked_index(root, wheels):
    """A PEP 503 index as make_simple_index writes it (PEP 658 metadata
    included), the wheels hardlinked into ROOT/../files instead of copied."""
    root = pathlib.Path(root)
    files = root.parent / "files"
    files.mkdir(parents=True, exist_ok=True)
    by_project = {}
    for w in wheels:
        target = files / w.name
        if target.exists():
            target.unlink()
        os.link(w, target)
        with zipfile.ZipFile(target) as z:
            meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA")))
        (files / (w.name + ".metadata")).write_bytes(meta)
        link = (f'<a href="../../files/{urllib.parse.quote(w.name)}#sha256={_sha256_file(target)}"'
                f' data-core-metadata="sha256={hashlib.sha256(meta).hexdigest()}">{w.name}</a><br/>')
        by_project.setdefault(w.name.split("-")[0].lower().replace("_", "-"), []).append(link)
    for project, links in by_project.items():
        (root / project).mkdir(parents=True, exist_ok=True)
        (root / project / "index.html").write_text(
            "<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    return root


def extra_wheels(outdir, n):
    """n synthetic projects of 10 to 40 modules each (about 50-400 kB)."""
    out = []
    for i in range(n):
        files = {f"bench_dep_{i:03}/__init__.py": f"__version__ = '1.{i}'\n".encode()}
        for j in range(10 + i % 31):
            files[f"bench_dep_{i:03}/m{j:02}.py"] = py_text(i * 100 + j, 20 + (i * j) % 60)
        out.append(make_wheel(outdir, f"bench-dep-{i:03}", f"1.{i}", files, py="py3",
                              abi="none", plat="any"))
    return out


def source_tree(repo, n, pyproject):
    """The linnaeus stand-in repository with n more files (modules, configs,
    docs, small assets), committed on main."""
    make_git_repo(repo, main_files={"pyproject.toml": pyproject})
    for i in range(n):
        kind = i % 10
        if kind < 7:
            p, data = repo / "linnaeus" / f"pkg{i % 40:02}" / f"mod_{i:04}.py", py_text(i, 40)
        elif kind < 9:
            p = repo / "configs" / f"exp{i % 20:02}" / f"cfg_{i:04}.yaml"
            data = "".join(f"key_{j}: {i * j}\n" for j in range(50)).encode()
        else:
            p, data = repo / "assets" / f"a_{i:04}.bin", os.urandom(4096 + (i * 37) % 8192)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for d in sorted((repo / "linnaeus").glob("pkg*")):
        (d / "__init__.py").write_text("")
    run("git", "-C", repo, "add", "-A", env=GIT_ENV)
    run("git", "-C", repo, "commit", "-q", "-m", "the bench tree", env=GIT_ENV)
    return repo


def make(work, registry_host, kiln, arch, torch_mib, small_wheels, source_files):
    work = pathlib.Path(work)
    work.mkdir(parents=True, exist_ok=True)
    push_image_base(Kiln(kiln), Registry(registry_host), work)

    # torch, torchvision, torchaudio and what torch requires; torch made big
    torch_wheels = _real_torch_wheels(work / "torch" / arch, arch)
    big_torch(torch_wheels[0], torch_mib)
    torch_site = work / "download.pytorch.org"
    linked_index(torch_site / TORCH[arch][3], torch_wheels)

    # PyPI: the build tools (setuptools, wheel, packaging from Debian's
    # Python, so the sdist builds), linnaeus's closure, the sdists, and the
    # synthetic projects that make about small_wheels wheels in all
    real = {w.name.split("-")[0]: w for w in
            (_host_wheel(work / "host-wheels", d) for d in ("setuptools", "wheel", "packaging"))}
    tools = [make_wheel(work / "pw", name, version, requires=requires, py="py3", abi="none",
                        plat="any") for name, version, requires in BUILD_TOOLS if name not in real]
    closure = [w for w in linnaeus_closure(work) if w.name.split("-")[0] not in real]
    # 48 small wheels without them: 37 of the closure, 7 build tools,
    # torchvision, torchaudio, filelock and nvidia-cudnn-cu12
    extra = extra_wheels(work / "xw", max(0, small_wheels - 48))
    pypi = make_simple_index(work / "pypi.org" / "simple",
                             tools + closure + list(real.values()) + extra +
                             _real_flash_attn_sdists(work))
    deps = "".join(f'    "bench-dep-{i:03}>=1.0",\n' for i in range(len(extra)))
    # (configs/ and assets/ are no packages: setuptools' flat-layout
    # discovery, which pip install -e runs in the Dockerfile, is told so)
    pyproject = (PYPROJECT.replace('    "tqdm>=4.65",\n', '    "tqdm>=4.65",\n' + deps) +
                 '\n[tool.setuptools.packages.find]\ninclude = ["linnaeus*"]\n')
    repo = source_tree(work / "linnaeus", source_files, pyproject)

    keyring = work / "keyring.gpg"   # the key's own home goes when this process ends
    shutil.copyfile(gpg_key().keyring, keyring)
    sets = {"ubuntu_mirror": f"file://{image_apt_mirror(work)}", "ubuntu_keyring": str(keyring),
            "torch_index": f"file://{torch_site / TORCH[arch][3]}",
            "pypi_index": f"file://{pypi}", "linnaeus_git": str(repo)}
    sizes = {"torch_wheel": torch_wheels[0].stat().st_size,
             "torch_files": len(zipfile.ZipFile(torch_wheels[0]).namelist()),
             "source_files": int(run("git", "-C", repo, "ls-files").count("\n"))}
    (work / "inputs.json").write_text(json.dumps({"sets": sets, "arch": arch, "sizes": sizes,
                                                  "repo": str(repo)}, indent=1))


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.link(src, dst)


def _local(url):
    path = url[len("file://"):] if url.startswith("file://") else url
    if not path.startswith("/"):
        raise SystemExit(f"bench: the lock names {url}, not a local file")
    return pathlib.Path(urllib.parse.unquote(path) if url.startswith("file://") else path)


def _stanzas(text):
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        if "Package" in fields:
            yield fields


def layer_debs(blob, mirror):
    """The .debs of mirror that kiln's debs layer (a gzip tar) installed: the
    packages of its var/lib/dpkg/info/*.list, at the versions of its status."""
    # (GNU tar: Python's tarfile in stream mode reads the first gzip member
    # only, and kiln's gzip layers are a series of 1 MiB members)
    names = subprocess.run(["tar", "-tzf", blob], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    listed = {n[len("var/lib/dpkg/info/"):-len(".list")].split(":")[0] for n in names
              if n.startswith("var/lib/dpkg/info/") and n.endswith(".list")}
    status = subprocess.run(["tar", "-xzOf", blob, "var/lib/dpkg/status"], check=True,
                            capture_output=True, text=True).stdout
    version = {f["Package"]: f["Version"] for f in _stanzas(status) if f["Package"] in listed}
    index = (mirror / "dists/jammy/main/binary-amd64/Packages").read_text()
    files = {(f["Package"], f["Version"]): f["Filename"] for f in _stanzas(index)}
    missing = sorted(p for p in listed if (p, version.get(p)) not in files)
    if missing:
        raise SystemExit(f"bench: the system layer installed packages the mirror lacks: {missing}")
    return [mirror / files[(p, version[p])] for p in sorted(listed)]


def context(work, lock, system_digest, registry_data):
    """buildah's context from what kiln resolved: the lock's wheels and sdist
    per layer, the .debs kiln's system layer holds, the source's work tree."""
    work = pathlib.Path(work)
    ctx = work / "ctx"
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir()
    inputs = json.loads((work / "inputs.json").read_text())
    counts = {}
    for name, layer in json.loads(pathlib.Path(lock).read_text())["layers"].items():
        for w in layer.get("packages", []):
            f = _local(w["url"])
            _link(f, ctx / name / f.name)
            counts[name] = counts.get(name, 0) + 1
    hexd = system_digest.split(":")[1]
    blob = pathlib.Path(registry_data) / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    for f in layer_debs(blob, _local(inputs["sets"]["ubuntu_mirror"])):
        _link(f, ctx / "system" / f.name)
        counts["system"] = counts.get("system", 0) + 1
    shutil.copytree(inputs["repo"], ctx / "src", symlinks=True,
                    ignore=shutil.ignore_patterns(".git"), copy_function=os.link)
    print(" ".join(f"{k} {v}" for k, v in counts.items()))


def edit(work):
    """(WORK/ctx/src holds hardlinks of the work tree: buildah sees the edit too)"""
    repo = pathlib.Path(json.loads((pathlib.Path(work) / "inputs.json").read_text())["repo"])
    p = repo / "linnaeus" / "pkg01" / "mod_0001.py"
    p.write_text(p.read_text() + "\nEDITED = True\n")
    run("git", "-C", repo, "commit", "-q", "-am", "one source file changed", env=GIT_ENV)


def _tree(root):
    """{path: (kind, size)} of an unpacked image, a conffile that dpkg left
    as NAME.dpkg-new under its own name."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            kind = "d" if n in dirs and not os.path.islink(p) else \
                "l" if os.path.islink(p) else "f"
            rel = os.path.relpath(p, root)
            if rel.endswith(".dpkg-new"):
                rel = rel[:-len(".dpkg-new")]
            out[rel] = (kind, st.st_size if kind == "f" else 0)
    return out


# what pip writes and kiln does not (or differently), by design
_EXPLAINED = re.compile(r"(\.dist-info/(INSTALLER|RECORD|REQUESTED|direct_url\.json)$|"
                        r"/__editable__)")


def compare(a, b):
    """Prints where the files of two unpacked images differ (path, kind,
    size), the differences _EXPLAINED lists counted apart."""
    ta, tb = _tree(a), _tree(b)
    diff = sorted(p for p in set(ta) | set(tb) if ta.get(p) != tb.get(p))
    rest = [p for p in diff if not _EXPLAINED.search("/" + p)]
    print(f"compare: {len(ta)} paths in kiln's image, {len(tb)} in buildah's; "
          f"{len(diff) - len(rest)} differ in pip's own dist-info files and the editable finder")
    print(f"compare: {len(rest)} other differences (kiln / buildah: kind and size, - absent)")
    for p in rest[:40]:
        print(f"  {p}: {ta.get(p, '-')} / {tb.get(p, '-')}")
    if len(rest) > 40:
        print(f"  ... and {len(rest) - 40} more")


def _stamped(path):
    out = []
    for line in pathlib.Path(path).read_text().splitlines():
        t, _, text = line.partition(" ")
        out.append((float(t), text))
    return out


def kiln_layers(path):
    """[[layer, state, build s, step start s]] from a stamped kiln build
    --progress plain, in the order the layers finished (they build in
    parallel, a layer made in the image once those below it are done): a
    layer builds from its 'building' line to 'built' (a cached one takes no
    time; its blob is pushed after that); a build step in the image starts
    with its first output line, once the layers below are unpacked for it."""
    rows, start, step_at = [], {}, {}
    for t, text in _stamped(path):
        m = re.match(r"layer (\S+): (building|built|cached)", text)
        if m and m.group(2) == "building":
            start[m.group(1)] = t
        elif m:
            name = m.group(1)
            rows.append([name, m.group(2), t - start[name] if name in start else 0.0,
                         step_at.get(name)])
        elif " | " in text:
            name = text.split(" | ", 1)[0]
            if name in start:
                step_at.setdefault(name, t - start[name])
    return rows


def buildah_steps(path):
    """(step, seconds) from a stamped buildah bud: a step lasts until the next starts."""
    lines = _stamped(path)
    marks = [(t, m.group(0)) for t, l in lines
             if (m := re.match(r"(STEP \d+/\d+: \S+.{0,52}|COMMIT)", l))]
    end = lines[-1][0]
    return [(s, (marks[i + 1][0] if i + 1 < len(marks) else end) - t)
            for i, (t, s) in enumerate(marks)]


def _layers(registry, ref):
    import urllib.request
    repo, tag = ref.rsplit(":", 1)
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req) as r:
        return {d["digest"]: d["size"] for d in json.load(r)["layers"]}


def pushed(registry, base, *refs):
    """The MiB each image pushed beyond the base's layers."""
    below = _layers(registry, base)
    out = []
    for ref in refs:
        own = {d: n for d, n in _layers(registry, ref).items() if d not in below}
        out.append(f"{sum(own.values()) / 2**20:.0f} MiB in {len(own)} layers")
    return out


def report(work, registry=None, base=None, kiln_ref=None, buildah_ref=None):
    w = pathlib.Path(work)
    if registry:
        k, b = pushed(registry, base, kiln_ref, buildah_ref)
        print(f"pushed beyond the base: kiln {k}, buildah {b}")
    cold = kiln_layers(w / "kiln-cold.log")
    edit = {r[0]: r for r in kiln_layers(w / "kiln-edit.log")}
    print("kiln layers, as they finished          cold: build s | rebuild: build s  state")
    for name, _, b, step in cold:
        note = f"   (its step started after {step:.1f} s, the layers below unpacked)" \
            if step is not None else ""
        e = edit.get(name, [name, "-", 0.0, None])
        print(f"  {name:<36} {b:13.2f} | {e[2]:16.2f}  {e[1]}{note}")
    print("buildah steps (the base's pull is in STEP 1)                 cold s  rebuild s")
    for (s, a), (_, b) in zip(buildah_steps(w / "buildah-cold.log"),
                              buildah_steps(w / "buildah-edit.log")):
        if a >= 0.05 or b >= 0.05:
            print(f"  {s[:58]:<58} {a:8.2f}  {b:8.2f}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="verb", required=True)
    m = sub.add_parser("make")
    m.add_argument("work")
    m.add_argument("registry")
    m.add_argument("kiln")
    m.add_argument("--arch", default="ampere")
    m.add_argument("--torch-mib", type=int, default=2048)
    m.add_argument("--small-wheels", type=int, default=100)
    m.add_argument("--source-files", type=int, default=3000)
    c = sub.add_parser("context")
    c.add_argument("work")
    c.add_argument("lock")
    c.add_argument("system_digest", help="the digest of kiln's system layer")
    c.add_argument("registry_data", help="the registry's storage directory")
    e = sub.add_parser("edit")
    e.add_argument("work")
    d = sub.add_parser("compare")
    d.add_argument("a")
    d.add_argument("b")
    r = sub.add_parser("report")
    r.add_argument("work")
    r.add_argument("refs", nargs="*", help="REGISTRY BASE KILN_REF BUILDAH_REF (repo:tag)")
    a = ap.parse_args()
    if a.verb == "make":
        make(a.work, a.registry, a.kiln, a.arch, a.torch_mib, a.small_wheels, a.source_files)
    elif a.verb == "context":
        context(a.work, a.lock, a.system_digest, a.registry_data)
    elif a.verb == "edit":
        edit(a.work)
    elif a.verb == "compare":
        compare(a.a, a.b)
    else:
        report(a.work, *a.refs)


if __name__ == "__main__":
    main()
