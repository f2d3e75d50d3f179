"""wheels layers resolve their requirements as pip does: the chosen set is
compared with `pip install --dry-run --report` on the same generated index
(pip is the reference; Debian's python3-pip)."""
import json
import shutil
import subprocess

import pytest

from linnaeus_standins import PYPROJECT, make_linnaeus_pypi
from recipes_helpers import (kiln, kiln_fails, make_git_repo, make_simple_index, make_wheel,
                             sha256, write_recipe)

SITE = "usr/local/lib/python3.11/site-packages"
PIP = "/usr/bin/python3"


def pure(out, name, version, **kw):
    return make_wheel(out, name, version, py="py3", abi="none", plat="any", **kw)


def shapes(tmp_path):
    """An index whose metadata has the shapes that trip resolvers."""
    w = tmp_path / "w"
    wheels = [
        # markers false on the target (cp311, Linux, x86_64)
        pure(w, "app", "1.0", requires=[
            "old-backport; python_version < '3.8'", "winonly; sys_platform == 'win32'",
            "modern>=1; python_version >= '3.8'", "x86tool; platform_machine == 'x86_64'",
            "Foo_Bar.Baz>=1.0"]),
        pure(w, "old-backport", "1.0"), pure(w, "winonly", "1.0"),
        pure(w, "modern", "1.0"), pure(w, "modern", "1.1"), pure(w, "x86tool", "0.1"),
        pure(w, "foo-bar-baz", "1.0"), pure(w, "foo-bar-baz", "1.2"),
        # extras, also requested after the project was chosen
        pure(w, "feat", "2.0", provides_extras=["cli", "gui"], requires=[
            "clickish>=7; extra == 'cli'", "guikit; extra == 'gui'", "corelib"]),
        pure(w, "clickish", "7.0"), pure(w, "clickish", "8.1"), pure(w, "guikit", "1.0"),
        pure(w, "corelib", "1.0"), pure(w, "plugin", "1.0", requires=["feat[gui]>=1"]),
        # the newest version cannot be satisfied: backtracking
        pure(w, "top", "1.0", requires=["shared"]), pure(w, "top", "2.0", requires=["shared>=2"]),
        pure(w, "side", "1.0", requires=["shared<2"]),
        pure(w, "shared", "1.0"), pure(w, "shared", "1.5"), pure(w, "shared", "2.0"),
        # Requires-Python in the metadata and on the page; pre-releases
        pure(w, "pyreq", "1.0"), pure(w, "pyreq", "2.0", requires_python=">=3.12"),
        pure(w, "pagereq", "1.0"), pure(w, "pagereq", "2.0"),
        pure(w, "beta", "1.0"), pure(w, "beta", "2.0b1"), pure(w, "onlypre", "0.9rc1"),
        # conflicting ranges
        pure(w, "left", "1.0", requires=["middle>=2"]), pure(w, "right", "1.0", requires=["middle<2"]),
        pure(w, "middle", "1.0"), pure(w, "middle", "2.0"),
    ]
    return make_simple_index(tmp_path / "idx" / "simple", wheels,
                             requires_python={"pagereq-2.0-py3-none-any.whl": ">=3.13"})


def pip_set(idx, reqs, tmp_path):
    report = tmp_path / "report.json"
    p = subprocess.run([PIP, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                        "--report", report, "--index-url", f"file://{idx}", "--only-binary",
                        ":all:", "--python-version", "3.11", "--platform",
                        "manylinux_2_35_x86_64", "--target", tmp_path / "pip-target",
                        "--no-cache-dir", "--disable-pip-version-check", "--quiet", *reqs],
                       capture_output=True, text=True)
    if p.returncode:
        return None
    return sorted((i["metadata"]["name"].lower().replace("_", "-").replace(".", "-"),
                   i["metadata"]["version"]) for i in json.loads(report.read_text())["install"])


def staged_set(out):
    site = out / SITE
    return sorted((d.name[:-len(".dist-info")].rsplit("-", 1)[0].lower().replace("_", "-"),
                   d.name[:-len(".dist-info")].rsplit("-", 1)[1])
                  for d in site.iterdir() if d.name.endswith(".dist-info"))


