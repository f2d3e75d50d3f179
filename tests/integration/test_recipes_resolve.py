"""wheels layers resolve their requirements as pip does: the chosen set is
compared with `pip install --dry-run --report` on the same generated index
(pip is the reference; Debian's python3-pip)."""
import json
import pathlib
import subprocess

import pytest

from recipes_helpers import kiln, kiln_fails, make_simple_index, make_wheel, sha256, write_recipe

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


def test_layers_below_are_not_installed_again(tmp_path):
    idx = shapes(tmp_path)
    r = write_recipe(tmp_path / "r.json", {"base": "ubuntu:22.04", "layers": [
        {"name": "low", "kind": "wheels", "index": str(idx), "packages": ["corelib"]},
        {"name": "py", "kind": "wheels", "index": str(idx), "packages": ["feat"]}]})
    out = tmp_path / "stage"
    kiln("build", r, "--stage", out, "--cache-dir", tmp_path / "cache", "--json")
    assert staged_set(out / "01-low") == [("corelib", "1.0")]
    assert staged_set(out / "02-py") == [("feat", "2.0")]
