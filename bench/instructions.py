"""The event loop's instructions per webhook, under callgrind: deterministic, so 1% shows.

`.venv/bin/python bench/instructions.py [--mix mixed] [--webhooks 400] [--in-flight 1] [TREE ...]`

CPU time on the shared 2-core machine moves with whatever else runs there; instructions do not.
This runs the path of bench/inprocess.py (a Daemon in process, bench/load.py's bodies through
Incidents.ingest_body one after the other, the dispatcher stopped) under valgrind's callgrind,
counting only after 100 warm-up webhooks (callgrind_control switches it on), and prints the main
thread's instructions per webhook for each source tree given (default: this one), each run from
its own sources (PYTHONPATH). Two runs of one tree agree within 0.3%. An instruction is not a
nanosecond (a syscall counts nothing, an instruction the processor has for SHA-256 counts one),
so a gain measured here is confirmed over HTTP, as a ratio (bench/run.py). Needs valgrind.

One after the other, every write is a batch, and a commit, of its own; under load commits
group many jobs, so a cost paid once a commit counts for less. `--in-flight N` plays N
connections' scripts at once (N-1 more groups, as many webhooks in all), so that commits group
jobs as they do over HTTP (8: about 7 jobs a commit); still deterministic under callgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

WARM_UP = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", default=[str(Path(__file__).resolve().parents[1])])
    parser.add_argument("--mix", default="mixed", choices=["new", "mixed"])
    parser.add_argument("--webhooks", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=1, help="webhooks in flight at once")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_ingest(args.mix, args.webhooks, args.in_flight))
        return
    for tree in args.trees:
        counted = _count(Path(tree).resolve(), args.mix, args.webhooks, args.in_flight)
        print(f"{tree}: {counted:,.0f} instructions per webhook ({args.mix}, {args.webhooks}"
              f" after {WARM_UP}, {args.in_flight} in flight)")


def _count(tree: Path, mix: str, webhooks: int, in_flight: int) -> float:
    with tempfile.TemporaryDirectory(prefix="ackd-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
             f"--callgrind-out-file={out}", sys.executable, str(Path(__file__).resolve()),
             "--child", "--mix", mix, "--webhooks", str(webhooks),
             "--in-flight", str(in_flight)],
            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"},
            check=True, capture_output=True,
        )
        # Thread 1 is the main thread, the event loop's.
        totals = (Path(f"{out}-01").read_text().split("\ntotals: ", 1)[1]).split()[0]
        return int(totals) / (in_flight * -(-webhooks // in_flight))  # as many as were played


async def _ingest(mix: str, webhooks: int, in_flight: int) -> None:
    sys.path.insert(0, str(Path.cwd() / "bench"))  # the measured tree's own load script
    import run as bench
    from load import Script

    from receiver.app.daemon import Daemon
    from receiver.config.build import load

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="ackd-instructions-") as tmp:
        work = Path(tmp)
        config_path = work / "ackd.yaml"
        config_path.write_text(bench.CONFIG.format(
            token=bench.WEBHOOK_TOKEN, synchronous="normal", sink="127.0.0.1:9"))
        config = replace(load(config_path), data_dir=work / "data", listen_host="127.0.0.1",
                         listen_port=0)
        # A fixed start, so that every run sends the same bytes; one script per connection.
        start = datetime(2026, 12, 1, tzinfo=UTC)
        scripts = [Script(n, 1, start, mix) for n in range(in_flight)]
        streams = [[s.next()[1] for _ in range(-(-(WARM_UP + webhooks) // in_flight))]
                   for s in scripts]
        warm = -(-WARM_UP // in_flight)
        daemon = Daemon(config)
        await daemon.start()
        try:
            await daemon.dispatcher.stop()
            async def play(bodies: list[bytes]) -> None:
                for body in bodies:
                    await daemon.incidents.ingest_body(body)

            await asyncio.gather(*(play(stream[:warm]) for stream in streams))
            _instrument("on")
            await asyncio.gather(*(play(stream[warm:warm + -(-webhooks // in_flight)])
                                   for stream in streams))
            _instrument("off")
        finally:
            await daemon.stop()


def _instrument(state: str) -> None:
    subprocess.run(["callgrind_control", "--instr=" + state, str(os.getpid())],
                   check=True, capture_output=True)


if __name__ == "__main__":
    main()
