# The checks of a recipe's "validate" object, run inside the image by
# `kiln validate` with the image's own interpreter (recipes/recipe_validate.h,
# docs/recipes.md "validate").  kiln builds this file into its binary.
#
# argv: the expanded "validate" object (JSON) and why the GPU checks are
# skipped ("" to run them).  Each result is one line on stdout,
# "\x1ekiln-check " and a JSON object {"i", "state", "detail"} ("begin"
# before a check runs, so a crash names the check); everything else is the
# program's own output.  Only the standard library of Python 3.8+ is used.
import importlib
import json
import os
import platform
import sys
import traceback

MARK = "\x1ekiln-check "
DETAIL_MAX = 900


def emit(i, state, detail="", name=None):
    rec = {"i": i, "state": state, "detail": detail[:DETAIL_MAX]}
    if name:
        rec["name"] = name
    sys.stdout.write(MARK + json.dumps(rec) + "\n")
    sys.stdout.flush()


def last_line(e):
    """The last line of the exception's traceback: 'RuntimeError: boom'."""
    lines = traceback.format_exception_only(type(e), e)
    text = lines[-1].strip() if lines else ""
    return text or type(e).__name__


def prefix_ok(value, want):
    """want starts value at a component boundary ("2" takes 2.7, not 20)."""
    if not value.startswith(want):
        return False
    n = len(want)
    return n == 0 or len(value) == n or not want[-1].isdigit() or not value[n].isdigit()


def version_of(mod, dist):
    v = getattr(mod, "__version__", None)
    if v is None:
        from importlib import metadata
        v = metadata.version(dist)
    return str(v)


def extensions(dist):
    """The extension modules the distribution's RECORD lists."""
    from importlib import machinery, metadata
    suffixes = sorted(machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    out = []
    for f in metadata.files(dist) or []:
        path = str(f)
        if path.startswith("..") or ".data/" in path:
            continue
        for suf in suffixes:
            if not path.endswith(suf):
                continue
            stem = path[: -len(suf)]
            parts = stem.split("/")
            # a plain .so named lib* is a shared library, not a module
            if suf == ".so" and parts[-1].startswith("lib"):
                break
            if all(p.isidentifier() for p in parts):
                out.append(".".join(parts))
            break
    return out


def run_check(c):
    mod_name = c.get("module")
    ns = {}
    mod = None
    said = []
    if mod_name:
        try:
            mod = importlib.import_module(mod_name)
        except BaseException as e:
            if c.get("absent"):
                return "ok", "import %s fails, as expected (%s)" % (mod_name, last_line(e))
            return "fail", "import %s: %s" % (mod_name, last_line(e))
        where = getattr(mod, "__file__", None) or "a namespace package"
        if c.get("absent"):
            return "fail", "%s imports (%s), but must not be in the image" % (mod_name, where)
        top = mod_name.split(".")[0]
        ns[top] = sys.modules[top]
    dist = c.get("distribution") or (mod_name or "").split(".")[0]
    want, local = c.get("version"), c.get("local")
    if want is not None or local is not None:
        v = version_of(mod, dist)
        got_local = v.split("+", 1)[1] if "+" in v else ""
        if (want is not None and not prefix_ok(v, want)) or \
           (local is not None and got_local != local):
            expected = (want or "any version") + (" with +" + local if local is not None else "")
            return "fail", "%s %s, expected %s" % (mod_name, v, expected)
        said.append("%s %s" % (mod_name, v))
    names = c.get("names") or []
    for n in names:
        try:
            exec("from %s import %s" % (mod_name, n), {})
        except BaseException as e:
            return "fail", "from %s import %s: %s" % (mod_name, n, last_line(e))
    if names:
        said.append("imports " + ", ".join(names))
    for expr, want_value in sorted((c.get("values") or {}).items()):
        try:
            got = str(eval(expr, dict(ns)))
        except BaseException as e:
            return "fail", "%s: %s" % (expr, last_line(e))
        if not prefix_ok(got, want_value):
            return "fail", "%s is %s, expected %s" % (expr, got, want_value)
        said.append("%s %s" % (expr, got))
    if c.get("extension"):
        exts = extensions(dist)
        if not exts:
            return "fail", "%s's RECORD lists no compiled extension module" % dist
        for e in exts:
            try:
                importlib.import_module(e)
            except BaseException as ex:
                return "fail", "extension %s does not load: %s" % (e, last_line(ex))
        said.append("%s loads" % ", ".join(exts))
    if c.get("code"):
        try:
            exec(c["code"], dict(ns))
        except BaseException as e:
            return "fail", last_line(e)
        said.append("its code ran")
    if not said:
        said.append("import %s (%s)" % (mod_name, where))
    return "ok", "; ".join(said)


def main():
    spec = json.loads(sys.argv[1])
    gpu_skip = sys.argv[2] if len(sys.argv) > 2 else ""
    emit(-1, "ok", "%s %s" % (sys.executable, platform.python_version()), name="python")
    for i, c in enumerate(spec.get("checks") or []):
        if c.get("gpu") and gpu_skip:
            emit(i, "skip", gpu_skip)
            continue
        emit(i, "begin")
        try:
            state, detail = run_check(c)
        except BaseException as e:
            state, detail = "fail", "the check itself failed: " + last_line(e)
        emit(i, state, detail)
    src = spec.get("source")
    if src:
        try:
            n = len(os.listdir(src))
            emit(-2, "ok" if n else "fail",
                 "%s holds %d entr%s" % (src, n, "y" if n == 1 else "ies") if n else "%s is empty" % src,
                 name="source")
        except OSError as e:
            emit(-2, "fail", "%s: %s" % (src, e.strerror), name="source")


main()
