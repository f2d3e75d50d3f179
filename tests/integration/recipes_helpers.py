"""Stand-ins for the recipe tests: wheels, .deb files, apt and PEP 503
indexes, git repositories, all made here, offline."""
import atexit
import base64
import email.utils
import gzip
import hashlib
import json
import lzma
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import types
import zipfile

ROOT = pathlib.Path(os.environ.get("KILN_SOURCE_ROOT", pathlib.Path(__file__).resolve().parents[2]))
LINNAEUS = ROOT / "recipes" / "linnaeus" / "linnaeus.json"


def kiln_path():
    path = os.environ.get("KILN") or str(ROOT / "build" / "cli" / "kiln")
    assert os.access(path, os.X_OK), f"kiln binary not found at {path}; build first"
    return path


def kiln(*args, check=True, env=None, cwd=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([kiln_path(), *map(str, args)], capture_output=True, text=True, env=e,
                       cwd=cwd, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"kiln {' '.join(map(str, args))} exited {p.returncode}\n"
                             f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def kiln_fails(*args, code=None, **kw):
    """Expects a failure with exactly one 'kiln: error:' line; returns that line."""
    p = kiln(*args, check=False, **kw)
    assert p.returncode > 0, f"expected failure: {p.stdout} {p.stderr}"
    if code is not None:
        assert p.returncode == code, (p.returncode, p.stderr)
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(errs) == 1, f"expected one error line, got: {p.stderr!r}"
    return errs[0]


def run(*cmd, cwd=None, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=cwd, env=e)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}: {p.stdout} {p.stderr}")
    return p.stdout


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(outdir, name, version, files=None, *, py="cp311", abi="cp311",
               plat="manylinux_2_28_x86_64", entry_points=None, data=None, purelib=False,
               tamper=None, unhashed=None, unlisted=None, requires=(), requires_python=None,
               provides_extras=()):
    """Builds NAME-VERSION-PY-ABI-PLAT.whl.  files: {path: bytes} in the
    wheel root; data: {"scripts/x": bytes, "headers/h.h": ..., "data/share/y": ...};
    tamper: a path whose content changes after RECORD is written; requires:
    Requires-Dist lines (PEP 508), requires_python, provides_extras: the
    rest of the core metadata a resolver reads."""
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    distinfo = f"{dist}-{version}.dist-info"
    datadir = f"{dist}-{version}.data"
    entries = {}
    for p, content in (files or {f"{dist}/__init__.py": f"__version__ = '{version}'\n".encode()}).items():
        entries[p] = content
    for p, content in (data or {}).items():
        entries[f"{datadir}/{p}"] = content
    entries[f"{distinfo}/METADATA"] = metadata_text(name, version, requires, requires_python,
                                                    provides_extras).encode()
    entries[f"{distinfo}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: kiln-tests\n"
                                    f"Root-Is-Purelib: {'true' if purelib else 'false'}\n"
                                    f"Tag: {py}-{abi}-{plat}\n").encode()
    if entry_points:
        entries[f"{distinfo}/entry_points.txt"] = entry_points.encode()
    record = "".join(f"{p},,\n" if p == unhashed else f"{p},{_record_hash(c)},{len(c)}\n"
                     for p, c in entries.items())
    record += f"{distinfo}/RECORD,,\n"
    entries[f"{distinfo}/RECORD"] = record.encode()
    if tamper:
        entries[tamper] = entries[tamper] + b"# tampered\n"
    if unlisted:
        entries[unlisted] = b"not in RECORD\n"
    path = outdir / f"{name.replace('-', '_')}-{version}-{py}-{abi}-{plat}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, c in entries.items():
            info = zipfile.ZipInfo(p, date_time=(2024, 1, 1, 0, 0, 0))
            mode = 0o755 if p.endswith(".so") or "/scripts/" in p else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, c)
    return path


def metadata_text(name, version, requires=(), requires_python=None, provides_extras=()):
    text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python:
        text += f"Requires-Python: {requires_python}\n"
    text += "".join(f"Provides-Extra: {e}\n" for e in provides_extras)
    text += "".join(f"Requires-Dist: {r}\n" for r in requires)
    return text + "\nThe description.\nRequires-Dist: not-a-header\n"