def kiln_stage(tmp_path, layer, name="stage"):
    r = write_recipe(tmp_path / f"{name}.json", {"base": "ubuntu:22.04", "layers": [layer]})
    out = tmp_path / name
    kiln("build", r, "--stage", out, "--cache-dir", tmp_path / "cache", "--json")
    return out / "01-py"


CASES = {
    "markers": ["app"],
    "extras": ["feat[cli]", "plugin"],
    "backtracking": ["top", "side"],
    "requires-python": ["pyreq", "pagereq"],
    "pre-releases": ["beta", "onlypre", "beta>=1"],
    "ranges-and-markers": ["modern<1.1,>=1; python_version >= '3'", "clickish~=7.0",
                           "x86tool==0.1.*"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resolution_equals_pips(tmp_path, case):
    idx = shapes(tmp_path)
    want = pip_set(idx, CASES[case], tmp_path)
    assert want, "pip found no resolution"
    got = staged_set(kiln_stage(tmp_path, {"name": "py", "kind": "wheels", "index": str(idx),
                                           "packages": CASES[case]}))
    assert got == want


def test_conflicting_ranges_fail_naming_the_conflict(tmp_path):
    idx = shapes(tmp_path)
    assert pip_set(idx, ["left", "right"], tmp_path) is None  # pip refuses too
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "py", "kind": "wheels", "index": str(idx), "packages": ["left", "right"]}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=3)
    assert ("cannot resolve the requirements: conflicting requirements on 'middle': "
            "'middle>=2' (from left 1.0), 'middle<2' (from right 1.0)") in line
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("*.dist-info"))


def test_requirements_file_takes_pep508_lines(tmp_path):
    idx = shapes(tmp_path)
    req = tmp_path / "req.txt"
    req.write_text("top  # backtracks to 1.0\nside\nmodern>=1 ; python_version >= '3.8'\n")
    want = pip_set(idx, ["-r", str(req)], tmp_path)
    got = staged_set(kiln_stage(tmp_path, {"name": "py", "kind": "wheels", "index": str(idx),
                                           "requirements": str(req)}))
    assert got == want == [("modern", "1.1"), ("shared", "1.5"), ("side", "1.0"), ("top", "1.0")]


def test_resolve_false_keeps_the_exact_list(tmp_path):
    idx = shapes(tmp_path)
    got = staged_set(kiln_stage(tmp_path, {"name": "py", "kind": "wheels", "index": str(idx),
                                           "packages": ["top==2.0"], "resolve": False}))
    assert got == [("top", "2.0")]
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "py", "kind": "wheels", "index": str(idx), "packages": ["top>=1"],
         "resolve": False}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s")
    assert "requirement for 'top' is not a pin" in line


def test_metadata_files_are_read_instead_of_wheels(tmp_path):
    """PEP 658/714: with data-core-metadata the resolver reads FILE.metadata;
    a wheel it does not install is never opened (here: not even valid)."""
    w = tmp_path / "w"
    wheels = [pure(w, "top", "1.0", requires=["shared"]), pure(w, "top", "2.0", requires=["shared>=2"]),
              pure(w, "side", "1.0", requires=["shared<2"]), pure(w, "shared", "1.5"),
              pure(w, "shared", "2.0")]
    idx = make_simple_index(tmp_path / "idx" / "simple", wheels, metadata=True, hashes=False)
    for name in ["top-2.0-py3-none-any.whl", "shared-2.0-py3-none-any.whl"]:
        (idx.parent / "files" / name).write_bytes(b"not a zip")
    req = tmp_path / "req.txt"
    keep = {"top": "1.0", "side": "1.0", "shared": "1.5"}
    req.write_text("".join(f"{n} --hash=sha256:{sha256(idx.parent / 'files' / f'{n}-{v}-py3-none-any.whl')}\n"
                           for n, v in keep.items()))
    got = staged_set(kiln_stage(tmp_path, {"name": "py", "kind": "wheels", "index": str(idx),
                                           "requirements": str(req)}))
    assert got == sorted(keep.items())


def test_a_metadata_file_must_match_its_hash(tmp_path):
    idx = make_simple_index(tmp_path / "idx" / "simple", [pure(tmp_path / "w", "one", "1.0")],
                            metadata=True)
    (idx.parent / "files" / "one-1.0-py3-none-any.whl.metadata").write_text(
        "Metadata-Version: 2.1\nName: one\nVersion: 1.0\nRequires-Dist: evil\n")
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "py", "kind": "wheels", "index": str(idx), "packages": ["one"]}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=4)
    assert "one-1.0-py3-none-any.whl.metadata" in line


