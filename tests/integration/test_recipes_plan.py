"""kiln build RECIPE --dry-run: the plan of the linnaeus recipe, offline."""
import json
import pathlib
import subprocess
import tempfile

import pytest

from recipes_helpers import LINNAEUS, kiln, kiln_fails, write_recipe

REPO = "frontierkodiak/linnaeus-dev"

# Straight from the seed README's examples and rules.
SEED_TAGS = [
    (["--arch", "ampere"], "ampere-stable-cu126"),
    (["--arch", "ampere", "--source", "local"], "ampere-stable-cu126"),
    (["--arch", "pre-ampere"], "pre-ampere-stable-cu126"),
    (["--arch", "pre-ampere", "--source", "local"], "pre-ampere-stable-cu126"),
    (["--arch", "hopper"], "hopper-nightly-cu128"),
    (["--arch", "hopper", "--branch", "feat/my-hopper-feature"],
     "hopper-nightly-cu128-feat-my-hopper-feature"),
    (["--arch", "ampere", "--branch", "develop"], "ampere-stable-cu126-develop"),
    (["--arch", "ampere", "--tag-suffix", "my-feature"], "ampere-stable-cu126-my-feature"),
    (["--arch", "pre-ampere", "--tag-suffix", "task123"], "pre-ampere-stable-cu126-task123"),
    (["--arch", "hopper", "--branch", "feat/xyz", "--tag-suffix", "exp01"],
     "hopper-nightly-cu128-feat-xyz-exp01"),
    (["--arch", "ampere", "--source", "local", "--tag-suffix", "dev-test"],
     "ampere-stable-cu126-dev-test"),
    (["--arch", "ampere", "--source", "local", "--branch", "develop"], "ampere-stable-cu126"),
    (["--arch", "ampere", "--branch", "main"], "ampere-stable-cu126"),
    # upstream's name for pre-ampere
    (["--arch", "turing"], "turing-stable-cu126"),
    (["--arch", "turing", "--tag-suffix", "task123"], "turing-stable-cu126-task123"),
]


@pytest.mark.parametrize("args,tag", SEED_TAGS)
def test_linnaeus_tags_follow_the_seed_convention(args, tag):
    plan = json.loads(kiln("build", LINNAEUS, "--dry-run", "--json", *args).stdout)
    assert plan["tags"][0] == f"{REPO}:{tag}"


def params(plan, name):
    return next(l["params"] for l in plan["layers"] if l["name"] == name)


def test_linnaeus_matrix_layers_and_profiles():
    want = {
        "hopper": ("nightly-cu128", "https://download.pytorch.org/whl/nightly/cu128", "9.0", True),
        "ampere": ("stable-cu126", "https://download.pytorch.org/whl/cu126", "8.0;8.6", True),
        "pre-ampere": ("stable-cu126", "https://download.pytorch.org/whl/cu126", "7.5", False),
        "turing": ("stable-cu126", "https://download.pytorch.org/whl/cu126", "7.5", False),
    }
    for arch, (variant, index, cuda, fa) in want.items():
        plan = json.loads(kiln("build", LINNAEUS, "--dry-run", "--json", "--arch", arch).stdout)
        names = [l["name"] for l in plan["layers"]]
        # the apt packages' maintainer scripts run above them, as apt-get would
        expected = ["system", "system/configure", "python-links", "torch", "build-tools"] + \
                   (["flash-attn"] if fa else []) + ["python-deps", "linnaeus"]
        assert names == expected, arch
        assert plan["layers"][1]["configures"] == "system"
        assert plan["base"] == "nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04"
        assert plan["variables"]["torch_variant"] == variant
        layer = {l["name"]: l["params"] for l in plan["layers"]}
        # upstream's apt-get list, from Ubuntu itself (universe has python3.11)
        apt = layer["system"]["apt"][0]
        assert apt["packages"][:14] == ["build-essential", "git", "python3.11", "python3.11-dev",
                                        "python3.11-venv", "python3-pip", "curl", "unzip",
                                        "libglib2.0-0", "libsm6", "libxext6", "libfontconfig1",
                                        "libxrender1", "libgl1-mesa-glx"]
        assert apt["suite"] == "jammy" and apt["components"] == ["main", "universe"]
        assert {"dest": "/usr/bin/python", "link": "python3"} in layer["python-links"]["files"]
        assert layer["torch"]["index"] == index
        assert layer["torch"]["pre"] is (arch == "hopper")   # upstream's --pre for nightly only
        assert {"ninja", "uv", "packaging", "psutil"} <= set(layer["build-tools"]["packages"])
        if fa:
            build = layer["flash-attn"]
            assert build["in"] == "image"
            assert build["env"]["TORCH_CUDA_ARCH_LIST"] == cuda
            assert build["env"]["MAX_JOBS"] == "12"   # build.sh's default
        deps = layer["python-deps"]
        assert deps["project_from"] == "linnaeus" and deps["extras"] == ["dev"]
        src = plan["layers"][-1]["params"]
        assert src["path"] == "/app/linnaeus"
        assert src["repository"] == "https://github.com/polli-labs/linnaeus.git"
        cfg = plan["config"]
        # upstream's Dockerfile: ENV PYTHONPATH="/app/linnaeus:${PYTHONPATH}" on a base without it
        assert "PYTHONPATH=/app/linnaeus:" in cfg["Env"]
        assert "DEBIAN_FRONTEND=noninteractive" in cfg["Env"] and "TZ=Etc/UTC" in cfg["Env"]
        assert cfg["WorkingDir"] == "/app/linnaeus"
        assert cfg["Cmd"] == ["/bin/bash"]
        # the commit is not known offline: marked, not invented
        assert any(u.startswith("source.revision") for u in plan["unresolved"])
        assert plan["annotations"]["org.opencontainers.image.revision"] == "${source.revision}"


