"""kiln build RECIPE --stage DIR: the layer front ends on stand-ins made here."""
import json
import os
import pathlib

import pytest

from linnaeus_standins import PYPROJECT, UPSTREAM_APT, fake_build_python, make_inputs, make_sites
from recipes_helpers import (LINNAEUS, gpg_key, kiln, kiln_fails, make_apt_repo, make_deb, make_git_repo,
                             make_simple_index, make_wheel, rev, sha256, write_recipe)

SITE = "usr/local/lib/python3.11/site-packages"


def stage(recipe, tmp_path, *args, name="stage"):
    out = tmp_path / name
    p = kiln("build", recipe, "--stage", out, "--cache-dir", tmp_path / "cache", "--json", *args)
    return out, json.loads(p.stdout)


def wheel_recipe(tmp_path, layer):
    return write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [layer]})


# ---- wheels ----

def test_wheel_installs_like_pip(tmp_path):
    w = make_wheel(tmp_path / "w", "demo-pkg", "1.0",
                   files={"demo_pkg/__init__.py": b"def main():\n    return 0\n",
                          "demo_pkg/_ext.so": b"\x7fELF fake"},
                   data={"scripts/demo-tool": b"#!python\nprint('hi')\n",
                         "scripts/plain.sh": b"#!/bin/sh\necho plain\n",
                         "headers/demo.h": b"int demo;\n",
                         "data/share/demo/readme.txt": b"data\n",
                         "purelib/demo_extra.py": b"X = 1\n"},
                   entry_points="[console_scripts]\ndemo = demo_pkg:main\n"
                                "demo-sub = demo_pkg.cli:app.run [extra]\n"
                                "[other]\nignored = x:y\n")
    r = wheel_recipe(tmp_path, {"name": "w", "kind": "wheels",
                                "wheels": [{"path": str(w), "sha256": sha256(w)}],
                                "interpreter": "/usr/bin/python3.11"})
    out, res = stage(r, tmp_path)
    root = out / "01-w"
    site = root / SITE
    assert (site / "demo_pkg" / "__init__.py").read_bytes() == b"def main():\n    return 0\n"
    assert os.stat(site / "demo_pkg" / "_ext.so").st_mode & 0o111
    assert not os.stat(site / "demo_pkg" / "__init__.py").st_mode & 0o111
    assert (site / "demo_extra.py").exists()
    # .data/scripts: #!python rewritten to the target interpreter, others kept
    assert (root / "usr/local/bin/demo-tool").read_text() == "#!/usr/bin/python3.11\nprint('hi')\n"
    assert (root / "usr/local/bin/plain.sh").read_text().startswith("#!/bin/sh\n")
    assert os.stat(root / "usr/local/bin/demo-tool").st_mode & 0o111
    assert (root / "usr/local/include/python3.11/demo_pkg/demo.h").exists()
    assert (root / "usr/local/share/demo/readme.txt").read_text() == "data\n"
    # console scripts generated
    demo = (root / "usr/local/bin/demo").read_text()
    assert demo.startswith("#!/usr/bin/python3.11\n")
    assert "from demo_pkg import main\n" in demo and "sys.exit(main())" in demo
    sub = (root / "usr/local/bin/demo-sub").read_text()
    assert "from demo_pkg.cli import app\n" in sub and "sys.exit(app.run())" in sub
    assert not (root / "usr/local/bin/ignored").exists()
    # RECORD rewritten (paths relative to site-packages), INSTALLER written
    distinfo = site / "demo_pkg-1.0.dist-info"
    assert (distinfo / "INSTALLER").read_text() == "kiln\n"
    record = (distinfo / "RECORD").read_text().splitlines()
    paths = [l.rsplit(",", 2)[0] for l in record]
    assert "../../../bin/demo" in paths and "../../../bin/demo-tool" in paths
    assert "../../../include/python3.11/demo_pkg/demo.h" in paths
    assert "demo_pkg-1.0.dist-info/INSTALLER" in paths
    assert "demo_pkg-1.0.dist-info/RECORD,," in record
    assert not any(p.startswith("demo_pkg-1.0.data") for p in paths)
    # the rewritten script's hash is of what was written
    import base64, hashlib
    line = [l for l in record if l.startswith("../../../bin/demo-tool,")][0]
    data = (root / "usr/local/bin/demo-tool").read_bytes()
    want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert line == f"../../../bin/demo-tool,sha256={want},{len(data)}"
    assert (out / "plan.json").exists()


