"""Shared utilities: atomic writes, the CLI runner, the model registry."""

import os
import subprocess
import sys
import textwrap

import pytest

from tfneuro.errors import InputError, InputErrors
from tfneuro.utils import atomic_path, atomic_write_text


def test_atomic_path_renames_on_success_and_keeps_extension(tmp_path):
    target = tmp_path / "labels.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.endswith(".nii.gz") and os.path.dirname(tmp) == str(tmp_path)
        assert not target.exists()
        with open(tmp, "wb") as f:
            f.write(b"data")
    assert target.read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["labels.nii.gz"]


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("died while writing")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_atomic_path_replaces_directories(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target) as tmp:
        os.makedirs(tmp)
        with open(os.path.join(tmp, "new.txt"), "w") as f:
            f.write("new")
    assert sorted(os.listdir(target)) == ["new.txt"]
    assert os.listdir(tmp_path) == ["model"]


def test_atomic_write_text(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_input_errors_format():
    e = InputError("/data/t1.nii.gz", "contains NaN")
    assert str(e) == "/data/t1.nii.gz: contains NaN"
    both = InputErrors([e, InputError("b.nii", "missing")], what="cohort.csv")
    assert "2 problem(s) with cohort.csv" in str(both) and "b.nii: missing" in str(both)
    assert "\n" not in str(both)


def test_registry_lists_the_design_names_and_rejects_unknown():
    import tfneuro.models as M

    assert M.list_models() == sorted(["quicknat", "infinet", "unet2d", "vgg16_fcn", "unet3d",
                                      "res_unet3d", "age_unet3d", "resnet3d_50", "resnet3d_101",
                                      "resnet3d_152", "vnet", "segresnet", "unetr"])
    with pytest.raises(InputError, match="model: unknown model name 'qicknat'"):
        M.get("qicknat")


_CLI = textwrap.dedent("""
    from tfneuro.apps import cli
    from tfneuro.errors import InputError
    def main(argv):
        raise InputError("/x/t1.nii.gz", "file does not exist")
    cli.run(main)
""")


@pytest.mark.parametrize("verbose", [False, True])
def test_cli_reports_one_line_and_traceback_only_when_verbose(verbose):
    args = [sys.executable, "-c", _CLI] + (["--verbose"] if verbose else [])
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == "error: /x/t1.nii.gz: file does not exist"
    assert ("Traceback" in p.stderr) is verbose