def wheel_metadata(path):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(name)


def make_simple_index(root, wheels, *, hashes=True, extra_links=(), metadata=False,
                      requires_python=None):
    """A PEP 503 index on disk: ROOT/NORMALIZED/index.html linking the wheels
    (copied to ROOT/../files) with #sha256= fragments.  metadata: PEP 658/714
    FILE.metadata files and data-core-metadata attributes (True for all, or
    a set of file names); requires_python: {file name: data-requires-python}."""
    root = pathlib.Path(root)
    files = root.parent / "files"
    files.mkdir(parents=True, exist_ok=True)
    by_project = {}
    for w in wheels:
        w = pathlib.Path(w)
        target = files / w.name
        target.write_bytes(w.read_bytes())
        project = w.name.split("-")[0].lower().replace("_", "-")
        by_project.setdefault(project, []).append(target)
    for project, ws in by_project.items():
        d = root / project
        d.mkdir(parents=True, exist_ok=True)
        links = []
        for w in ws:
            href = "../../files/" + w.name.replace("+", "%2B")
            if hashes:
                href += "#sha256=" + sha256(w)
            attrs = ""
            if metadata is True or (metadata and w.name in metadata):
                meta = wheel_metadata(w)
                (files / (w.name + ".metadata")).write_bytes(meta)
                attrs += f' data-core-metadata="sha256={hashlib.sha256(meta).hexdigest()}"'
            if requires_python and w.name in requires_python:
                rp = requires_python[w.name].replace(">", "&gt;").replace("<", "&lt;")
                attrs += f' data-requires-python="{rp}"'
            links.append(f'<a href="{href}"{attrs}>{w.name}</a><br/>')
        links.extend(extra_links)
        (d / "index.html").write_text("<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) +
                                      "\n</body></html>\n")
    return root


def make_deb(outdir, package, files, *, version="1.0-1", arch="amd64", postinst=None,
             conffiles=(), control=None, triggers=None):
    """dpkg-deb --build of a tree holding files ({path: bytes}, paths
    relative to /; a value of ("link", target) makes a symlink); triggers:
    the text of its triggers control file (deb-triggers(5))."""
    outdir = pathlib.Path(outdir)
    tree = outdir / f"{package}-tree"
    (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: {arch}\n"
        f"Maintainer: kiln tests <tests@example.invalid>\nDescription: stand-in for {package}\n")
    if control:
        with open(tree / "DEBIAN" / "control", "a") as f:
            f.write("".join(f"{k}: {v}\n" for k, v in control.items()))
    if conffiles:
        (tree / "DEBIAN" / "conffiles").write_text("".join(f"/{c}\n" for c in conffiles))
    if postinst:
        (tree / "DEBIAN" / "postinst").write_text(postinst)
        os.chmod(tree / "DEBIAN" / "postinst", 0o755)
    if triggers:
        (tree / "DEBIAN" / "triggers").write_text(triggers)
    for p, c in files.items():
        f = tree / p
        f.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(c, tuple) and c[0] == "link":
            os.symlink(c[1], f)
        else:
            f.write_bytes(c)
            if p.startswith(("usr/bin/", "bin/")):
                os.chmod(f, 0o755)
    sums = []
    for p, c in sorted(files.items()):
        if not isinstance(c, tuple):
            sums.append(f"{hashlib.md5(c).hexdigest()}  {p}\n")
    (tree / "DEBIAN" / "md5sums").write_text("".join(sums))
    path = outdir / f"{package}_{version}_{arch}.deb"
    run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", tree, path)
    return path


_KEYS = {}