def test_wheel_sha256_mismatch_fails(tmp_path):
    w = make_wheel(tmp_path / "w", "demo", "1.0")
    r = wheel_recipe(tmp_path, {"name": "w", "kind": "wheels",
                                "wheels": [{"path": str(w), "sha256": "0" * 64}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=4)
    assert "sha256 mismatch for" in line and str(w) in line


def test_wheel_content_must_match_its_record(tmp_path):
    w = make_wheel(tmp_path / "w", "demo", "1.0", tamper="demo/__init__.py")
    r = wheel_recipe(tmp_path, {"name": "w", "kind": "wheels",
                                "wheels": [{"path": str(w), "sha256": sha256(w)}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=4)
    assert "hash mismatch for 'demo/__init__.py'" in line


@pytest.mark.parametrize("kw,msg", [
    ({"unhashed": "demo/__init__.py"}, "'demo/__init__.py' has no hash in RECORD"),
    ({"unlisted": "demo/extra.py"}, "'demo/extra.py' is not listed in RECORD"),
])
def test_every_wheel_file_must_be_hashed_in_record(tmp_path, kw, msg):
    w = make_wheel(tmp_path / "w", "demo", "1.0", **kw)
    r = wheel_recipe(tmp_path, {"name": "w", "kind": "wheels",
                                "wheels": [{"path": str(w), "sha256": sha256(w)}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=3)
    assert msg in line


def test_wheel_with_unsafe_path_is_refused(tmp_path):
    w = make_wheel(tmp_path / "w", "evil", "1.0", files={"../../etc/passwd": b"x"})
    r = wheel_recipe(tmp_path, {"name": "w", "kind": "wheels",
                                "wheels": [{"path": str(w), "sha256": sha256(w)}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=3)
    assert "unsafe path" in line
    assert not (tmp_path / "etc").exists()


def test_simple_index_picks_the_matching_wheel(tmp_path):
    ws = [make_wheel(tmp_path / "w", "torch", v, py=py, abi=py, plat=plat)
          for v, py, plat in [("2.7.1+cu126", "cp311", "manylinux_2_28_x86_64"),
                              ("2.7.1+cu126", "cp310", "manylinux_2_28_x86_64"),
                              ("2.7.1+cu126", "cp311", "manylinux_2_28_aarch64"),
                              ("2.7.0+cu126", "cp311", "manylinux_2_28_x86_64")]]
    ws.append(make_wheel(tmp_path / "w", "torchvision", "0.22.1+cu126"))
    idx = make_simple_index(tmp_path / "mirror" / "simple", ws)
    req = tmp_path / "req.txt"
    tv = [w for w in ws if w.name.startswith("torchvision")][0]
    req.write_text(f"# lock\ntorchvision==0.22.1+cu126 \\\n    --hash=sha256:{sha256(tv)}\n")
    r = wheel_recipe(tmp_path, {"name": "torch", "kind": "wheels", "index": f"file://{idx}",
                                "packages": ["torch==2.7.1+cu126"], "requirements": str(req)})
    out, _ = stage(r, tmp_path)
    site = out / "01-torch" / SITE
    assert (site / "torch" / "__init__.py").read_text() == "__version__ = '2.7.1+cu126'\n"
    assert (site / "torch-2.7.1+cu126.dist-info" / "RECORD").exists()
    assert (site / "torchvision" / "__init__.py").exists()


def test_requirements_hash_mismatch_fails(tmp_path):
    w = make_wheel(tmp_path / "w", "tqdm", "4.66.4", py="py3", abi="none", plat="any")
    idx = make_simple_index(tmp_path / "mirror" / "simple", [w])
    req = tmp_path / "req.txt"
    req.write_text("tqdm==4.66.4 --hash=sha256:" + "a" * 64 + "\n")
    r = wheel_recipe(tmp_path, {"name": "d", "kind": "wheels", "index": str(idx),
                                "requirements": str(req)})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=4)
    assert "is not among the hashes required for 'tqdm'" in line


def test_index_without_hashes_needs_hash_lines(tmp_path):
    w = make_wheel(tmp_path / "w", "tqdm", "4.66.4", py="py3", abi="none", plat="any")
    idx = make_simple_index(tmp_path / "mirror" / "simple", [w], hashes=False)
    r = wheel_recipe(tmp_path, {"name": "d", "kind": "wheels", "index": str(idx),
                                "packages": ["tqdm==4.66.4"]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=3)
    assert "no sha256 for" in line


def test_no_matching_wheel(tmp_path):
    w = make_wheel(tmp_path / "w", "torch", "2.7.1+cu126", py="cp310", abi="cp310")
    idx = make_simple_index(tmp_path / "mirror" / "simple", [w])
    r = wheel_recipe(tmp_path, {"name": "t", "kind": "wheels", "index": str(idx),
                                "packages": ["torch==2.7.1+cu126"]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=5)
    assert "no wheel matches cp311 / manylinux_2_35_x86_64 in" in line
    assert "for 'torch': 'torch==2.7.1+cu126' (from the recipe)" in line


def test_http_sources_wait_for_the_registry_client(tmp_path):
    r = wheel_recipe(tmp_path, {"name": "t", "kind": "wheels",
                                "index": "https://download.pytorch.org/whl/cu126",
                                "packages": ["torch==2.7.1+cu126"]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=9)
    assert "cannot fetch 'https://download.pytorch.org/whl/cu126/torch/'" in line


# ---- debs ----

def test_deb_unpacks_without_scripts_and_records_status(tmp_path):
    marker = tmp_path / "postinst-ran"
    d = make_deb(tmp_path / "debs", "hello-kiln",
                 {"usr/bin/hello": b"#!/bin/sh\necho hello\n",
                  "bin/legacy": b"#!/bin/sh\n",
                  "usr/share/doc/hello-kiln/copyright": b"(c)\n",
                  "usr/lib/libhello.so": ("link", "libhello.so.1"),
                  "usr/lib/libhello.so.1": b"\x7fELF"},
                 postinst=f"#!/bin/sh\ntouch {marker}\n")
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "sys", "kind": "debs", "debs": [{"path": str(d), "sha256": sha256(d)}]}]})
    out, _ = stage(r, tmp_path)
    root = out / "01-sys"
    assert (root / "usr/bin/hello").read_text() == "#!/bin/sh\necho hello\n"
    assert os.stat(root / "usr/bin/hello").st_mode & 0o111
    # merged /usr: /bin content goes to /usr/bin, keeping the base's links
    assert (root / "usr/bin/legacy").exists() and not (root / "bin").exists()
    assert os.readlink(root / "usr/lib/libhello.so") == "libhello.so.1"
    status = (root / "var/lib/dpkg/status.d/hello-kiln").read_text()
    assert status.startswith("Package: hello-kiln\nVersion: 1.0-1\n")
    assert (root / "var/lib/dpkg/status.d/hello-kiln.md5sums").exists()
    assert not marker.exists()
    assert not (root / "DEBIAN").exists()


def test_deb_sha256_mismatch(tmp_path):
    d = make_deb(tmp_path / "debs", "x", {"usr/share/x": b"x"})
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu", "layers": [
        {"name": "sys", "kind": "debs", "debs": [{"path": str(d), "sha256": "1" * 64}]}]})
    kiln_fails("build", r, "--stage", tmp_path / "s", code=4)


def test_apt_index_resolves_packages(tmp_path):
    debs = [make_deb(tmp_path / "debs", p, {f"usr/share/{p}/f": p.encode()})
            for p in ("python3.11", "libpython3.11-stdlib", "unrelated")]
    mirror = make_apt_repo(tmp_path / "mirror", debs)
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu", "layers": [
        {"name": "py", "kind": "debs", "apt": [{
            "mirror": f"file://{mirror}", "index": "dists/jammy/main/binary-amd64/Packages.gz",
            "packages": ["python3.11", "libpython3.11-stdlib"]}]}]})
    out, _ = stage(r, tmp_path)
    root = out / "01-py"
    assert (root / "usr/share/python3.11/f").read_text() == "python3.11"
    assert (root / "var/lib/dpkg/status.d/libpython3.11-stdlib").exists()
    assert not (root / "usr/share/unrelated").exists()
    r2 = write_recipe(tmp_path / "r2.json", {"base": "ubuntu", "layers": [
        {"name": "py", "kind": "debs", "apt": [{
            "mirror": str(mirror), "index": "dists/jammy/main/binary-amd64/Packages.gz",
            "packages": ["python3.12"]}]}]})
    line = kiln_fails("build", r2, "--stage", tmp_path / "s2", code=5)
    assert "no package 'python3.12' for 'amd64' in the index" in line


