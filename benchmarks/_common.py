"""Shared helpers of the benchmark scripts: options, timing, peak memory, table and JSON output.

Every benchmark compares "ours" with a reference implementation run side by side in the same process, on
the same inputs, and reports the ratio ``speedup = reference_s / ours_s``.  A row is a dict with at least
``case``, ``ours_s``, ``reference_s`` and ``speedup``; extra fields are free.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch

Row = Dict[str, Any]

# Run from a checkout without installing: ``python benchmarks/<script>.py`` imports this repository's package.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


# ----------------------------------------------------------------------------------------------- options
def parse_args(description: str, argv: Optional[Sequence[str]] = None,
               extra: Optional[Callable[[argparse.ArgumentParser], None]] = None) -> argparse.Namespace:
    """Parse the options every benchmark takes and apply ``--threads``.

    Args:
        description: the script's one-line description (shown by ``--help``).
        argv: arguments to parse.  (default: :obj:`None`, ``sys.argv[1:]``)
        extra: a function adding script-specific options to the parser.  (default: :obj:`None`)

    Returns:
        The parsed namespace, with ``device`` resolved to a :class:`torch.device`.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="a small subset of cases, finishing in under a minute on 2 CPU cores")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the rows as a JSON list")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's default, usually the number of cores)")
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", choices=("cpu", "cuda"), default=default_device,
                        help=f"device to run on (default: {default_device})")
    parser.add_argument("--steady-memory", action="store_true",
                        help="glibc only: keep freed memory in the process, so that repeated steps do not "
                        "page-fault (less run-to-run noise; changes the allocator for ours and the reference)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    if args.steady_memory and not steady_memory():
        parser.error("--steady-memory: needs glibc's mallopt, which this process does not have")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads: expected a positive count, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device: cuda was asked for but torch.cuda.is_available() is False")
    args.device = torch.device(args.device)
    return args


def steady_memory() -> bool:
    """Tell glibc to serve every allocation from the heap and never return freed memory to the system.

    By default glibc maps allocations above a threshold (at most 32 MiB) afresh and unmaps them when freed,
    and trims the heap: every training step of a model with large activations then page-faults on hundreds
    of MiB (0-110k faults per continuous-time tiny step at batch 32, varying from step to step), which makes
    steps of the same work differ by up to 30 %.  With ``M_MMAP_MAX = 0`` and a 1 GiB trim threshold, a
    process that has run a step once runs the next without a fault.  Both sides of a comparison are
    affected alike.  Returns whether it could be applied (glibc only).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
        ok = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False
    global _STEADY_MEMORY
    _STEADY_MEMORY = _STEADY_MEMORY or ok
    return ok


_STEADY_MEMORY = False


def _cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def environment(device: torch.device) -> Dict[str, Any]:
    """Fields describing where a row was measured (added to every row)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.processor() or platform.machine()
    env = {"device": device.type, "device_name": name, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "steady_memory": _STEADY_MEMORY}
    if hasattr(os, "getloadavg"):
        # Other jobs on the machine distort timings (on 2 cores, a second busy process roughly doubles the
        # cost of every small multi-threaded op); the 1-minute load average records the conditions.
        env["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return env


def strict_fp32() -> None:
    """Turn off TF32 in cuDNN convolutions and CUDA matmuls, so fp32 means fp32 on both sides of a
    comparison (cuDNN convolutions default to TF32, matmuls do not).

    Uses the ``allow_tf32`` flags: on torch 2.13, setting the newer per-operator ``fp32_precision``
    attributes makes a later read of ``torch.backends.cudnn.allow_tf32`` raise.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


# ------------------------------------------------------------------------------------------------ timing
def synchronize(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one call of ``fn`` in seconds, waiting for queued device work before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_side_by_side(fns: Dict[str, Callable[[], Any]], device: torch.device, repeats: int,
                      warmup: int = 1, before_round: Optional[Callable[[], None]] = None,
                      before_call: Optional[Callable[[], None]] = None,
                      after_round: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, float]:
    """Median wall time of each function, the functions interleaved within every round.

    Interleaving (``a b c c b a a b c ...`` rather than ``a a a b b b``) exposes every implementation to the
    same machine state (frequency, other load), so their ratio is stable even when absolute times drift;
    reversing the order every other round keeps any one of them from always running first or after the
    same neighbour (the tiny classifiers' rewiring cost, a difference of two training steps, read 8-10 % in
    a fixed order and 1-6 % in alternating orders).

    Args:
        fns: name -> function to time; each is called with no argument.
        device: where the work runs (CUDA work is synchronised around each call).
        repeats: timed rounds; the median over them is reported.
        warmup: untimed rounds first.  (default: ``1``)
        before_round: called before every round, untimed (e.g. perturbing the weights, so that every
            function of a round sees the same inputs).  (default: :obj:`None`)
        before_call: called before every call, untimed (e.g. clearing gradients).  (default: :obj:`None`)
        after_round: called after every round, untimed, with name -> return value of each function
            (e.g. to check that all implementations gave the same answer).  (default: :obj:`None`)

    Returns:
        name -> median seconds.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1, got {repeats}")
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for r in range(warmup + repeats):
        if before_round is not None:
            before_round()
        results: Dict[str, Any] = {}
        # every other round runs in reverse order (a b c, c b a, ...): no function always runs first or
        # right after the same neighbour, whose freed memory it would otherwise page-fault back in
        order = list(fns.items()) if r % 2 == 0 else list(fns.items())[::-1]
        for name, fn in order:
            if before_call is not None:
                before_call()
            synchronize(device)
            start = time.perf_counter()
            results[name] = fn()
            synchronize(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
        if after_round is not None:
            after_round(results)
        del results
    return {name: statistics.median(t) for name, t in times.items()}


def repeats_for(seconds_per_call: float, budget_s: float, lo: int = 3, hi: int = 25) -> int:
    """How many repeats fit in ``budget_s`` for a call taking ``seconds_per_call``, clamped to ``[lo, hi]``."""
    if seconds_per_call <= 0:
        return hi
    return int(max(lo, min(hi, math.floor(budget_s / seconds_per_call))))


# ------------------------------------------------------------------------------------------ peak memory
@contextlib.contextmanager
def _quiet_stderr():
    """Swallow the C++ profiler's start/stop log lines; anything else written to fd 2 is replayed."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                if not line.startswith(("USDT:", "INFO:")) and line.strip():
                    print(line, file=sys.stderr)


def _cpu_peak_bytes(fn: Callable[[], Any]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        try:
            prof.export_chrome_trace(path)
            with open(path) as f:
                trace = json.load(f)
        finally:
            os.unlink(path)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    mem = sorted((e for e in events if e.get("name") == "[memory]" and "Total Allocated" in e.get("args", {})),
                 key=lambda e: (e["ts"], e["args"].get("Ev Idx", 0)))
    mem = [e for e in mem if e["args"].get("Device Type", 0) == 0]
    if not mem:
        return 0
    # "Total Allocated" is the allocator's running total of the blocks allocated while profiling, so the
    # value just before the first event is the baseline and the maximum is the peak of the call.
    first = mem[0]["args"]
    base = first["Total Allocated"] - first["Bytes"]
    return max(0, max(e["args"]["Total Allocated"] for e in mem) - base)


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Extra memory (MiB) allocated at the peak of one call of ``fn``, over what was allocated before it.

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak.  CPU: the PyTorch CPU allocator's
    running total, recorded by ``torch.profiler`` (``profile_memory=True``) at every allocation and free
    during the call.  Both count every tensor PyTorch allocates (inputs that already exist are not counted;
    outputs and gradients created by the call are), not memory that a vendor library (MKL, oneDNN) mallocs
    behind PyTorch's back.  The call runs once, untimed.
    """
    device = torch.device(device)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    return _cpu_peak_bytes(fn) / 2 ** 20


# ------------------------------------------------------------------------------------------------- rows
def make_row(case: str, ours_s: float, reference_s: float, **extra: Any) -> Row:
    """A result row; ``speedup = reference_s / ours_s`` (above 1: ours is faster)."""
    row: Row = {"case": case, "ours_s": ours_s, "reference_s": reference_s,
                "speedup": reference_s / ours_s if ours_s > 0 else float("inf")}
    row.update(extra)
    return row


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if math.isinf(value) or math.isnan(value):
            return str(value)
        a = abs(value)
        if a >= 100:
            return f"{value:.0f}"
        if a >= 10:
            return f"{value:.1f}"
        if a >= 0.01:
            return f"{value:.3f}"
        return f"{value:.2e}"
    return str(value)


def format_table(rows: Sequence[Row], columns: Optional[Sequence[str]] = None, markdown: bool = False) -> str:
    """Rows as an aligned text table (or a Markdown table); missing fields print as ``-``."""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(c for c in row if c not in columns)
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Iterable[str]) -> str:
        parts = [v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts)

    out = [line(columns)]
    if markdown:
        out.append("|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2))
                                  for i, w in enumerate(widths)) + "|")
    else:
        out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def write_json(rows: Sequence[Row], path: str) -> None:
    """Write the rows as a JSON list (non-finite floats as ``null``)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            return None
        return v

    with open(path, "w") as f:
        json.dump([{k: clean(v) for k, v in row.items()} for row in rows], f, indent=1)
        f.write("\n")


def print_table(rows: Sequence[Row], columns: Optional[Sequence[str]] = None, title: Optional[str] = None) -> None:
    """Print the rows as an aligned table, under an optional title."""
    if title:
        print(f"\n{title}")
    print(format_table(rows, columns), flush=True)
