"""Shared pytest settings and fixtures."""

import os

# Quiet, deterministic, CPU-only defaults for every test process (set before TF imports).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TFNEURO_PROGRESS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# precision="auto" means float32 in tests on every machine (bfloat16 on CPUs with avx512_bf16
# would change every numeric reference); tests of bfloat16 ask for it explicitly.
os.environ.setdefault("TFNEURO_PRECISION", "float32")


# --- Synthetic cohort fixtures (helper DATA; reused by other test files) ---------------------
import pytest  # noqa: E402

SYNTH_AGES = (1.0, 4.0, 9.0, 18.0)


@pytest.fixture(scope="session")
def synth_cohort_csv(tmp_path_factory):
    """Path of a 4-subject synthetic cohort CSV (3 mm, ages 1/4/9/18 months, volumes <= 64^3;
    columns subject,t1,t2,label(tissue4),age_months,split(train x2,val,test),mask,skull,seed)."""
    from tfneuro.data.synth import make_cohort

    out = tmp_path_factory.mktemp("synth_cohort")
    make_cohort(out, 4, ages=SYNTH_AGES, spacing=3.0, seed=0, show_progress=False)
    return str(out / "cohort.csv")


@pytest.fixture(scope="session")
def synth_cohort(synth_cohort_csv):
    """The synthetic cohort as a DataFrame with absolute paths (``attrs['source']`` = CSV)."""
    from tfneuro.data.cohort import read_cohort

    return read_cohort(synth_cohort_csv)


@pytest.fixture(scope="session")
def iso_cohort_csv(tmp_path_factory):
    """Learning floors (tests/floors.py): 5 isointense subjects (6.5-8.5 months) at 4 mm."""
    from floors import ISO_AGES, make_floor_cohort

    return make_floor_cohort(tmp_path_factory.mktemp("iso_cohort"), ISO_AGES, seed=3)


@pytest.fixture(scope="session")
def neonatal_cohort_csv(tmp_path_factory):
    """Learning floors (tests/floors.py): 5 neonates (0.5-2.5 months) at 4 mm."""
    from floors import NEONATAL_AGES, make_floor_cohort

    return make_floor_cohort(tmp_path_factory.mktemp("neonatal_cohort"), NEONATAL_AGES, seed=5)