# ---- source ----

def source_recipe(tmp_path, repo, **extra):
    return write_recipe(tmp_path / "r.json", {
        "base": "ubuntu",
        "variables": {"source": {"default": "github", "allowed": ["github", "local"]},
                      "branch": "main", "tag_suffix": "", "git_url": str(repo),
                      "local_dir": str(repo)},
        "layers": [{"name": "src", "kind": "source", "from": "${source}",
                    "repository": "${git_url}", "ref": "${branch}", "local": "${local_dir}",
                    "path": "/app/linnaeus"}],
        "annotations": {"org.example.branch": "${branch}"},
        "tag": {"repository": "frontierkodiak/linnaeus-dev", "tag": "ampere-stable-cu126",
                "branch": "${branch}", "suffix": "${tag_suffix}",
                "also": ["ampere-stable-cu126-git-${source.revision_short}"]},
        **extra})


def test_git_source_at_a_branch_records_the_commit(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"feat/x": {"linnaeus/__init__.py": "BRANCH = 'x'\n"}})
    r = source_recipe(tmp_path, repo)
    out, res = stage(r, tmp_path, "--branch", "feat/x")
    app = out / "01-src" / "app" / "linnaeus"
    assert (app / "linnaeus" / "__init__.py").read_text() == "BRANCH = 'x'\n"
    assert not (app / ".git").exists()
    commit = rev(repo, "feat/x")
    assert res["staged"][0]["revision"] == commit
    assert res["annotations"]["org.opencontainers.image.revision"] == commit
    assert res["tags"] == ["frontierkodiak/linnaeus-dev:ampere-stable-cu126-feat-x",
                           f"frontierkodiak/linnaeus-dev:ampere-stable-cu126-git-{commit[:7]}"]
    assert json.loads((out / "plan.json").read_text())["tags"] == res["tags"]