def test_first_index_with_the_project_wins(tmp_path):
    """uv's default against dependency confusion: 'internal' on the first
    index is never looked up on the second, even where that has a newer one."""
    first = make_simple_index(tmp_path / "a" / "simple", [
        pure(tmp_path / "wa", "internal", "1.0", requires=["common"])])
    second = make_simple_index(tmp_path / "b" / "simple", [
        pure(tmp_path / "wb", "internal", "99.0"), pure(tmp_path / "wb", "common", "3.0")])
    got = staged_set(kiln_stage(tmp_path, {"name": "py", "kind": "wheels",
                                           "indexes": [str(first), str(second)],
                                           "packages": ["internal"]}))
    assert got == [("common", "3.0"), ("internal", "1.0")]
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "py", "kind": "wheels", "indexes": [str(first), str(second)],
         "packages": ["nowhere>=1"]}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=5)
    assert (f"no project page in '{first}', '{second}' for 'nowhere': 'nowhere>=1' "
            "(from the recipe)") in line


def test_layers_below_are_not_installed_again(tmp_path):
    idx = shapes(tmp_path)
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "low", "kind": "wheels", "index": str(idx), "packages": ["corelib"]},
        {"name": "py", "kind": "wheels", "index": str(idx), "packages": ["feat"]}]})
    out = tmp_path / "stage"
    kiln("build", r, "--stage", out, "--cache-dir", tmp_path / "cache", "--json")
    assert staged_set(out / "01-low") == [("corelib", "1.0")]
    assert staged_set(out / "02-py") == [("feat", "2.0")]


# ---- the project itself: pip install -e DIR[extras] ----

def pip_editable_set(idx, project, extras, tmp_path):
    """pip's choice for -e PROJECT[extras] (the host is the target here:
    CPython 3.11 on x86_64 Linux; the build backend runs without isolation)."""
    copy = tmp_path / "pip-project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".git"))
    report = tmp_path / "report-e.json"
    spec = f"{copy}[{','.join(extras)}]" if extras else str(copy)
    subprocess.run([PIP, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                    "--no-build-isolation", "--report", report, "--index-url", f"file://{idx}",
                    "--only-binary", ":all:", "--no-cache-dir", "--disable-pip-version-check",
                    "--quiet", "-e", spec], check=True, capture_output=True, text=True)
    return sorted((i["metadata"]["name"].lower().replace("_", "-").replace(".", "-"),
                   i["metadata"]["version"]) for i in json.loads(report.read_text())["install"])


DEMO = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "Demo_App"
version = "0.3.0"
requires-python = ">=3.9"
dependencies = ["top", 'side ; python_version >= "3.8"', "modern>=1,<1.1"]

[project.optional-dependencies]
dev = ["feat[cli]", "winonly; sys_platform == 'win32'"]
gui = ["guikit"]

