"""Portable numerics: the caps and the thread pool reach TensorFlow, bite, and make the bits independent
of the core count and of what the user's environment asked for.

The evidence runs tests/numerics_bits.py in fresh processes, each under a params.yaml of its own, as
a stage reads it. A run that gives the portable bits only proves something if the same settings,
moved one step, give other bits: so each knob is also moved by hand in native mode, which leaves the
environment alone.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dvc_repo import ROOT

from common import numerics, params

pytestmark = pytest.mark.e2e

HOST_HAS_AVX512 = " avx512f " in Path("/proc/cpuinfo").read_text()
CAPPED = {"ONEDNN_MAX_CPU_ISA": "AVX2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2", "TF_NUM_INTRAOP_THREADS": "2"}

RUNS = {
    "portable": ("portable", {}, []),
    # One core: TensorFlow's default pool would have one thread; portable mode keeps two.
    "portable_one_core": ("portable", {}, ["taskset", "-c", "0"]),
    # What a user's shell may already hold: portable mode replaces the three, keeps the other XLA flag.
    "portable_over_user_settings": ("portable", {
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "TF_NUM_INTRAOP_THREADS": "8",
        "XLA_FLAGS": "--xla_cpu_max_isa=AVX512 --xla_cpu_enable_fast_math=false"}, []),
    "native_set_as_portable": ("native", CAPPED, []),
    "native_8_threads": ("native", {**CAPPED, "TF_NUM_INTRAOP_THREADS": "8"}, []),
    "native_onednn_at_avx": ("native", {**CAPPED, "ONEDNN_MAX_CPU_ISA": "AVX"}, []),
    "native_xla_at_avx": ("native", {**CAPPED, "XLA_FLAGS": "--xla_cpu_max_isa=AVX"}, []),
    "native": ("native", {}, []),
}


@pytest.fixture(scope="module")
def bits(tmp_path_factory) -> dict[str, dict]:
    if not shutil.which("taskset"):
        pytest.skip("taskset (util-linux) is not installed")
    clean = {name: value for name, value in os.environ.items()
             if name not in ("ONEDNN_MAX_CPU_ISA", "XLA_FLAGS", "TF_NUM_INTRAOP_THREADS")}
    reports = {}
    for name, (mode, environment, prefix) in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        params_text = (ROOT / "params.yaml").read_text()
        (folder / "params.yaml").write_text(params_text.replace("numerics: portable", f"numerics: {mode}"))
        result = subprocess.run(
            [*prefix, sys.executable, str(ROOT / "tests/numerics_bits.py")], cwd=folder,
            env={**clean, **environment, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        )
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
        reports[name] = json.loads(result.stdout.strip().splitlines()[-1])
    return reports


def test_portable_mode_sets_the_caps_and_the_pool_before_tensorflow_loads(bits):
    assert bits["portable"]["mode"] == "portable" and bits["native"]["mode"] == "native"
    assert bits["portable"]["environment"] == CAPPED
    assert bits["native"]["environment"] == {name: None for name in CAPPED}
    # XLA-compiled training is among what the caps must reach.
    assert bits["portable"]["mlp_xla"]


def test_portable_bits_are_those_of_the_caps_set_by_hand(bits):
    assert (bits["portable"]["mlp"], bits["portable"]["cnn"]) == (
        bits["native_set_as_portable"]["mlp"], bits["native_set_as_portable"]["cnn"])


def test_each_cap_reaches_its_kernels(bits):
    # oneDNN runs the CNN's convolutions; XLA compiles the MLP's training step.
    assert bits["native_onednn_at_avx"]["cnn"] != bits["portable"]["cnn"]
    assert bits["native_xla_at_avx"]["mlp"] != bits["portable"]["mlp"]


def test_the_pool_size_changes_bits_and_portable_mode_fixes_it(bits):
    assert bits["native_8_threads"]["mlp"] != bits["portable"]["mlp"]
    assert bits["native_8_threads"]["cnn"] != bits["portable"]["cnn"]
    for run in ("portable_one_core", "portable_over_user_settings"):
        assert (bits[run]["mlp"], bits[run]["cnn"]) == (bits["portable"]["mlp"], bits["portable"]["cnn"]), run


def test_user_settings_give_way_but_other_xla_flags_stay(bits):
    environment = bits["portable_over_user_settings"]["environment"]
    assert environment["ONEDNN_MAX_CPU_ISA"] == "AVX2" and environment["TF_NUM_INTRAOP_THREADS"] == "2"
    assert environment["XLA_FLAGS"].split() == ["--xla_cpu_enable_fast_math=false", "--xla_cpu_max_isa=AVX2"]


@pytest.mark.skipif(not HOST_HAS_AVX512, reason="native and portable kernels differ only where the CPU has AVX-512")
def test_on_an_avx512_cpu_native_mode_runs_other_kernels(bits):
    assert bits["native"]["cnn"] != bits["portable"]["cnn"]


@pytest.mark.parametrize(("before", "after"), [
    ({}, {**CAPPED}),
    ({"XLA_FLAGS": "--xla_cpu_max_isa=AVX512 --xla_dump_to=/tmp/x", "HOME": "/root"},
     {**CAPPED, "XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX2", "HOME": "/root"}),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "TF_NUM_INTRAOP_THREADS": "64"}, {**CAPPED}),
])
def test_portable_environment(before, after):
    assert numerics.portable_environment(before) == after


@pytest.mark.parametrize(("machine", "flags", "says"), [
    ("x86_64", {"sse4_2", "avx", "avx2", "fma", "avx512f"}, None),
    ("x86_64", {"sse4_2", "avx", "avx2", "fma"}, None),
    ("x86_64", {"sse4_2", "avx"}, "this CPU lacks AVX2 and FMA"),
    ("x86_64", {"avx2"}, "this CPU lacks FMA"),
    ("x86_64", None, "could not read this CPU's features"),
    ("aarch64", {"asimd"}, "x86-64 with AVX2 only, not on aarch64"),
])
def test_a_cpu_outside_the_scope_gets_one_line_saying_so(machine, flags, says):
    line = numerics.cpu_scope(machine, flags)
    if says is None:
        assert line is None
    else:
        assert says in line and "within seed noise" in line and "\n" not in line


@pytest.mark.parametrize(("text", "mode"), [
    ("train:\n  numerics: native\n", "native"),
    ("train:\n  numerics: portable\n", "portable"),
    # The stage's own check of params.yaml names these mistakes; until then, the default.
    ("train:\n  numerics: fast\n", "portable"),
    ("train:\n  strategy: auto\n", "portable"),
    ("train: [\n", "portable"),
    ("- a list\n", "portable"),
    (None, "portable"),
])
def test_the_mode_comes_from_params_yaml(tmp_path, text, mode):
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_text(text)
    assert numerics.mode_in_params(path) == mode


def test_an_unknown_mode_is_refused_by_the_params_check():
    raw = params.parse_yaml((ROOT / "params.yaml").read_text())
    raw["train"]["numerics"] = "fast"
    with pytest.raises(params.UserError, match=r"train\.numerics = 'fast' is invalid: .*'portable' or 'native'"):
        params.validate(raw)


def test_configuring_after_tensorflow_loaded_is_refused():
    import tensorflow  # noqa: F401

    with pytest.raises(RuntimeError, match="after TensorFlow loaded"):
        numerics.configure("portable")