def test_git_source_by_url_and_commit(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"feat/x": {"x.txt": "x\n"}})
    commit = rev(repo, "main")
    r = source_recipe(tmp_path, f"file://{repo}")
    out, res = stage(r, tmp_path, "--branch", commit)
    assert res["staged"][0]["revision"] == commit
    assert (out / "01-src/app/linnaeus/README.md").exists()
    assert not (out / "01-src/app/linnaeus/x.txt").exists()
    # the mirror lives in the cache
    assert any((tmp_path / "cache" / "git").iterdir())


def test_git_source_unknown_branch(tmp_path):
    repo = make_git_repo(tmp_path / "repo")
    r = source_recipe(tmp_path, repo)
    line = kiln_fails("build", r, "--stage", tmp_path / "s", "--cache-dir", tmp_path / "c",
                      "--branch", "nope", code=5)
    assert f"no commit 'nope' in git repository '{repo}'" in line


def test_local_source_honours_dockerignore_and_has_no_branch_tag(tmp_path):
    src = tmp_path / "checkout"
    make_git_repo(src)
    (src / "outputs").mkdir()
    (src / "outputs" / "big.h5").write_text("x")
    (src / "notes.pyc").write_text("x")
    (src / "uncommitted.py").write_text("WIP = True\n")
    (src / ".dockerignore").write_text("outputs\n**/*.pyc\n")
    r = source_recipe(tmp_path, src)
    out, res = stage(r, tmp_path, "--source", "local", "--branch", "develop", "--tag-suffix",
                     "dev-test")
    app = out / "01-src/app/linnaeus"
    assert (app / "uncommitted.py").exists()
    assert not (app / "outputs").exists()
    assert not (app / "notes.pyc").exists()
    assert not (app / ".git").exists()
    assert res["tags"] == ["frontierkodiak/linnaeus-dev:ampere-stable-cu126-dev-test"]
    assert "org.opencontainers.image.revision" not in res["annotations"]


def test_local_source_gitignore(tmp_path):
    src = tmp_path / "checkout"
    (src / "a" / "__pycache__").mkdir(parents=True)
    (src / "a" / "__pycache__" / "m.cpython-311.pyc").write_text("x")
    (src / "a" / "m.py").write_text("x")
    (src / "build").mkdir()
    (src / "build" / "x").write_text("x")
    (src / ".gitignore").write_text("__pycache__/\n/build\n")
    r = source_recipe(tmp_path, src)
    out, _ = stage(r, tmp_path, "--source", "local")
    app = out / "01-src/app/linnaeus"
    assert (app / "a" / "m.py").exists()
    assert not (app / "a" / "__pycache__").exists()
    assert not (app / "build").exists()


# ---- build steps ----

def build_recipe(tmp_path, inputs, script, **layer):
    return write_recipe(tmp_path / "r.json", {
        "base": "ubuntu",
        "variables": {"cuda": "8.0;8.6"},
        "layers": [{"name": "fa", "kind": "build",
                    "command": ["sh", "-c", script],
                    "env": {"TORCH_CUDA_ARCH_LIST": "${cuda}", "COUNTER": str(tmp_path / "runs")},
                    "inputs": [str(i) for i in inputs], **layer}]})


