"""Packaging (issue 16): every third-party import in ``tfneuro/`` is a declared requirement, the
``tfneuro`` command is installed and lists its commands, ``experiments/X.py`` are thin wrappers.

The imports are read with ``ast`` (module level and inside functions), mapped to distributions
with ``importlib.metadata.packages_distributions()`` and compared with the package's
requirements as ``importlib.metadata`` reads them. The metadata is built fresh from this
checkout (``setup.py egg_info`` into a temporary directory, ~1 s): the ``tfneuro`` installed
on a developer's machine may be another checkout's (here: an editable install of the main
checkout), whose ``requires("tfneuro")`` says nothing about this ``setup.cfg``.

How these tests were seen to fail: with ``psutil>=5.9`` removed from ``install_requires``
(as it was before issue 16) ``test_every_import_is_declared`` failed naming
``psutil ... tfneuro/inference/memory.py``; ``test_checker_finds_a_removed_requirement`` keeps
that case in the suite. With the ``console_scripts`` line removed,
``test_console_script_is_declared`` failed.
"""

import ast
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("segment", "export", "evaluate", "quickstart")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _catches_import_error(node: ast.Try) -> bool:
    for h in node.handlers:
        names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
        if any(getattr(n, "id", None) in ("ImportError", "ModuleNotFoundError") for n in names):
            return True
    return False


def third_party_imports(root=os.path.join(REPO, "tfneuro")) -> dict:
    """``{top-level module: {"required": {file}, "optional": {file}}}`` for every import of a
    module outside the standard library and tfneuro; an import inside a ``try`` that catches
    ImportError is optional."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, REPO)
            tree = ast.parse(open(path, encoding="utf-8").read())
            optional = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Try) and _catches_import_error(node):
                    optional |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                else:
                    continue
                for m in (m.split(".")[0] for m in mods):
                    if m in sys.stdlib_module_names or m in ("tfneuro", "__future__"):
                        continue
                    kind = "optional" if id(node) in optional else "required"
                    found.setdefault(m, {"required": set(), "optional": set()})[kind].add(rel)
    return found


def split_requirements(requires) -> tuple:
    """``(install_requires names, {extra: names})`` from ``Requires-Dist`` strings."""
    base, extras = set(), {}
    for r in requires or []:
        name = _norm(re.match(r"\s*([A-Za-z0-9._-]+)", r).group(1))
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", r)
        if extra:
            extras.setdefault(extra.group(1), set()).add(name)
        else:
            base.add(name)
    return base, extras


def undeclared(imports: dict, requires) -> list:
    """Problems: a required import whose distribution is not in ``install_requires``, an
    optional one in neither ``install_requires`` nor an extra."""
    base, extras = split_requirements(requires)
    in_extras = set().union(*extras.values()) if extras else set()
    dists = metadata.packages_distributions()
    problems = []
    for mod, where in sorted(imports.items()):
        names = {_norm(d) for d in dists.get(mod, [mod])}
        if where["required"] and not names & base:
            problems.append(f"{mod} ({', '.join(sorted(names))}) imported by "
                            f"{', '.join(sorted(where['required']))} is not in install_requires")
        elif where["optional"] and not names & (base | in_extras):
            problems.append(f"{mod} ({', '.join(sorted(names))}), optional in "
                            f"{', '.join(sorted(where['optional']))}, is in no extra")
    return problems


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """This checkout's metadata as pip would install it (``setup.py egg_info``)."""
    base = tmp_path_factory.mktemp("egg")
    r = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(base)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return metadata.PathDistribution(Path(base) / "tfneuro.egg-info")


def test_every_import_is_declared(dist):
    imports = third_party_imports()
    assert {"tensorflow", "keras", "numpy", "nibabel", "psutil"} <= set(imports)
    assert undeclared(imports, dist.requires) == []


def test_checker_finds_a_removed_requirement(dist):
    """psutil (tfneuro.inference.memory) taken out of install_requires is reported."""
    requires = [r for r in dist.requires if not r.startswith("psutil") or "extra ==" in r]
    problems = undeclared(third_party_imports(), requires)
    assert len(problems) == 1 and problems[0].startswith("psutil (psutil) imported by")
    assert "tfneuro/inference/memory.py" in problems[0]


def test_checker_reads_optional_and_function_local_imports(tmp_path):
    (tmp_path / "m.py").write_text(
        "import os\n"
        "def f():\n    import psutil\n"
        "try:\n    import tensorboard\nexcept ImportError:\n    tensorboard = None\n")
    found = third_party_imports(str(tmp_path))
    assert set(found) == {"psutil", "tensorboard"}
    assert found["psutil"]["required"] and not found["tensorboard"]["required"]
    assert undeclared(found, ['psutil>=5', 'tensorboard>=2; extra == "tensorboard"']) == []
    assert len(undeclared(found, ["psutil>=5"])) == 1


def test_console_script_is_declared(dist):
    scripts = [e for e in dist.entry_points if e.group == "console_scripts"]
    assert [(e.name, e.value) for e in scripts] == [("tfneuro", "tfneuro.apps.console:main")]


def _console(*args, env=None):
    code = "import sys; from tfneuro.apps.console import main; sys.exit(main(sys.argv))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_console_help_lists_the_commands():
    r = _console("--help")
    assert r.returncode == 0, r.stderr
    listed = [ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith("  ")]
    assert listed == list(COMMANDS)
    r = _console()
    assert r.returncode == 2 and "segment" in r.stderr
    r = _console("segmnet")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: tfneuro: unknown command 'segmnet'; one of segment, export, evaluate, "
        "quickstart (tfneuro --help)"]


def test_a_missing_command_module_is_one_error_line():
    code = ("import sys; import tfneuro.apps.console as c; "
            "c.COMMANDS['ghost'] = ('tfneuro.apps.commands.ghost', 'not installed'); "
            "sys.exit(c.main(['tfneuro', 'ghost', '--flag']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tfneuro ghost: ")
    assert "tfneuro.apps.commands.ghost" in lines[0] and "Traceback" not in r.stderr


def test_command_help_shows_the_command_flags():
    """``tfneuro evaluate --help`` prints the command's docstring and its own flags."""
    r = _console("evaluate", "--help")
    assert "Evaluate predicted label maps" in r.stdout
    for flag in ("--cohort", "--predictions_dir", "--regroup_to"):
        assert f"  {flag}:" in r.stdout, r.stdout[-2000:]


@pytest.mark.parametrize("name", ["segment", "export", "evaluate"])
def test_experiment_scripts_are_thin_wrappers(name):
    src = open(os.path.join(REPO, "experiments", f"{name}.py"), encoding="utf-8").read()
    tree = ast.parse(src)
    code = [n for n in tree.body if not (isinstance(n, ast.Expr) and
                                         isinstance(n.value, ast.Constant))]
    assert len(code) == 2, src
    assert f'run_command("{name}")' in src
