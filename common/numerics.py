"""Which CPU kernels TensorFlow may run, so that the same params give the same bits however many
cores the machine has and whatever x86-64 CPU with AVX2 it is.

Training amplifies last-bit differences: the same commit trained a teacher of 0.9266 on one CPU and
0.9229 on another. Besides the code and the data, these choose the bits, each measured on real Intel
Xeon and AMD EPYC machines and on other CPU models under emulation (docs/reproducibility.md):
- whether TensorFlow runs oneDNN's kernels or Eigen's: unless told, it runs oneDNN's only on CPUs with
  VNNI, BF16 or AMX instructions. oneDNN's matrix product picks its path by the CPU's cache sizes for
  some shapes (a 10-class logits layer on 784 or 1,000 images gave an emulated Ice Lake other bits
  than an AMD EPYC), which no setting caps; Eigen's gave the same bits at every shape measured, so
  portable mode runs Eigen's kernels;
- the instruction set: XLA's code generator (and oneDNN, where XLA calls it) pick their kernels from
  what the CPU offers at run time, and both honour a cap. YNNPACK, to which XLA hands dots and
  reductions, chooses by itself: under the same caps its dots gave a Xeon other bits than emulated
  AVX2 CPUs, so portable mode does without it;
- the CPU's cache sizes: TensorFlow's Eigen contractions (XLA's dots among them) can hand blocks cut
  by cache size to oneDNN; Eigen's own kernel gave the same bits on every cache geometry measured, so
  portable mode uses it there;
- the size of TensorFlow's intra-op thread pool, by which Eigen splits its work. It is the pool's
  size that counts, not the cores: a pool of 2 on one core gives the bits of 2 on two.

`portable` (the default) pins all four; `native` leaves them to TensorFlow: every instruction and core
the host has, and bits of its own. A fifth source is not a setting: TensorFlow's rsqrt starts from the
CPU vendor's own estimate, so the CNNs' batch normalisation does without it in both modes
(architectures.BatchNormalization).
"""

import os
import platform
import re
import sys
from pathlib import Path

MODES = ("portable", "native")
PORTABLE_ISA = "AVX2"
# On the 2-core machines that make this project's commits it costs nothing; measured costs on other
# core counts are in docs/reproducibility.md.
PORTABLE_THREADS = 2
# What the caps need from the CPU for the AVX2 kernels to be the ones that run.
PORTABLE_CPU_FLAGS = ("avx2", "fma")

ENVIRONMENT = {
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "ONEDNN_MAX_CPU_ISA": PORTABLE_ISA,
    "TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL": "0",
    "TF_NUM_INTRAOP_THREADS": str(PORTABLE_THREADS),
}
# The ISA cap for XLA's code generator, and no YNNPACK fusions (an empty list of fusion types).
XLA_SETTINGS = {"--xla_cpu_max_isa": PORTABLE_ISA, "--xla_cpu_experimental_ynn_fusion_type": ""}

# The mode this process runs in, once configure() has run.
mode: str | None = None


def mode_in_params(path: Path = Path("params.yaml")) -> str:
    """train.numerics from params.yaml, read before TensorFlow loads; the default when the file, the
    key or a valid value is missing, since the stage's full check of params.yaml reports those."""
    from ruamel.yaml import YAML, YAMLError

    try:
        value = YAML(typ="safe").load(path.read_text(encoding="utf-8"))["train"]["numerics"]
    except (OSError, YAMLError, TypeError, KeyError, UnicodeDecodeError):
        return MODES[0]
    return value if value in MODES else MODES[0]


def portable_environment(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with the portable settings in place of whatever it had for them; other XLA flags stay."""
    xla_flags = environ.get("XLA_FLAGS", "")
    for flag in XLA_SETTINGS:
        xla_flags = re.sub(rf"{flag}(=\S*)?(\s|$)", " ", xla_flags)
    settings = [f"{flag}={value}" for flag, value in XLA_SETTINGS.items()]
    return {**environ, **ENVIRONMENT, "XLA_FLAGS": " ".join([*xla_flags.split(), *settings])}


def cpu_scope(machine: str, cpu_flags: set[str] | None) -> str | None:
    """None where portable mode reproduces bit for bit; otherwise the one line that says what does."""
    consequence = "results here match other machines within seed noise, and dvc.lock's hashes will differ"
    if machine not in ("x86_64", "AMD64"):
        return f"numerics: portable mode reproduces bit for bit on x86-64 with AVX2 only, not on {machine}: {consequence}"
    if cpu_flags is None:
        return f"numerics: could not read this CPU's features from /proc/cpuinfo to check for AVX2 and FMA: {consequence}"
    missing = [flag for flag in PORTABLE_CPU_FLAGS if flag not in cpu_flags]
    if missing:
        return (f"numerics: this CPU lacks {' and '.join(flag.upper() for flag in missing)}, which portable mode's kernels need: "
                f"{consequence}")
    return None


def host_cpu_flags() -> set[str] | None:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1] for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return set(flags.split())


def configure(requested: str) -> None:
    """Sets the process up for `requested` numerics. Must run before TensorFlow loads, which reads
    these settings once; common/__init__ does it for every stage, tool, benchmark and test."""
    global mode
    if "tensorflow" in sys.modules:
        raise RuntimeError("common.numerics.configure() ran after TensorFlow loaded: import common first")
    if requested == "portable":
        os.environ.update(portable_environment(dict(os.environ)))
        if scope := cpu_scope(platform.machine(), host_cpu_flags()):
            print(scope, file=sys.stderr)
    mode = requested