def test_build_step_runs_once_per_change(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.c").write_text("int a;\n")
    script = ('echo run >> "$COUNTER"; mkdir -p "$KILN_OUT/opt/fa"; '
              'echo "$TORCH_CUDA_ARCH_LIST" > "$KILN_OUT/opt/fa/arch"; '
              'test -z "$LEAK" || exit 9; pwd > "$KILN_OUT/opt/fa/cwd"')
    r = build_recipe(tmp_path, [src], script)
    env = {"LEAK": "from-host"}
    out, res = stage(r, tmp_path, name="s1")
    assert (out / "01-fa/opt/fa/arch").read_text() == "8.0;8.6\n"
    assert res["staged"][0]["cached"] is False
    key = res["staged"][0]["cache_key"]
    assert key.startswith("sha256:")
    out, res = stage(r, tmp_path, name="s2")
    assert res["staged"][0]["cached"] is True and res["staged"][0]["cache_key"] == key
    assert (tmp_path / "runs").read_text() == "run\n"
    # a changed input runs it again
    (src / "a.c").write_text("int a, b;\n")
    out, res = stage(r, tmp_path, name="s3")
    assert res["staged"][0]["cache_key"] != key
    assert (tmp_path / "runs").read_text() == "run\nrun\n"
    # so does a changed environment
    out, res = stage(r, tmp_path, "--set", "cuda=9.0", name="s4")
    assert (out / "01-fa/opt/fa/arch").read_text() == "9.0\n"
    assert (tmp_path / "runs").read_text() == "run\nrun\nrun\n"
    # the host environment does not leak in
    kiln("build", r, "--stage", tmp_path / "s5", "--cache-dir", tmp_path / "cache2", env=env)
    # cache entries are complete directories only
    assert not [p for p in (tmp_path / "cache" / "build").iterdir() if p.name.startswith(".tmp")]


def test_build_step_failure_keeps_nothing(tmp_path):
    r = build_recipe(tmp_path, [], 'echo "compiler exploded" >&2; exit 3')
    line = kiln_fails("build", r, "--stage", tmp_path / "s", "--cache-dir", tmp_path / "c")
    assert "build step: 'sh' exited with status 3: compiler exploded" in line
    assert not [p for p in (tmp_path / "c" / "build").iterdir()]


def test_build_step_wheels_are_installed(tmp_path):
    w = make_wheel(tmp_path / "prebuilt", "flash_attn", "2.7.4.post1")
    r = build_recipe(tmp_path, [w], f'cp "{w}" "$KILN_OUT/"', install="wheels",
                     site_packages="/usr/lib/python3/dist-packages")
    out, _ = stage(r, tmp_path)
    assert (out / "01-fa/usr/lib/python3/dist-packages/flash_attn/__init__.py").exists()


# ---- layer keys ----

def test_layer_keys_follow_content_not_names(tmp_path):
    w1 = make_wheel(tmp_path / "a", "demo", "1.0")
    w2 = make_wheel(tmp_path / "b", "demo", "1.0", files={"demo/__init__.py": b"X = 2\n"})
    repo = make_git_repo(tmp_path / "repo", {"feat/x": {"x.txt": "x\n"}})

    def keys(name, wheel, branch, tag):
        r = write_recipe(tmp_path / f"{tag}.json", {"base": "ubuntu", "layers": [
            {"name": name, "kind": "wheels", "wheels": [{"path": str(wheel), "sha256": sha256(wheel)}]},
            {"name": "src", "kind": "source", "from": "git", "repository": str(repo),
             "ref": branch, "path": "/app"}]})
        _, res = stage(r, tmp_path, name=tag)
        return [s["layer_key"] for s in res["staged"]]

    a = keys("w", w1, "main", "a")
    assert all(k.startswith("sha256:") for k in a)
    assert keys("w", w1, "main", "b") == a              # the same again
    assert keys("renamed", w1, "main", "c") == a        # names do not count
    d = keys("w", w2, "main", "d")                      # other wheel content
    assert d[0] != a[0] and d[1] == a[1]
    e = keys("w", w1, "feat/x", "e")                    # other commit
    assert e[0] == a[0] and e[1] != a[1]


def test_keys_need_digests_not_downloads(tmp_path):
    """--dry-run --keys reads the index page and takes the digest from it:
    a cache hit must not download a 2 GB torch wheel."""
    w = make_wheel(tmp_path / "w", "torch", "2.7.1+cu126")
    idx = make_simple_index(tmp_path / "mirror" / "simple", [w])
    d = make_deb(tmp_path / "debs", "x", {"usr/share/x": b"x"})
    mirror = make_apt_repo(tmp_path / "apt", [d])
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu", "layers": [
        {"name": "t", "kind": "wheels", "index": str(idx), "packages": ["torch==2.7.1+cu126"]},
        {"name": "d", "kind": "debs", "apt": [{"mirror": str(mirror),
                                               "index": "dists/jammy/main/binary-amd64/Packages.gz",
                                               "packages": ["x"]}]}]})
    before = json.loads(kiln("build", r, "--dry-run", "--json", "--keys", "--cache-dir",
                             tmp_path / "c").stdout)
    keys = [l["layer_key"] for l in before["layers"]]
    # the files go away: the keys are still known, staging is not possible
    for f in list((tmp_path / "mirror" / "files").iterdir()) + list((mirror / "pool").rglob("*.deb")):
        f.unlink()
    again = json.loads(kiln("build", r, "--dry-run", "--json", "--keys", "--cache-dir",
                            tmp_path / "c").stdout)
    assert [l["layer_key"] for l in again["layers"]] == keys
    kiln_fails("build", r, "--stage", tmp_path / "s", "--cache-dir", tmp_path / "c", code=5)
    text = kiln("build", r, "--dry-run", "--keys", "--cache-dir", tmp_path / "c").stdout
    assert f"layer keys:\n  t {keys[0]}\n  d {keys[1]}\n" in text


# ---- the whole linnaeus recipe on stand-ins ----

