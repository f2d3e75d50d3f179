"""tree and files layers: host paths built into a recipe's image."""
import json
import os

from imagegen import make_image


def recipe(tmp_path, base, extra_layers=()):
    doc = {"recipe": 1, "name": "hostapp", "base": base,
           "variables": {"repo": {"default": "example.invalid/app"}},
           "layers": [
               {"name": "app", "kind": "tree", "src": "app", "dest": "/opt/app",
                "exclude": ["*.log", "cache/**"]},
               {"name": "tools", "kind": "files",
                "files": [{"src": "tool.sh", "dest": "/usr/local/bin/tool", "mode": "0755"},
                          {"src": "conf.ini", "dest": "/etc/app/conf.ini"}]},
               *extra_layers],
           "config": {"env": ["APP_HOME=/opt/app"], "workdir": "/opt/app",
                      "cmd": ["/usr/local/bin/tool"]},
           "tag": {"repository": "${repo}", "tag": "v1"}}
    path = tmp_path / "hostapp.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def make_world(kiln, registry, tmp_path):
    base = tmp_path / "base"
    make_image(base, "b", [{"etc/": ("dir",), "etc/os-release": b"ID=standin\n"}])
    kiln.run("copy", "-q", f"oci:{base}:b", f"{registry.host}/standin/base:1")
    app = tmp_path / "app"
    (app / "lib").mkdir(parents=True)
    (app / "cache").mkdir()
    (app / "main.py").write_text("print('app')\n")
    (app / "lib" / "util.py").write_text("X = 1\n")
    (app / "run.log").write_text("noise\n")
    (app / "cache" / "big.bin").write_bytes(b"0" * 1000)
    os.symlink("main.py", app / "entry.py")
    (tmp_path / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (tmp_path / "conf.ini").write_text("[app]\n")
    return recipe(tmp_path, f"{registry.host}/standin/base:1")


def test_tree_and_files_layers(kiln, registry_factory, tmp_path):
    reg = registry_factory()
    r = make_world(kiln, reg, tmp_path)
    out = tmp_path / "out"
    res = json.loads(kiln.run("build", r, "--output", f"oci:{out}", "--cache", tmp_path / "c",
                              "--json").stdout)
    assert res["layersBuilt"] == 2
    root = tmp_path / "rootfs"
    kiln.run("unpack", f"oci:{out}:v1", root)
    assert (root / "opt/app/main.py").read_text() == "print('app')\n"
    assert (root / "opt/app/lib/util.py").exists()
    assert os.readlink(root / "opt/app/entry.py") == "main.py"
    assert not (root / "opt/app/run.log").exists() and not (root / "opt/app/cache/big.bin").exists()
    assert oct((root / "usr/local/bin/tool").stat().st_mode & 0o777) == "0o755"
    assert (root / "etc/app/conf.ini").read_text() == "[app]\n"
    assert (root / "etc/os-release").exists()          # the base is underneath
    # unchanged: everything from the cache; one file changed: that layer only
    again = json.loads(kiln.run("build", r, "--output", f"oci:{out}", "--cache", tmp_path / "c",
                                "--json").stdout)
    assert again["layersBuilt"] == 0 and again["digest"] == res["digest"]
    (tmp_path / "app" / "lib" / "util.py").write_text("X = 2\n")
    third = json.loads(kiln.run("build", r, "--output", f"oci:{out}", "--cache", tmp_path / "c",
                                "--json").stdout)
    assert third["layersBuilt"] == 1 and third["digest"] != res["digest"]
    # excluded files do not change the image
    (tmp_path / "app" / "run.log").write_text("more noise\n")
    fourth = json.loads(kiln.run("build", r, "--output", f"oci:{out}", "--cache", tmp_path / "c",
                                 "--json").stdout)
    assert fourth["layersBuilt"] == 0 and fourth["digest"] == third["digest"]


def test_bad_host_layers(kiln, registry_factory, tmp_path):
    reg = registry_factory()
    r = make_world(kiln, reg, tmp_path)
    doc = json.loads(r.read_text())
    doc["layers"][1]["files"][0]["mode"] = "rwx"
    r.write_text(json.dumps(doc, indent=2))
    p, line = kiln.fails("build", r, "--output", f"oci:{tmp_path}/o", "--cache", tmp_path / "c")
    assert "invalid mode 'rwx'" in line
    doc["layers"][1]["files"][0] = {"src": "tool.sh"}
    r.write_text(json.dumps(doc, indent=2))
    p, line = kiln.fails("build", r, "--dry-run", code=3)
    assert "dest" in line and "line" in line
    doc["layers"][1]["files"][0] = {"src": "missing.sh", "dest": "/x"}
    r.write_text(json.dumps(doc, indent=2))
    p, line = kiln.fails("build", r, "--output", f"oci:{tmp_path}/o", "--cache", tmp_path / "c")
    assert "missing.sh" in line
    assert not (tmp_path / "o").exists() or json.loads((tmp_path / "o" / "index.json").read_text())["manifests"] == []