def test_turing_and_pre_ampere_are_one_profile():
    def plan(arch):
        return json.loads(kiln("build", LINNAEUS, "--dry-run", "--json", "--arch", arch).stdout)
    t, p = plan("turing"), plan("pre-ampere")
    assert t["layers"] == p["layers"]
    tv = {k: v for k, v in t["variables"].items() if k != "arch"}
    pv = {k: v for k, v in p["variables"].items() if k != "arch"}
    assert tv == pv
    assert t["tags"][0].endswith(":turing-stable-cu126")
    assert p["tags"][0].endswith(":pre-ampere-stable-cu126")


def test_max_jobs_as_build_sh():
    plan = json.loads(kiln("build", LINNAEUS, "--dry-run", "--json", "--arch", "ampere",
                           "--max-jobs", "6").stdout)
    fa = [l for l in plan["layers"] if l["name"] == "flash-attn"][0]
    assert fa["params"]["env"]["MAX_JOBS"] == "6"


def test_local_source_is_the_git_top_level_as_build_sh(tmp_path):
    # build.sh runs `git rev-parse --show-toplevel`; from tools/docker the
    # checkout is still the whole repository
    repo = tmp_path / "linnaeus"
    (repo / "tools" / "docker").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for where, want in [(repo / "tools" / "docker", repo), (repo, repo)]:
        plan = json.loads(kiln("build", LINNAEUS, "--dry-run", "--json", "--source", "local",
                               cwd=where).stdout)
        assert plan["variables"]["linnaeus_local"] == str(want), where
    # outside any work tree: the directory itself (the test's own directory may
    # sit inside a checkout, so a fresh one from the system's temp directory)
    outside = pathlib.Path(tempfile.mkdtemp())
    try:
        if not any((d / ".git").exists() for d in [outside, *outside.parents]):
            plan = json.loads(kiln("build", LINNAEUS, "--dry-run", "--json", "--source", "local",
                                   cwd=outside).stdout)
            assert plan["variables"]["linnaeus_local"] == str(outside)
    finally:
        outside.rmdir()


def test_a_branch_or_suffix_docker_would_refuse_is_an_error_naming_it():
    line = kiln_fails("build", LINNAEUS, "--dry-run", "--branch", "user@fix", code=3)
    assert "invalid branch 'user@fix' for a tag: '@' is not allowed" in line
    line = kiln_fails("build", LINNAEUS, "--dry-run", "--tag-suffix", "exp 01", code=3)
    assert "invalid tag suffix 'exp 01' for a tag" in line
    # '/' in a branch is build.sh's one rewrite
    plan = json.loads(kiln("build", LINNAEUS, "--dry-run", "--json", "--branch", "a/b").stdout)
    assert plan["tags"][0].endswith(":ampere-stable-cu126-a-b")


def test_versions_per_arch():
    plan = json.loads(kiln("build", LINNAEUS, "--dry-run", "--json", "--arch", "hopper").stdout)
    layer = {l["name"]: l["params"] for l in plan["layers"]}
    assert layer["torch"]["packages"] == ["torch==2.8.0.*", "torchvision", "torchaudio"]
    assert layer["flash-attn"]["sdist"]["requirement"] == "flash-attn==3.0.0b3"
    assert plan["variables"]["flash_attn_version"] == "3"
    plan = json.loads(kiln("build", LINNAEUS, "--dry-run", "--json", "--arch", "ampere").stdout)
    layer = {l["name"]: l["params"] for l in plan["layers"]}
    # upstream: torch pinned, torchvision and torchaudio resolved with it
    assert layer["torch"]["packages"] == ["torch==2.7.1+cu126", "torchvision", "torchaudio"]
    assert layer["flash-attn"]["sdist"]["requirement"] == "flash-attn>=2.5.9.post1,<3.0.0"
    assert plan["variables"]["flash_attn_version"] == "2"


