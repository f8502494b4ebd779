"""Portable numerics: its settings reach TensorFlow, bite, and make the bits independent of the core
count, of what the user's environment asked for, and of the CPU model.

The evidence runs tests/numerics_bits.py in fresh processes, each under a params.yaml of its own, as
a stage reads it. A run that gives the portable bits only proves something if the same settings,
moved one step, give other bits: so each knob is also moved by hand in native mode, which leaves the
environment alone. Another CPU model is emulated with QEMU where it is installed.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dvc_repo import ROOT

from common import numerics, params

pytestmark = pytest.mark.e2e

HOST_HAS_AVX512 = " avx512f " in Path("/proc/cpuinfo").read_text()
SETTINGS = (*numerics.ENVIRONMENT, "XLA_FLAGS")
PORTABLE = {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2", "TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL": "0",
            "TF_NUM_INTRAOP_THREADS": "2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2 --xla_cpu_experimental_ynn_fusion_type="}
# The settings portable mode had before it pinned Eigen's kernels and YNNPACK: the two caps and the pool.
CAPS_AND_POOL = {"ONEDNN_MAX_CPU_ISA": "AVX2", "TF_NUM_INTRAOP_THREADS": "2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}

RUNS = {
    "portable": ("portable", {}, []),
    # One core: TensorFlow's default pool would have one thread; portable mode keeps two.
    "portable_one_core": ("portable", {}, ["taskset", "-c", "0"]),
    # What a user's shell may already hold: portable mode replaces its settings, keeps the other XLA flag.
    "portable_over_user_settings": ("portable", {
        "TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL": "1",
        "TF_NUM_INTRAOP_THREADS": "8",
        "XLA_FLAGS": "--xla_cpu_max_isa=AVX512 --xla_cpu_enable_fast_math=false --xla_cpu_experimental_ynn_fusion_type=individual_dot"},
     []),
    # Each setting moved one step by hand, in native mode, which leaves the environment alone.
    "native_set_as_portable": ("native", PORTABLE, []),
    "native_8_threads": ("native", {**PORTABLE, "TF_NUM_INTRAOP_THREADS": "8"}, []),
    "native_with_onednn": ("native", {**PORTABLE, "TF_ENABLE_ONEDNN_OPTS": "1"}, []),
    "native_with_onednn_at_avx": ("native", {**PORTABLE, "TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX"}, []),
    "native_xla_at_avx": ("native", {**PORTABLE, "XLA_FLAGS": "--xla_cpu_max_isa=AVX --xla_cpu_experimental_ynn_fusion_type="}, []),
    "native_onednn_in_eigen": ("native", {**PORTABLE, "TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL": "1"}, []),
    "native_with_ynnpack": ("native", {**PORTABLE, "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}, []),
    "native": ("native", {}, []),
}


def clean_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in SETTINGS}


def probe(name: str, mode: str, environment: dict, prefix: list[str], folder: Path, *arguments: str) -> subprocess.Popen:
    """Starts tests/numerics_bits.py in `folder` under a params.yaml that names `mode`."""
    params_text = (ROOT / "params.yaml").read_text()
    (folder / "params.yaml").write_text(params_text.replace("numerics: portable", f"numerics: {mode}"))
    return subprocess.Popen(
        [*prefix, sys.executable, str(ROOT / "tests/numerics_bits.py"), *arguments], cwd=folder,
        env={**clean_environment(), **environment, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def report(name: str, process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate()
    assert process.returncode == 0, f"{name}: {stderr[-2000:]}"
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bits(tmp_path_factory) -> dict[str, dict]:
    if not shutil.which("taskset"):
        pytest.skip("taskset (util-linux) is not installed")
    # One at a time: a run's bits do not depend on the load, but two pools on two cores would crowd.
    return {name: report(name, probe(name, mode, environment, prefix, tmp_path_factory.mktemp(name)))
            for name, (mode, environment, prefix) in RUNS.items()}


def test_portable_mode_sets_its_settings_before_tensorflow_loads(bits):
    assert bits["portable"]["mode"] == "portable" and bits["native"]["mode"] == "native"
    assert bits["portable"]["environment"] == PORTABLE
    assert bits["native"]["environment"] == {name: None for name in SETTINGS}
    # XLA-compiled training is among what the settings must reach.
    assert bits["portable"]["mlp_xla"]


def test_portable_bits_are_those_of_the_settings_made_by_hand(bits):
    assert (bits["portable"]["mlp"], bits["portable"]["cnn"]) == (
        bits["native_set_as_portable"]["mlp"], bits["native_set_as_portable"]["cnn"])


def test_each_setting_reaches_its_kernels(bits):
    # TensorFlow's Eigen kernels (or, turned on, its oneDNN ones, which honour the cap) run the CNN;
    # XLA compiles the MLP's training step, whose dots go to Eigen's own kernel, to oneDNN in Eigen's
    # blocks, or to YNNPACK.
    portable = bits["portable"]
    assert bits["native_with_onednn"]["cnn"] != portable["cnn"]
    assert bits["native_with_onednn_at_avx"]["cnn"] != bits["native_with_onednn"]["cnn"]
    assert bits["native_xla_at_avx"]["mlp"] != portable["mlp"]
    assert bits["native_onednn_in_eigen"]["mlp"] != portable["mlp"]
    assert bits["native_with_ynnpack"]["mlp"] != portable["mlp"]


def test_the_pool_size_changes_bits_and_portable_mode_fixes_it(bits):
    # Eigen splits the CNN's work by the pool's size. (Its own kernel gave the MLP's XLA dots the
    # same bits on 8 threads as on 2 at these shapes, so the MLP shows nothing here.)
    assert bits["native_8_threads"]["cnn"] != bits["portable"]["cnn"]
    for run in ("portable_one_core", "portable_over_user_settings"):
        assert (bits[run]["mlp"], bits[run]["cnn"]) == (bits["portable"]["mlp"], bits["portable"]["cnn"]), run


def test_user_settings_give_way_but_other_xla_flags_stay(bits):
    environment = bits["portable_over_user_settings"]["environment"]
    assert {name: environment[name] for name in numerics.ENVIRONMENT} == {name: PORTABLE[name] for name in numerics.ENVIRONMENT}
    assert environment["XLA_FLAGS"].split() == [
        "--xla_cpu_enable_fast_math=false", "--xla_cpu_max_isa=AVX2", "--xla_cpu_experimental_ynn_fusion_type="]


@pytest.mark.skipif(not HOST_HAS_AVX512, reason="measured only on an AVX-512 CPU, where native mode runs oneDNN's AVX-512 kernels and portable mode Eigen's")
def test_on_an_avx512_cpu_native_mode_runs_other_kernels(bits):
    assert bits["native"]["cnn"] != bits["portable"]["cnn"]


# Another CPU model, emulated: QEMU's user mode runs the probe with the CPUID of another vendor's
# CPU, and TensorFlow chooses its kernels for that CPU: on an Intel host an AMD EPYC Zen3 (AVX2
# without AVX-512 or VNNI, 32 KiB L1d, 512 KiB L2), on an AMD host an Intel Ice Lake (its AVX-512
# dropped, as QEMU has none; 32 KiB L1d, 4 MiB L2). The emulated arithmetic is IEEE's, so where the
# same kernels run, so do the bits, and where the host's CPU answers with an estimate of its own
# (rsqrt), the bits part.
HOST_IS_AMD = "AuthenticAMD" in Path("/proc/cpuinfo").read_text()
EMULATED_CPU = "Icelake-Server" if HOST_IS_AMD else "EPYC-Milan"
EMULATED_RUNS = {"portable": ("portable", {}, ["--inference"]), "caps_and_pool": ("native", CAPS_AND_POOL, [])}


@pytest.fixture(scope="module")
def emulated(tmp_path_factory) -> dict[str, dict]:
    if platform.machine() != "x86_64" or not shutil.which("qemu-x86_64"):
        pytest.skip("needs QEMU's x86-64 user-mode emulator (Debian: apt-get install qemu-user), which .ci/run installs")
    # The probe's CNN takes one step here: an emulated step takes minutes.
    runs = {}
    for name, (mode, environment, arguments) in EMULATED_RUNS.items():
        for where, prefix in (("here", []), ("emulated", ["qemu-x86_64", "-cpu", EMULATED_CPU])):
            folder = tmp_path_factory.mktemp(f"{name}_{where}")
            runs[name, where] = probe(name, mode, environment, prefix, folder, "--cnn-images", "128", *arguments)
    return {key: report(" ".join(key), process) for key, process in runs.items()}


def test_another_cpu_model_gives_the_portable_bits(emulated):
    here, there = emulated["portable", "here"], emulated["portable", "emulated"]
    digests = ("mlp", "cnn", "cnn_predict", "cnn_float32_tflite")
    assert [there[name] for name in digests] == [here[name] for name in digests]


def test_the_caps_and_the_pool_alone_left_the_cpu_model_in_the_bits(emulated):
    # Without the other pins, the CPU's features and caches choose kernels and blocks: TensorFlow
    # runs oneDNN's kernels only where the CPU has VNNI, Eigen hands oneDNN blocks cut by the CPU's
    # caches, and XLA's dots go to YNNPACK. Both models train to other bits.
    here, there = emulated["caps_and_pool", "here"], emulated["caps_and_pool", "emulated"]
    assert there["mlp"] != here["mlp"] and there["cnn"] != here["cnn"]


@pytest.mark.parametrize(("before", "after"), [
    ({}, {**PORTABLE}),
    ({"XLA_FLAGS": "--xla_cpu_max_isa=AVX512 --xla_dump_to=/tmp/x", "HOME": "/root"},
     {**PORTABLE, "XLA_FLAGS": f"--xla_dump_to=/tmp/x {PORTABLE['XLA_FLAGS']}", "HOME": "/root"}),
    # A flag given without a value, or as the last of several, is replaced all the same.
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type --xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX"},
     {**PORTABLE, "XLA_FLAGS": f"--xla_dump_to=/tmp/x {PORTABLE['XLA_FLAGS']}"}),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "TF_NUM_INTRAOP_THREADS": "64", "TF_ENABLE_ONEDNN_OPTS": "false"}, {**PORTABLE}),
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