[project.scripts]
demo = "demo_app.cli:main"
"""


def test_project_installs_like_pip_install_editable(tmp_path):
    idx = shapes(tmp_path)
    proj = tmp_path / "src" / "demo"
    (proj / "demo_app").mkdir(parents=True)
    (proj / "demo_app" / "__init__.py").write_text("")
    (proj / "pyproject.toml").write_text(DEMO)
    want = pip_editable_set(idx, proj, ["dev"], tmp_path)
    out = kiln_stage(tmp_path, {"name": "py", "kind": "wheels", "index": str(idx),
                                "project": "src/demo", "extras": ["dev"],
                                "project_path": "/app/demo"})
    assert staged_set(out) == want
    assert ("demo-app", "0.3.0") in want and ("clickish", "8.1") in want
    site = out / SITE
    assert (site / "__editable__.demo_app-0.3.0.pth").read_text() == "/app/demo\n"
    info = site / "demo_app-0.3.0.dist-info"
    assert json.loads((info / "direct_url.json").read_text()) == {
        "url": "file:///app/demo", "dir_info": {"editable": True}}
    meta = (info / "METADATA").read_text()
    assert "Requires-Dist: feat[cli]; extra == \"dev\"\n" in meta
    assert "Provides-Extra: gui\n" in meta
    assert (info / "INSTALLER").exists()
    record = (info / "RECORD").read_text()
    assert "direct_url.json" in record and "__editable__.demo_app-0.3.0.pth" in record
    script = (out / "usr/local/bin/demo").read_text()
    assert script.startswith("#!") and "from demo_app.cli import main" in script


def test_project_errors_name_the_input(tmp_path):
    idx = shapes(tmp_path)
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(DEMO)
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "py", "kind": "wheels", "index": str(idx), "project": "p",
         "extras": ["nope"], "project_path": "/app/p"}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s")
    assert "project 'Demo_App' in 'p' has no extra 'nope'" in line
    (proj / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = [\n")
    line = kiln_fails("build", r, "--stage", tmp_path / "s2")
    assert "pyproject.toml:4:" in line
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "py", "kind": "wheels", "index": str(idx), "project": "p"}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s3")
    assert "needs a 'project_path'" in line


def test_linnaeus_pyproject_resolves_like_pip(tmp_path):
    """linnaeus's real pyproject.toml shape, with its dev extra, against a
    stand-in index of its closure (about 60 wheels)."""
    idx = make_linnaeus_pypi(tmp_path)
    repo = make_git_repo(tmp_path / "linnaeus", main_files={"pyproject.toml": PYPROJECT})
    want = pip_editable_set(idx, repo, ["dev"], tmp_path)
    out = kiln_stage(tmp_path, {"name": "py", "kind": "wheels", "index": str(idx),
                                "project": str(repo), "extras": ["dev"],
                                "project_path": "/app/linnaeus"})
    got = staged_set(out)
    assert got == want
    assert ("pandas", "2.2.3") in got and ("numpy", "2.1.3") in got and ("pytest", "8.3.3") in got
    assert not any(n in ("tomli", "colorama", "exceptiongroup") for n, _ in got)


# ---- lock files: kiln lock, --pylock, --locked, pylock.toml layers ----

def lock_recipe(tmp_path, idx, packages):
    return write_recipe(tmp_path / "r.json", {
        "recipe": 1, "name": "app", "base": "scratch",
        "tag": {"repository": "example.invalid/app", "tag": "v1"},
        "layers": [{"name": "py", "kind": "wheels", "index": str(idx), "packages": packages}]})


def test_lock_pins_every_resolved_wheel_and_writes_pep751(tmp_path):
    import tomllib
    idx = shapes(tmp_path)
    r = lock_recipe(tmp_path, idx, ["top", "side"])
    out = kiln("lock", r, "--cache", tmp_path / "c", "--pylock", tmp_path / "pylock.toml").stdout
    assert str(tmp_path / "pylock.toml") in out
    lock = json.loads((tmp_path / "r.lock.json").read_text())
    files = idx.parent / "files"
    pkgs = {p["name"]: p for p in lock["layers"]["py"]["packages"]}
    assert sorted((n, p["version"]) for n, p in pkgs.items()) == [
        ("shared", "1.5"), ("side", "1.0"), ("top", "1.0")]
    for n, p in pkgs.items():
        assert p["sha256"] == sha256(files / f"{n}-{p['version']}-py3-none-any.whl")
        assert p["url"].endswith(f"/files/{n}-{p['version']}-py3-none-any.whl")
    assert pkgs["top"]["dependencies"] == ["shared"]
    py = tomllib.loads((tmp_path / "pylock.toml").read_text())
    assert py["lock-version"] == "1.0" and py["created-by"] == "kiln"
    assert sorted((p["name"], p["version"], p["wheels"][0]["hashes"]["sha256"])
                  for p in py["packages"]) == sorted(
        (n, p["version"], p["sha256"]) for n, p in pkgs.items())
    assert {"name": "shared"} in next(p for p in py["packages"] if p["name"] == "side")["dependencies"]


def test_locked_refuses_a_package_the_lock_does_not_pin(tmp_path):
    idx = shapes(tmp_path)
    r = lock_recipe(tmp_path, idx, ["top", "side"])
    kiln("lock", r, "--cache", tmp_path / "c")
    kiln("build", r, "--output", f"oci:{tmp_path}/o1", "--cache", tmp_path / "c", "--locked")
    # a new release within side's range: the resolution moves
    newer = pure(tmp_path / "w2", "shared", "1.7")
    make_simple_index(tmp_path / "idx2" / "simple", list((idx.parent / "files").glob("*.whl")) + [newer])
    r = lock_recipe(tmp_path, tmp_path / "idx2" / "simple", ["top", "side"])
    line = kiln_fails("build", r, "--output", f"oci:{tmp_path}/o2", "--cache", tmp_path / "c",
                      "--locked")
    assert "layer 'py' resolves to 'shared' 1.7" in line and "the lock does not pin" in line
    assert not (tmp_path / "o2" / "index.json").exists()
    p = kiln("build", lock_recipe(tmp_path, tmp_path / "idx2" / "simple", ["top", "side"]),
             "--pylock", tmp_path / "x.toml", check=False)
    assert p.returncode == 2 and "--pylock is an option of kiln lock" in p.stderr


def test_pylock_layer_installs_exactly_the_lock(tmp_path):
    idx = shapes(tmp_path)
    r = lock_recipe(tmp_path, idx, ["feat[cli]", "plugin"])
    kiln("lock", r, "--cache", tmp_path / "c", "--pylock", tmp_path / "pylock.toml")
    want = pip_set(idx, ["feat[cli]", "plugin"], tmp_path)
    got = staged_set(kiln_stage(tmp_path, {"name": "py", "kind": "wheels",
                                           "pylock": str(tmp_path / "pylock.toml")}))
    assert got == want


def test_pylock_by_hand_markers_paths_and_hashes(tmp_path):
    w = tmp_path / "lockdir" / "wheels"
    one = pure(w, "one", "1.0")
    win = pure(w, "winlib", "2.0")
    text = f"""lock-version = "1.0"
