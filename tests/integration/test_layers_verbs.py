"""kiln config and kiln flatten."""
import json

from conftest import run
from layers_helpers import blob, make_layout, manifest_of, snapshot
from unpack_cases import scary_layers


def config_of(layout, tag=None):
    m = manifest_of(layout, tag)
    return m, json.loads(blob(layout, m["config"]["digest"]))


def test_config_sets_env_entrypoint_cmd_workdir_labels(kiln, tmp_path, umoci_image, oci_schema):
    out = tmp_path / "o"
    kiln.run("config", f"oci:{umoci_image}:base", "--env", "A=2", "--env", "PYTHONPATH=/app",
             "--entrypoint", '["/bin/sh","-c"]', "--cmd", "bash", "--workdir", "/app/linnaeus",
             "--label", "z=1", "--label", "a=2", "-t", f"oci:{out}:cfg")
    m, cfg = config_of(out, "cfg")
    c = cfg["config"]
    assert c["Env"].count("A=2") == 1 and "A=1" not in c["Env"] and "PYTHONPATH=/app" in c["Env"]
    assert c["Entrypoint"] == ["/bin/sh", "-c"] and c["Cmd"] == ["bash"]
    assert c["WorkingDir"] == "/app/linnaeus"
    assert list(c["Labels"]) == ["a", "z"]
    assert cfg["history"][-1] == {"created_by": "kiln config", "empty_layer": True}
    base, _ = config_of(umoci_image, "base")
    assert m["layers"] == base["layers"]
    oci_schema("manifest", m)
    oci_schema("config", cfg)
    # an empty value clears
    kiln.run("config", f"oci:{out}:cfg", "--cmd", "", "-t", f"oci:{out}:cleared")
    _, cfg2 = config_of(out, "cleared")
    assert cfg2["config"]["Cmd"] is None


def test_config_rejects_bad_values(kiln, tmp_path, umoci_image):
    _, line = kiln.fails("config", f"oci:{umoci_image}:base", "--env", "NOEQUALS", "-t",
                         f"oci:{tmp_path}/o:x", code=2)
    assert "invalid environment variable 'NOEQUALS'" in line
    _, line = kiln.fails("config", f"oci:{umoci_image}:base", "--cmd", '["a", 1]', "-t",
                         f"oci:{tmp_path}/o:x", code=2)
    assert "every element must be a string" in line


def test_flatten_gives_the_same_tree_in_one_layer(kiln, tmp_path):
    place = make_layout(tmp_path / "lay", scary_layers())
    out = tmp_path / "flat"
    kiln.run("flatten", place, "-t", f"oci:{out}:v1")
    m, cfg = config_of(out)
    assert len(m["layers"]) == 1 and len(cfg["rootfs"]["diff_ids"]) == 1
    kiln.run("unpack", f"oci:{out}:v1", tmp_path / "a")
    kiln.run("unpack", place, tmp_path / "b")
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    run("umoci", "unpack", "--rootless", "--image", f"{out}:v1", tmp_path / "u")
    assert snapshot(tmp_path / "u" / "rootfs") == snapshot(tmp_path / "b")
    # flattening is deterministic
    kiln.run("flatten", place, "-t", f"oci:{tmp_path / 'flat2'}:v1")
    assert manifest_of(tmp_path / "flat2") == m