def gpg_key(name="kiln test"):
    """A signing key made with gpg (no passphrase) in its own GNUPGHOME, once
    per test process: .home, .env (for gpg) and .keyring (the exported
    public key, binary) and .armored (the same, ASCII armored)."""
    if name in _KEYS:
        return _KEYS[name]
    # a short path: gpg-agent's socket lives in the home
    home = pathlib.Path(tempfile.mkdtemp(prefix="kgpg"))
    env = dict(os.environ, GNUPGHOME=str(home))
    g = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*g, "--quick-gen-key", f"{name} <tests@example.invalid>", "ed25519", "sign",
                    "never"], env=env, check=True, capture_output=True)
    key = types.SimpleNamespace(home=home, env=env, gpg=g, keyring=home / "key.gpg",
                                armored=home / "key.asc")
    key.keyring.write_bytes(subprocess.run([*g, "--export"], env=env, check=True,
                                           capture_output=True).stdout)
    key.armored.write_bytes(subprocess.run([*g, "--armor", "--export"], env=env, check=True,
                                           capture_output=True).stdout)
    atexit.register(lambda: (subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env,
                                            capture_output=True),
                             shutil.rmtree(home, ignore_errors=True)))
    _KEYS[name] = key
    return key


def apt_date(t):
    return email.utils.formatdate(t, usegmt=True)


def sign_release(dist, key=None, *, date=None, valid_until=None, inrelease=True):
    """dist/Release listing every index file under dist (SHA256 and size),
    signed into dist/InRelease (or dist/Release.gpg) by key (None: unsigned)."""
    dist = pathlib.Path(dist)
    files = sorted(p for p in dist.rglob("*") if p.is_file()
                   and p.name not in ("Release", "InRelease", "Release.gpg"))
    lines = [f"Origin: kiln tests", f"Suite: {dist.name}", f"Codename: {dist.name}",
             f"Date: {apt_date(time.time() if date is None else date)}"]
    if valid_until is not None:
        lines.append(f"Valid-Until: {apt_date(valid_until)}")
    lines.append("SHA256:")
    for f in files:
        lines.append(f" {sha256(f)} {f.stat().st_size:>8} {f.relative_to(dist)}")
    (dist / "Release").write_text("\n".join(lines) + "\n")
    for n in ("InRelease", "Release.gpg"):
        (dist / n).unlink(missing_ok=True)
    if key is not None:
        how = ["--clearsign", "-o", dist / "InRelease"] if inrelease else \
              ["--detach-sign", "-o", dist / "Release.gpg"]
        subprocess.run([*key.gpg, *map(str, how), str(dist / "Release")], env=key.env,
                       check=True, capture_output=True)


def make_apt_repo(mirror, debs, suite="jammy", component="main", *, key="default",
                  valid_until=None, inrelease=True, compressions=("gz",)):
    """An apt mirror layout: pool/ with the debs, Packages indexes (one per
    compression: "gz", "xz", "" for plain) and dists/SUITE/Release signed by
    key (default: the tests' key; None: unsigned).  debs may be a dict
    {component: [debs]}."""
    mirror = pathlib.Path(mirror)
    by_comp = debs if isinstance(debs, dict) else {component: debs}
    for comp, ds in by_comp.items():
        stanzas = []
        for d in ds:
            d = pathlib.Path(d)
            pkg = d.name.split("_")[0]
            rel = f"pool/{comp}/{pkg[0]}/{pkg}/{d.name}"
            (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
            (mirror / rel).write_bytes(d.read_bytes())
            stanzas.append(f"Package: {pkg}\nVersion: {d.name.split('_')[1]}\nArchitecture: amd64\n"
                           f"Filename: {rel}\nSize: {d.stat().st_size}\nSHA256: {sha256(d)}\n")
        idx = mirror / "dists" / suite / comp / "binary-amd64"
        idx.mkdir(parents=True, exist_ok=True)
        text = "\n".join(stanzas).encode()
        for c in compressions:
            if c == "gz":
                (idx / "Packages.gz").write_bytes(gzip.compress(text, mtime=0))
            elif c == "xz":
                (idx / "Packages.xz").write_bytes(lzma.compress(text))
            else:
                (idx / "Packages").write_bytes(text)
    sign_release(mirror / "dists" / suite, gpg_key() if key == "default" else key,
                 valid_until=valid_until, inrelease=inrelease)
    return mirror


def mirror_of(tmp_path, debs):
    """A local apt mirror of real .debs (bookworm main): dpkg-scanpackages'
    index, a Release signed with the tests' key."""
    m = pathlib.Path(tmp_path) / "mirror"
    pool = m / "pool/main"
    pool.mkdir(parents=True)
    for d in debs:
        (pool / d.name).write_bytes(d.read_bytes())
    idx = m / "dists/bookworm/main/binary-amd64"
    idx.mkdir(parents=True)
    p = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool"], cwd=m, check=True,
                       capture_output=True)
    (idx / "Packages").write_bytes(p.stdout)
    sign_release(m / "dists/bookworm", gpg_key())
    return m


