"""Several threads calling the package at once: first use (torch's lazy import) and caches.

Data loaders, web services and thread pools call reductions from several threads; the
package's lazy pieces must hold up there as they do in one thread.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading

import numpy as np

import raggedarray as ra

FIRST_USE_FROM_THREADS = """
import sys, threading
import numpy as np
import raggedarray as ra
assert "torch" not in sys.modules  # numpy data: torch is imported on first use
errors = []
def work():
    try:
        assert ra.segment_sum(np.arange(4.0), [0, 2, 4]).tolist() == [1.0, 5.0]
        assert ra.RaggedArray.from_lengths(np.arange(4.0), [2, 2]).mean().tolist() == [0.5, 2.5]
    except Exception as err:
        errors.append(repr(err))
threads = [threading.Thread(target=work) for _ in range(12)]
for t in threads: t.start()
for t in threads: t.join()
print(len(errors), errors[:1])
"""


def test_first_calls_from_several_threads_while_torch_is_imported():
    """The other threads met torch half imported in sys.modules: AttributeError
    (partially initialized module 'torch' has no attribute 'dtype') in 1-7 of 8."""
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", FIRST_USE_FROM_THREADS],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.split()[0] == "0", run.stdout


def test_the_cache_of_recent_offsets_is_shared_safely():
    """Evicting from the cache of recent partitions while other threads filled it raised
    RuntimeError (dictionary changed size during iteration)."""
    errors: list[str] = []
    wrong: list[tuple[list[int], list[float]]] = []
    values = np.arange(10.0)

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(400):
                cuts = sorted(rng.integers(0, 10, 3).tolist())
                offsets = [0, *cuts, 10]
                got = ra.segment_sum(values, offsets).tolist()
                want = [values[a:b].sum() for a, b in itertools.pairwise(offsets)]
                if got != want:
                    wrong.append((offsets, got))
        except Exception as err:
            errors.append(repr(err))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the race shows within the test
    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == [] and wrong == []