def test_every_address_is_a_variable():
    plan = json.loads(kiln("build", LINNAEUS, "--dry-run", "--json",
                           "--set", "torch_index=file:///mirror/torch",
                           "--set", "linnaeus_git=/srv/git/linnaeus",
                           "--set", "base_image=localhost:5000/cuda-standin:1",
                           "--set", "ubuntu_mirror=file:///mirror/ubuntu",
                           "--set", "pypi_index=file:///mirror/pypi").stdout)
    text = json.dumps(plan)
    for real in ("download.pytorch.org", "github.com/polli-labs", "launchpadcontent",
                 "archive.ubuntu.com", "pypi.org"):
        assert real not in text, real
    assert plan["base"] == "localhost:5000/cuda-standin:1"


def test_text_plan_marks_unresolved():
    out = kiln("build", LINNAEUS, "--dry-run", "--arch", "hopper").stdout
    assert "frontierkodiak/linnaeus-dev:hopper-nightly-cu128\n" in out
    assert "(unresolved)" in out
    assert ("unresolved:\n  env 'PATH': known once the base image is pulled\n"
            "  source.revision: known once the source is fetched") in out
    assert "  2 system/configure: run\n      maintainer scripts of the debs layer below" in out
    assert "  6 flash-attn: build" in out


def test_unknown_variable_is_a_clear_error():
    line = kiln_fails("build", LINNAEUS, "--dry-run", "--set", "gpu=h100", code=3)
    assert line.startswith(f"kiln: error: unknown variable 'gpu': recipe '{LINNAEUS}' declares arch, ")


def test_disallowed_value_is_a_clear_error():
    line = kiln_fails("build", LINNAEUS, "--dry-run", "--arch", "volta", code=3)
    assert line == ("kiln: error: invalid value 'volta' for variable 'arch': "
                    "expected one of hopper, ampere, turing, pre-ampere")
    line = kiln_fails("build", LINNAEUS, "--dry-run", "--source", "svn", code=3)
    assert "expected one of github, local" in line


def test_schema_error_names_file_line_and_column(tmp_path):
    r = tmp_path / "bad.json"
    r.write_text('{\n  "base": "ubuntu",\n  "layers": [\n    {"name": "x", "kind": "debs",\n'
                 '     "debs": [], "sha": 1}\n  ]\n}\n')
    line = kiln_fails("build", r, "--dry-run", code=3)
    assert line == (f"kiln: error: invalid recipe '{r}' at line 5 column 18: "
                    "unknown key 'sha' in layer 'x'")


def test_missing_variable_names_the_recipe_line(tmp_path):
    r = write_recipe(tmp_path / "r.json", {
        "base": "ubuntu",
        "layers": [{"name": "src", "kind": "source", "from": "git",
                    "repository": "${git_url}", "path": "/app"}],
    })
    line = kiln_fails("build", r, "--dry-run", code=3)
    assert line == (f"kiln: error: invalid recipe '{r}' at line 8 column 21: "
                    "undefined variable 'git_url' in '${git_url}'")


def test_building_with_an_unreachable_base_says_which():
    # port 9 (discard) on loopback: nothing listens, no traffic leaves the machine
    line = kiln_fails("build", LINNAEUS, "--set", "base_image=127.0.0.1:9/nothing/cuda:x", code=6)
    assert "127.0.0.1:9/nothing/cuda:x" in line


def test_dry_run_and_stage_exclude_each_other(tmp_path):
    p = kiln("build", LINNAEUS, "--dry-run", "--stage", tmp_path / "s", check=False)
    assert p.returncode == 2 and "--dry-run and --stage exclude each other" in p.stderr
    assert not (tmp_path / "s").exists()


def test_usage_errors():
    p = kiln("build", "--dry-run", check=False)
    assert p.returncode == 2 and "missing RECIPE" in p.stderr
    p = kiln("build", LINNAEUS, "--dry-run", "--bogus", check=False)
    assert p.returncode == 2


def test_missing_recipe_file(tmp_path):
    line = kiln_fails("build", tmp_path / "nope.json", "--dry-run", code=5)
    assert f"read recipe '{tmp_path / 'nope.json'}'" in line