@pytest.mark.parametrize("arch,versions,fa,variant", [
    ("ampere", ("2.7.1+cu126", "0.22.1+cu126", "2.7.1+cu126"), "2.7.4.post1", "stable-cu126"),
    ("pre-ampere", ("2.7.1+cu126", "0.22.1+cu126", "2.7.1+cu126"), None, "stable-cu126"),
    ("hopper", ("2.8.0.dev20250601+cu128", "0.23.0.dev20250601+cu128", "2.8.0.dev20250601+cu128"),
     "3.0.0b3", "nightly-cu128"),
])
def test_linnaeus_stages_on_stand_ins(tmp_path, arch, versions, fa, variant):
    torch, tv, ta = versions
    sets = make_inputs(tmp_path, arch)
    args = ["--arch", arch, "--branch", "feat/new-model"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    out, res = stage(LINNAEUS, tmp_path, *args)
    names = [pathlib.Path(s["dir"]).name for s in res["staged"]]
    want = ["system", "python-links", "torch", "build-tools"]
    want += ["flash-attn", "python-deps", "linnaeus"] if fa else ["python-deps", "linnaeus"]
    assert names == ["%02d-%s" % (i + 1, n) for i, n in enumerate(want)]
    layer = {n: out / ("%02d-%s" % (i + 1, n)) for i, n in enumerate(want)}
    dist = "usr/local/lib/python3.11/dist-packages"
    for p in UPSTREAM_APT:
        assert (layer["system"] / f"usr/share/doc/{p}/stand-in").exists(), p
    assert os.readlink(layer["python-links"] / "usr/bin/python3") == "python3.11"
    assert os.readlink(layer["python-links"] / "usr/bin/python") == "python3"
    # torch, and the torchvision and torchaudio that go with it (not the
    # older torchvision the index also has), with torch's dependencies
    got = lambda d, n: (layer[d] / f"{dist}/{n}/__init__.py").read_text()
    assert got("torch", "torch") == f"__version__ = '{torch}'\n"
    assert got("torch", "torchvision") == f"__version__ = '{tv}'\n"
    assert got("torch", "torchaudio") == f"__version__ = '{ta}'\n"
    assert got("torch", "nvidia_cudnn_cu12") == "__version__ = '9.5.1.17'\n"
    assert (layer["build-tools"] / "usr/local/bin/uv").exists()
    assert (layer["build-tools"] / f"{dist}/ninja/__init__.py").exists()
    if fa:
        # the sdist the requirement resolves to, built with the profile's env
        assert got("flash-attn", "flash_attn") == f"__version__ = '{fa}'\n"
        assert (tmp_path / "fa-env").read_text() == \
            {"ampere": "8.0;8.6 12\n", "hopper": "9.0 12\n"}[arch]
    else:
        assert not (tmp_path / "fa-env").exists()
    deps = layer["python-deps"]
    # pip install -e .[dev]: the project's closure, less what is below
    assert (deps / f"{dist}/pandas/__init__.py").read_text() == "__version__ = '2.2.3'\n"
    assert (deps / f"{dist}/pytest/__init__.py").exists()
    assert not (deps / f"{dist}/torch").exists() and not (deps / f"{dist}/uv").exists()
    assert (deps / f"{dist}/__editable__.linnaeus-0.1.0.pth").read_text().strip() == "/app/linnaeus"
    assert (deps / "usr/local/bin/linnaeus").exists()
    src = layer["linnaeus"] / "app/linnaeus"
    assert (src / "linnaeus/model.py").read_text() == "M = 1\n"
    commit = rev(sets["linnaeus_git"], "feat/new-model")
    assert res["tags"][0] == f"frontierkodiak/linnaeus-dev:{arch}-{variant}-feat-new-model"
    assert res["tags"][1] == f"frontierkodiak/linnaeus-dev:{arch}-{variant}-git-{commit[:7]}"
    assert res["annotations"]["org.opencontainers.image.revision"] == commit
    # everything a stage can know is known; only the base's PATH (under
    # /root/.local/bin, as upstream's ENV) waits for the base image
    assert res["unresolved"] == ["env 'PATH': known once the base image is pulled"]


def test_linnaeus_real_addresses_through_mirrors(tmp_path):
    """The recipe's own defaults (download.pytorch.org, pypi.org,
    archive.ubuntu.com), read from local copies of those sites with
    --mirror: what an air-gapped build does."""
    torch_site, pypi_site, ubuntu = make_sites(tmp_path, "ampere")
    repo = make_git_repo(tmp_path / "linnaeus", main_files={"pyproject.toml": PYPROJECT})
    out, res = stage(LINNAEUS, tmp_path, "--arch", "ampere",
                     "--mirror", f"https://download.pytorch.org/whl={torch_site}",
                     "--mirror", f"https://pypi.org={pypi_site}",
                     "--mirror", f"http://archive.ubuntu.com/ubuntu={ubuntu}",
                     # signed by the tests' key: --stage reads no base to take keyrings from
                     "--set", f"ubuntu_keyring={gpg_key().keyring}",
                     "--set", "flash_attn_build_in=host",
                     "--set", f"build_python={fake_build_python(tmp_path, 'ampere')}",
                     "--set", f"linnaeus_git={repo}")
    dist = out / "03-torch/usr/local/lib/python3.11/dist-packages"
    assert (dist / "nvidia_cudnn_cu12/__init__.py").read_text() == "__version__ = '9.5.1.17'\n"
    assert (out / "06-python-deps/usr/local/lib/python3.11/dist-packages/pandas/__init__.py").exists()
    assert res["tags"][0] == "frontierkodiak/linnaeus-dev:ampere-stable-cu126"
    # fetched once into the cache; a second stage reads wheels from there
    fetched = list((tmp_path / "cache" / "fetch").iterdir())
    assert any(p.joinpath("torch-2.7.1+cu126-cp311-cp311-manylinux_2_28_x86_64.whl").exists()
               for p in fetched)
    assert any(p.joinpath("flash_attn-2.7.4.post1.tar.gz").exists() for p in fetched)


@pytest.mark.parametrize("rest", ["../outside/simple/", "simple/../../outside/simple/",
                                  "simple/.."])
def test_mirror_path_never_leaves_the_mirror(tmp_path, rest):
    """A URL under a --mirror prefix maps into DIR only: a '..' anywhere in
    the rest is refused (a leading or trailing one too, which a check for
    '/../' lets through)."""
    w = make_wheel(tmp_path / "w", "x", "1")
    make_simple_index(tmp_path / "outside" / "simple", [w])
    site = tmp_path / "site"
    site.mkdir()
    r = wheel_recipe(tmp_path, {"name": "t", "kind": "wheels", "index": f"https://pypi.org/{rest}",
                                "packages": ["x==1"]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", "--cache-dir", tmp_path / "c",
                      "--mirror", f"https://pypi.org/={site}", code=3)
    assert "refusing to map 'https://pypi.org/" in line and "'..' is not allowed" in line, line
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("*.py"))


def test_unmapped_url_says_so(tmp_path):
    r = wheel_recipe(tmp_path, {"name": "t", "kind": "wheels", "index": "https://example.invalid/simple",
                                "packages": ["x==1"]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", "--cache-dir", tmp_path / "c",
                      "--mirror", f"https://pypi.org={tmp_path}", code=9)
    assert "no --mirror maps it" in line


# ---- build steps from an sdist; a project from a source layer; links ----

def sdist_world(tmp_path, versions=("1.0", "1.5", "2.0rc1"), hashes=True):
    from linnaeus_standins import _sdist
    files = [_sdist(tmp_path / "sd", "flash_attn", v, {"PKG-INFO": f"Version: {v}\n".encode()})
             for v in versions]
    return make_simple_index(tmp_path / "idx" / "simple", files, hashes=hashes), files


def sdist_recipe(tmp_path, idx, requirement, **extra):
    cmd = 'cp "$KILN_SDIST" "$KILN_OUT/" && echo "$KILN_SDIST" > "$KILN_OUT/where"'
    return write_recipe(tmp_path / "r.json", {"base": "scratch", "layers": [
        {"name": "fa", "kind": "build", "command": ["sh", "-c", cmd], "install": "tree",
         "path": "/out", "sdist": {"index": str(idx), "requirement": requirement, **extra}}]})


@pytest.mark.parametrize("requirement,extra,want", [
    ("flash-attn>=1,<3", {}, "1.5"),            # the newest final release
    ("flash-attn>=1,<3", {"pre": True}, "2.0rc1"),
    ("flash-attn==2.0rc1", {}, "2.0rc1"),       # a requirement naming a pre-release
    ("flash_attn<1.2", {}, "1.0"),
])
def test_build_step_takes_the_sdist_its_requirement_resolves_to(tmp_path, requirement, extra, want):
    idx, _ = sdist_world(tmp_path)
    out, res = stage(sdist_recipe(tmp_path, idx, requirement, **extra), tmp_path)
    staged = pathlib.Path(res["staged"][0]["dir"]) / "out"
    assert [p.name for p in staged.glob("*.tar.gz")] == [f"flash_attn-{want}.tar.gz"]
    # the sdist is in the key: another release that the requirement allows builds again
    keys = lambda: json.loads(kiln("build", tmp_path / "r.json", "--dry-run", "--json", "--keys",
                                   "--cache-dir", tmp_path / "cache").stdout)["layers"][0]["layer_key"]
    before = keys()
    # kiln lock names the sdist: version, where it came from, its sha256
    kiln("lock", tmp_path / "r.json", "--cache", tmp_path / "cache")
    lock = json.loads((tmp_path / "r.lock.json").read_text())["layers"]["fa"]
    (pkg,) = lock["packages"]
    assert (pkg["name"], pkg["version"]) == ("flash-attn", want)
    assert pkg["sha256"] == sha256(next(staged.glob("*.tar.gz")))
    assert pkg["url"].endswith(f"/flash_attn-{want}.tar.gz") and lock["key"] == before
    sdist_world(tmp_path, versions=("1.0", "1.5", "1.9", "2.0rc1"))
    assert (keys() != before) == (want == "1.5")


def test_sdist_errors_name_what_is_wrong(tmp_path):
    idx, files = sdist_world(tmp_path)
    line = kiln_fails("build", sdist_recipe(tmp_path, idx, "flash-attn>=3"), "--stage",
                      tmp_path / "s1", "--cache-dir", tmp_path / "c")
    assert "flash-attn>=3" in line and "no source distribution" in line
    line = kiln_fails("build", sdist_recipe(tmp_path, idx, "nothing-here"), "--stage",
                      tmp_path / "s2", "--cache-dir", tmp_path / "c")
    assert "no project page for 'nothing-here'" in line
    # the file does not match the sha256 the index lists: nothing staged
    served = idx.parent / "files" / files[1].name
    served.write_bytes(served.read_bytes() + b"x")
    line = kiln_fails("build", sdist_recipe(tmp_path, idx, "flash-attn>=1,<2"), "--stage",
                      tmp_path / "s3", "--cache-dir", tmp_path / "c")
    assert "sha256 mismatch" in line and "flash_attn-1.5.tar.gz" in line
    assert not (tmp_path / "s3").exists() or not any((tmp_path / "s3").rglob("*.tar.gz"))
    idx2, _ = sdist_world(tmp_path / "nohash", hashes=False)
    line = kiln_fails("build", sdist_recipe(tmp_path, idx2, "flash-attn"), "--stage",
                      tmp_path / "s4", "--cache-dir", tmp_path / "c")
    assert "no sha256" in line
    bad = write_recipe(tmp_path / "bad.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "fa", "kind": "build", "command": ["true"], "sdist": {"index": str(idx)}}]})
    assert "requirement" in kiln_fails("build", bad, "--dry-run")


def test_project_from_a_source_layer(tmp_path):
    """pip install -e . of a source that comes from git: the pyproject.toml
    of the commit the source layer builds, installed at its path."""
    idx = make_simple_index(tmp_path / "idx" / "simple", [
        make_wheel(tmp_path / "w", "dep", "1.0", py="py3", abi="none", plat="any"),
        make_wheel(tmp_path / "w", "dep", "2.0", py="py3", abi="none", plat="any")])
    pyproject = '[project]\nname = "app"\nversion = "0.3"\ndependencies = ["dep<2"]\n'
    repo = make_git_repo(tmp_path / "repo", {"next": {"pyproject.toml": pyproject.replace(
        "dep<2", "dep>=2")}}, main_files={"pyproject.toml": pyproject})

    def doc(ref):
        return {"base": "ubuntu:22.04", "layers": [
            {"name": "deps", "kind": "wheels", "index": str(idx), "project_from": "src"},
            {"name": "src", "kind": "source", "from": "git", "repository": str(repo),
             "ref": ref, "path": "/srv/app"}]}
    out, _ = stage(write_recipe(tmp_path / "r.json", doc("main")), tmp_path)
    site = out / "01-deps" / SITE
    assert (site / "dep/__init__.py").read_text() == "__version__ = '1.0'\n"
    assert (site / "__editable__.app-0.3.pth").read_text().strip() == "/srv/app"
    out, _ = stage(write_recipe(tmp_path / "r.json", doc("next")), tmp_path, name="next")
    assert (out / "01-deps" / SITE / "dep/__init__.py").read_text() == "__version__ = '2.0'\n"
    # a name that is no source layer
    bad = doc("main")
    bad["layers"][0]["project_from"] = "deps"
    line = kiln_fails("build", write_recipe(tmp_path / "b.json", bad), "--stage", tmp_path / "b",
                      "--cache-dir", tmp_path / "cache")
    assert "'project_from' names 'deps', which is not a source layer" in line


def test_files_layer_links_and_variable_booleans(tmp_path):
    r = write_recipe(tmp_path / "r.json", {
        "base": "ubuntu:22.04", "variables": {"keep": {"default": "no"}},
        "layers": [{"name": "links", "kind": "files", "keep_modes": "${keep}",
                    "files": [{"dest": "/usr/bin/python", "link": "python3"}]}]})
    out, _ = stage(r, tmp_path)
    assert os.readlink(out / "01-links/usr/bin/python") == "python3"
    line = kiln_fails("build", r, "--dry-run", "--set", "keep=maybe")
    assert "'keep_modes' of layer 'links' is 'maybe': expected true or false" in line
    bad = write_recipe(tmp_path / "b.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "x", "kind": "files", "files": [{"dest": "/a", "link": "b", "mode": "0755"}]}]})
    assert "mode" in kiln_fails("build", bad, "--dry-run")


def test_upstreams_hopper_pins_say_which_conflict(tmp_path):
    """torchvision 0.20.0 requires torch 2.5.0: with torch 2.8 pinned, the
    resolver names both requirements."""
    sets = make_inputs(tmp_path, "hopper")
    tw = pathlib.Path(sets["torch_index"][len("file://"):])
    extra = make_wheel(tmp_path / "x", "torchvision", "0.20.0+cu128", requires=["torch==2.5.0"])
    make_simple_index(tw, [*tw.parent.joinpath("files").glob("*.whl"), extra])
    args = ["build", LINNAEUS, "--stage", tmp_path / "s", "--cache-dir", tmp_path / "c",
            "--arch", "hopper", "--set", "torchvision_spec===0.20.0+cu128"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    line = kiln_fails(*args)
    assert "torch" in line and "2.5.0" in line and "torchvision" in line, line
