"""The decode stage hands finished files' memory back to the system (asr_distill/heap.py): a worker's RSS
stays that of the files in flight. Run in a fresh process, whose heap holds nothing else."""

import json
import subprocess
import sys
import textwrap

import pytest

from asr_distill.heap import HeapTrimmer

PROBE = textwrap.dedent("""
    import json
    import numpy as np
    from asr_distill.heap import HeapTrimmer

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20

    waves, survivors = [], []
    for _ in range(4000):
        waves.append(np.ones(100_000 // 8))   # 100 KB each: inside the heap, as a file's pieces are
        survivors.append(np.ones(8))          # small objects that outlive them, between them
    del waves
    freed = rss_mb()
    heap = HeapTrimmer(every=8)
    for _ in range(7):
        heap.between_files()
    after_seven = rss_mb()
    heap.between_files()
    print(json.dumps({"freed": freed, "after_seven": after_seven, "after_eight": rss_mb()}))
""")


@pytest.mark.skipif(not HeapTrimmer().available or not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_file_memory_goes_back_to_the_system_every_few_files():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    rss = json.loads(out.stdout)
    assert rss["freed"] > 300  # freed, yet still held by the process
    assert rss["after_seven"] > rss["freed"] - 20  # not trimmed before the 8th file
    assert rss["after_eight"] < rss["freed"] - 250  # the 390 MB came back