created-by = "hand"
requires-python = ">=3.9"

[[packages]]
name = "One"
version = "1.0"
wheels = [{{ name = "{one.name}", path = "wheels/{one.name}", hashes = {{ sha256 = "{sha256(one)}" }} }}]

[[packages]]
name = "winlib"
version = "2.0"
marker = "sys_platform == 'win32'"
wheels = [{{ path = "wheels/{win.name}", hashes = {{ sha256 = "{'0' * 64}" }} }}]
"""
    lock = tmp_path / "lockdir" / "pylock.toml"
    lock.write_text(text)
    got = staged_set(kiln_stage(tmp_path, {"name": "py", "kind": "wheels", "pylock": str(lock)}))
    assert got == [("one", "1.0")]
    lock.write_text(text.replace(sha256(one), "1" * 64))
    r = write_recipe(tmp_path / "bad.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "py", "kind": "wheels", "pylock": str(lock)}]})
    line = kiln_fails("build", r, "--stage", tmp_path / "s", code=4)
    assert "is not among the hashes required for 'one'" in line
    lock.write_text(text.replace('lock-version = "1.0"', 'lock-version = "2.0"'))
    line = kiln_fails("build", r, "--stage", tmp_path / "s2")
    assert "lock-version '2.0'" in line


def test_sbom_lists_the_resolved_packages_and_their_dependencies(tmp_path):
    idx = shapes(tmp_path)
    r = lock_recipe(tmp_path, idx, ["top", "side", "feat[cli]"])
    out = tmp_path / "out"
    res = json.loads(kiln("build", r, "--sbom", "--json", "--output", f"oci:{out}:v1", "--cache",
                          tmp_path / "c").stdout)

    def blob(digest):
        return json.loads((out / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())

    doc = blob(blob(res["sbom"])["layers"][0]["digest"])
    names = {p["SPDXID"]: p["name"] + " " + p["versionInfo"] for p in doc["packages"]}
    deps = sorted((names[r["spdxElementId"]], names[r["relatedSpdxElement"]])
                  for r in doc["relationships"] if r["relationshipType"] == "DEPENDS_ON")
    assert deps == [("feat 2.0", "clickish 8.1"), ("feat 2.0", "corelib 1.0"),
                    ("side 1.0", "shared 1.5"), ("top 1.0", "shared 1.5")]
    listed = sorted(v for k, v in names.items() if k != "SPDXRef-image")
    assert listed == ["clickish 8.1", "corelib 1.0", "feat 2.0", "shared 1.5", "side 1.0",
                      "top 1.0"]