def apt_layer(name, packages, mirror):
    """A debs layer installing packages (and their dependencies) from a
    mirror_of() mirror."""
    return {"name": name, "kind": "debs", "apt": [
        {"mirror": str(mirror), "suite": "bookworm", "components": ["main"],
         "keyring": str(gpg_key().keyring), "packages": packages}]}


def make_git_repo(path, branches=None, main_files=None):
    """A repository with 'main' (plus main_files, {file: text}) and the
    given branches ({name: {file: text}})."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
    run("git", "init", "-q", "-b", "main", path, env=env)
    (path / "linnaeus").mkdir(exist_ok=True)
    (path / "linnaeus" / "__init__.py").write_text("BRANCH = 'main'\n")
    (path / "README.md").write_text("linnaeus stand-in\n")
    for f, text in (main_files or {}).items():
        (path / f).write_text(text)
    run("git", "-C", path, "add", "-A", env=env)
    run("git", "-C", path, "commit", "-q", "-m", "main", env=env)
    for name, files in (branches or {}).items():
        run("git", "-C", path, "checkout", "-q", "-b", name, "main", env=env)
        for f, text in files.items():
            (path / f).parent.mkdir(parents=True, exist_ok=True)
            (path / f).write_text(text)
        run("git", "-C", path, "add", "-A", env=env)
        run("git", "-C", path, "commit", "-q", "-m", name, env=env)
    run("git", "-C", path, "checkout", "-q", "main", env=env)
    return path


def rev(repo, ref):
    return run("git", "-C", repo, "rev-parse", ref).strip()


def write_recipe(path, doc):
    path = pathlib.Path(path)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def apt_simulate(tmp_path, mirror, status, packages):
    """What apt-get install --no-install-recommends would add, on the same
    index and the same dpkg status: {name: version}."""
    d = pathlib.Path(tmp_path) / "apt"
    for sub in ("state/lists/partial", "cache/archives/partial"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "sources.list").write_text(
        f"deb [signed-by={gpg_key().keyring}] file:{mirror} bookworm main\n")
    opts = ["-o", f"Dir::Etc::SourceList={d}/sources.list", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", "Dir::Etc::Parts=/nonexistent", "-o", "Dir::Etc::Preferences=/nonexistent",
            "-o", "Dir::Etc::PreferencesParts=/nonexistent", "-o", f"Dir::State={d}/state",
            "-o", f"Dir::State::status={status}", "-o", f"Dir::Cache={d}/cache",
            "-o", "APT::Install-Recommends=false", "-o", "Debug::NoLocking=1",
            "-o", "APT::Architecture=amd64", "-o", "Acquire::Languages=none"]
    env = dict(os.environ, APT_CONFIG="/dev/null", LC_ALL="C")
    subprocess.run(["apt-get", *opts, "-q", "update"], check=True, capture_output=True, env=env)
    p = subprocess.run(["apt-get", *opts, "-s", "install", *packages], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    inst = {}
    for line in p.stdout.splitlines():
        if line.startswith("Inst "):
            name, ver = line.split()[1], line.split("(")[1].split()[0]
            inst[name.split(":")[0]] = ver
    return inst


def dpkg_status_versions(text):
    """{package: version} of the stanzas of a dpkg status file."""
    out = {}
    for st in text.strip().split("\n\n"):
        f = dict(l.split(": ", 1) for l in st.splitlines() if ": " in l and l[0] != " ")
        out[f["Package"]] = f["Version"]
    return out
