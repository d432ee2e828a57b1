#!/usr/bin/env python3
"""tools/bench/perf_summary.py on a fixed `perf script` excerpt.

  perf_summary_test.py PATH/TO/perf_summary.py
"""
import importlib.util
import sys
import unittest

spec = importlib.util.spec_from_file_location("perf_summary", sys.argv.pop(1))
ps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ps)

SCRIPT = """ledgerd  3766 24377.918393:    2004008 cpu-clock:ppp: 
\t            eeb2 [unknown] (/usr/lib/x86_64-linux-gnu/libsodium.so.23.3.0)
\t   365347122ed12 [unknown] ([unknown])

ledgerd  3742 24377.956262:    2004008 cpu-clock:ppp: 
\tffffffff813a2413 finish_task_switch.isra.0+0x93 ([kernel.kallsyms])
\tffffffff8143f416 futex_do_wait+0x46 ([kernel.kallsyms])
\t          101829 syscall+0x19 (/usr/lib/x86_64-linux-gnu/libc.so.6)

ledgerd  3742 24377.956263:    2004008 cpu-clock:ppp: 
\tffffffff813a2413 tcp_sendmsg+0x93 ([kernel.kallsyms])

ledgerd  3766 24377.938134:    2004008 cpu-clock:ppp: 
\t           98a9a malloc+0x16a (/usr/lib/x86_64-linux-gnu/libc.so.6)
"""


class Summary(unittest.TestCase):
    def test_categories(self):
        out = ps.summarize(SCRIPT.splitlines(keepends=True))
        self.assertEqual(out["samples"], 4)
        self.assertEqual(out["shares"], {
            "crypto_ed25519": 0.25, "kernel_thread_handoff": 0.25,
            "kernel_network": 0.25, "libc_malloc_memcpy": 0.25})

    def test_empty(self):
        self.assertEqual(ps.summarize([]), {"samples": 0, "shares": {}})


if __name__ == "__main__":
    unittest.main()
