"""Two builds can compute the same tag (issue #12): --branch exp01 and
--tag-suffix exp01 on main; feat/x and feat-x.  Before a tag moves, kiln
reads the image it holds and warns when its annotations record another
provenance (recipe, source, branch, suffix)."""
import json
import pathlib

import pytest

from conftest import run
from linnaeus_standins import build_args, make_inputs, push_base

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


@pytest.fixture
def world(kiln, registry_factory, tmp_path):
    reg = registry_factory()
    push_base(kiln, reg, tmp_path)
    return reg


def warnings(p):
    return [l for l in p.stderr.splitlines() if "another provenance" in l]


def test_push_warns_when_a_suffix_build_takes_a_branch_builds_tag(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "ampere")
    repo = pathlib.Path(sets["linnaeus_git"])
    run("git", "-C", repo, "branch", "exp01")
    cache = tmp_path / "cache"
    first = kiln.run(*build_args(sets, world, "--arch", "ampere", "--branch", "exp01", "--push",
                                 "--cache", cache, "--json"))
    tag = json.loads(first.stdout)["tags"][0]
    assert tag.endswith(":ampere-stable-cu126-exp01") and not warnings(first)
    man = json.loads(kiln.run("inspect", "--raw", tag).stdout)
    assert man["annotations"]["dev.kiln.tag.branch"] == "exp01"
    assert "dev.kiln.tag.suffix" not in man["annotations"]
    old_digest = json.loads(first.stdout)["digest"]
    # the same build again: same provenance, no warning
    again = kiln.run(*build_args(sets, world, "--arch", "ampere", "--branch", "exp01", "--push",
                                 "--cache", cache, "--json"))
    assert not warnings(again), again.stderr
    # a new commit on the same branch moves the tag: still no warning
    run("git", "-C", repo, "checkout", "-q", "exp01")
    (repo / "linnaeus" / "__init__.py").write_text("VERSION = 3\n")
    run("git", "-C", repo, "commit", "-qam", "change", env=GIT_ENV)
    moved = kiln.run(*build_args(sets, world, "--arch", "ampere", "--branch", "exp01", "--push",
                                 "--cache", cache, "--json"))
    assert json.loads(moved.stdout)["digest"] != old_digest
    assert not warnings(moved), moved.stderr
    # main with --tag-suffix exp01: the same tag, another provenance
    p = kiln.run(*build_args(sets, world, "--arch", "ampere", "--tag-suffix", "exp01", "--push",
                             "--cache", cache, "--json"))
    assert json.loads(p.stdout)["tags"][0] == tag
    # the main tag (and the git-REVISION tag both builds share) moves
    w = [l for l in warnings(p) if l.startswith("kiln: warning: tag '" + tag + "'")]
    assert len(w) == 1, p.stderr
    assert "recipe 'linnaeus.json'" in w[0]
    assert "branch 'exp01'" in w[0] and "suffix 'exp01'" in w[0]
    assert json.loads(moved.stdout)["digest"] in w[0]


def test_layout_output_warns_for_feat_x_and_feat_dash_x(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    for b in ("feat/x", "feat-x"):
        run("git", "-C", sets["linnaeus_git"], "branch", b)
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    a = kiln.run(*build_args(sets, world, "--arch", "pre-ampere", "--branch", "feat/x",
                             "--output", f"oci:{out}", "--cache", cache, "--json"))
    assert not warnings(a)
    b = kiln.run(*build_args(sets, world, "--arch", "pre-ampere", "--branch", "feat-x",
                             "--output", f"oci:{out}", "--cache", cache, "--json"))
    assert json.loads(a.stdout)["tags"][0] == json.loads(b.stdout)["tags"][0]
    tag = json.loads(b.stdout)["tags"][0]
    w = [l for l in warnings(b) if l.startswith("kiln: warning: tag '" + tag + "'")]
    assert len(w) == 1, b.stderr
    assert "branch 'feat/x'" in w[0] and "branch 'feat-x'" in w[0]
    assert w[0].index("branch 'feat/x'") < w[0].index("branch 'feat-x'")
