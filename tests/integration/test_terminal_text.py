"""Text from images reaches the terminal escaped (issue #12): names in unpack
warnings and errors, paths in diff, labels/env/cmd/annotations in inspect.
--raw and --json stay byte-exact / JSON-escaped."""
import io
import json
import re
import tarfile

import pytest

from imagegen import make_image
from layers_helpers import make_layout, tar_bytes, TAR

# ESC sequences (CSI colour, OSC title, cursor up + erase line), a forged
# error line, BEL, backspace, DEL, the C1 CSI (U+009B) and NEL (U+0085) in UTF-8
NASTY = ["\x1b[31mred\x1b[0m", "\x1b]0;owned\x07", "\x1b[1A\x1b[2K",
         "x\nkiln: error: forged", "cr\rret", "bell\x07bs\x08", "del\x7f", "c1\u009b31m",
         "nel\u0085x"]

# control characters a terminal acts on: C0 except the newline ending each
# line and the tab kiln ls puts between columns,
# DEL, and the C1 controls as UTF-8
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f]")


def check_clean(figures, out, forged_ok=0):
    """Counts one case; the raw control characters printed must stay 0."""
    bad = len(RAW.findall(out))
    forged = sum(1 for l in out.splitlines() if l.startswith("kiln: error: forged"))
    figures.count("terminal: cases tried")
    figures.zero("terminal: cases / raw control characters or forged lines printed", bad + forged)
    assert bad == 0, repr(out)
    assert forged == 0, repr(out)


def run_text(kiln, *args):
    p = kiln.run(*args, check=False)
    return p, p.stdout + p.stderr


def test_inspect_escapes_labels_env_cmd_annotations(kiln, tmp_path, figures):
    labels = {f"l{i}": s for i, s in enumerate(NASTY)}
    labels["key\x1b[2J"] = "v"
    ann = {f"a{i}": s for i, s in enumerate(NASTY)}
    make_image(tmp_path / "img", "x", [{"f": b"x"}], env=[f"E{i}={s}" for i, s in enumerate(NASTY)],
               cmd=NASTY, annotations=ann, labels=labels)
    place = f"oci:{tmp_path}/img:x"
    p, out = run_text(kiln, "inspect", place)
    assert p.returncode == 0, p.stderr
    check_clean(figures, out)
    assert "\\x1b[31mred\\x1b[0m" in p.stdout and "\\x1b]0;owned\\x07" in p.stdout
    assert "x\\nkiln: error: forged" in p.stdout and "c1\\xc2\\x9b31m" in p.stdout
    assert "key\\x1b[2J=v" in p.stdout and "del\\x7f" in p.stdout
    # the machine outputs are unchanged: JSON escapes, --raw is the bytes
    j = json.loads(kiln.run("inspect", "--json", place).stdout)
    assert j["config"]["config"]["Labels"] == labels
    assert j["manifest"]["annotations"] == ann
    cfg = json.loads(kiln.run("inspect", "--config", "--raw", place).stdout)
    assert cfg["config"]["Cmd"] == NASTY


def test_inspect_of_an_index_escapes_platform_text(kiln, tmp_path, figures):
    make_image(tmp_path / "img", "x", [{"f": b"x"}])
    idx = json.loads((tmp_path / "img" / "index.json").read_text())
    m = idx["manifests"][0]
    child = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [dict(m, platform={"os": "linux\x1b]0;t\x07", "architecture": "amd64\nkiln: error: forged"})]}
    from imagegen import _put
    raw = json.dumps(child).encode()
    idx["manifests"] = [{"mediaType": child["mediaType"], "digest": _put(tmp_path / "img", raw),
                         "size": len(raw), "annotations": {"org.opencontainers.image.ref.name": "i"}}]
    (tmp_path / "img" / "index.json").write_text(json.dumps(idx))
    p, out = run_text(kiln, "inspect", f"oci:{tmp_path}/img:i")
    assert p.returncode == 0, p.stderr
    check_clean(figures, out)
    assert "linux\\x1b]0;t\\x07/amd64\\nkiln: error: forged" in p.stdout


def test_diff_escapes_paths_and_link_targets(kiln, tmp_path, figures):
    a = {"etc/": ("dir",), "etc/\x1b]0;a\x07name": b"one", "lnk": ("link", "/x\x1b[2Ky")}
    b = {"etc/": ("dir",), "etc/\x1b]0;a\x07name": b"two!", "lnk": ("link", "/x\nkiln: error: forged")}
    make_image(tmp_path / "a", "x", [a])
    make_image(tmp_path / "b", "x", [b])
    p, out = run_text(kiln, "diff", f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x")
    assert p.returncode == 1, p.stderr
    check_clean(figures, out)
    assert "/etc/\\x1b]0;a\\x07name" in p.stdout
    assert "/x\\x1b[2Ky -> /x\\nkiln: error: forged" in p.stdout
    j = json.loads(kiln.run("diff", "--json", f"oci:{tmp_path}/a:x", f"oci:{tmp_path}/b:x",
                            check=False).stdout)
    assert any(f["what"].startswith("/etc/\x1b]0;a\x07name") for f in j["findings"])


def test_unpack_warnings_and_errors_escape_entry_names(kiln, tmp_path, figures):
    # a warning: a device skipped when rootless, its name hostile
    warn = tar_bytes([{"name": "dev\x1b[2J\nkiln: error: forged", "type": "chr"}])
    place = make_layout(tmp_path / "w", [(warn, TAR)])
    p, out = run_text(kiln, "unpack", "--rootless", place, tmp_path / "wout")
    assert p.returncode == 0, p.stderr
    check_clean(figures, out)
    assert "skipped device 'dev\\x1b[2J\\nkiln: error: forged'" in p.stderr
    # an error: a refused name
    bad = tar_bytes([{"name": "a\x1b]0;t\x07/../../escape\u009b", "data": b"x"}])
    place = make_layout(tmp_path / "e", [(bad, TAR)])
    p, out = run_text(kiln, "unpack", place, tmp_path / "eout")
    assert p.returncode > 0
    check_clean(figures, out)
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(errs) == 1 and "a\\x1b]0;t\\x07/../../escape\\xc2\\x9b" in errs[0], p.stderr


def test_ls_escapes_tags_of_a_layout(kiln, tmp_path, figures):
    make_image(tmp_path / "img", "t\x1b[31m\nkiln: error: forged", [{"f": b"x"}])
    p, out = run_text(kiln, "ls", f"oci:{tmp_path}/img")
    check_clean(figures, out)
    assert "t\\x1b[31m\\nkiln: error: forged" in out
