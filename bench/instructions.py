"""The event loop's instructions per webhook, under callgrind: deterministic, so 1% shows.

`.venv/bin/python bench/instructions.py [--mix mixed] [--webhooks 400] [--in-flight 1]
[--dispatcher [--storm] [--pace 1.1]] [TREE ...]`

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

`--dispatcher` leaves the delivery dispatcher running, so its passes, leases and sends count
in the loop's instructions as they do in the ingest leg over HTTP: its pages go to a local
sink (bench/bare_server.py in a process of its own, outside callgrind, answering 200 as the
leg's sink does), not to the config's closed port, whose failures would be retried and
escalated as the leg's deliveries never are. Without it the figures stay comparable with the
earlier sessions'.

`--storm` plays the storm leg's config (bench/storm.py: SEV1 incidents also tell the
`exec-status` channel), and `--pace` sets the virtual time a webhook takes (the storm leg runs
at about 500 a second over HTTP: 2 ms). With `--mix new --in-flight 8 --dispatcher --storm
--pace 2 --webhooks 3000` the measured 6 s of virtual time hold what the leg's 6 s hold: the
first page and note, the deferrals, the page bundle released at `max_hold` (5 s) and sent in
passes of BATCH rows, the rate limit's holds, the stakeholder notes deferred.

`--http` posts the bodies over HTTP instead, to the Daemon's listener run as `ackd serve` runs
it (uvloop, INFO lines written by the log thread), from a client process of its own (one
keep-alive connection per script, the headers bench/load.py's client sends): what aiohttp,
the webhook's handler and the log records add to the loop. The dispatcher is stopped. Two
runs of one tree agree within 0.2%.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

WARM_UP = 100
# With --dispatcher, the time a webhook takes (the ingest leg: 850-900 a second over HTTP).
PACE_MS = 1.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", default=[str(Path(__file__).resolve().parents[1])])
    parser.add_argument("--mix", default="mixed", choices=["new", "mixed"])
    parser.add_argument("--webhooks", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=1, help="webhooks in flight at once")
    parser.add_argument("--dispatcher", action="store_true",
                        help="leave the dispatcher running, delivering to a local sink")
    parser.add_argument("--storm", action="store_true",
                        help="the storm leg's config: SEV1 incidents tell a stakeholder channel")
    parser.add_argument("--pace", type=float, default=PACE_MS,
                        help="with --dispatcher, the virtual ms a webhook takes")
    parser.add_argument("--http", action="store_true",
                        help="post the bodies over HTTP, as `ackd serve` answers them")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client is not None:
        asyncio.run(_client(args.client, args.mix, args.webhooks, args.in_flight))
        return
    if args.child:
        ingest = _ingest(args.mix, args.webhooks, args.in_flight, args.dispatcher,
                         args.storm, timedelta(milliseconds=args.pace), args.http)
        if args.http:
            import uvloop  # as `ackd serve` runs

            with _serve_logging(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as run:
                run.run(ingest)
        else:
            asyncio.run(ingest)
        return
    if args.http and args.dispatcher:
        parser.error("--http plays without the dispatcher")
    extra = [*(["--storm"] if args.storm else []), *(["--http"] if args.http else []),
             "--pace", str(args.pace)]
    for tree in args.trees:
        counted = _count(Path(tree).resolve(), args.mix, args.webhooks, args.in_flight,
                         args.dispatcher, extra)
        dispatcher = ", dispatcher running" if args.dispatcher else ""
        if args.dispatcher:
            dispatcher += f" at {args.pace:g} ms a webhook"
        if args.storm:
            dispatcher += ", storm config"
        if args.http:
            dispatcher += ", over HTTP"
        print(f"{tree}: {counted:,.0f} instructions per webhook ({args.mix}, {args.webhooks}"
              f" after {WARM_UP}, {args.in_flight} in flight{dispatcher})")


def _count(tree: Path, mix: str, webhooks: int, in_flight: int, dispatcher: bool,
           extra: list[str]) -> float:
    with tempfile.TemporaryDirectory(prefix="ackd-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
             f"--callgrind-out-file={out}", sys.executable, str(Path(__file__).resolve()),
             "--child", "--mix", mix, "--webhooks", str(webhooks),
             "--in-flight", str(in_flight), *(["--dispatcher"] if dispatcher else []), *extra],
            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"},
            check=True, capture_output=True,
        )
        # Thread 1 is the main thread, the event loop's.
        totals = (Path(f"{out}-01").read_text().split("\ntotals: ", 1)[1]).split()[0]
        return int(totals) / (in_flight * -(-webhooks // in_flight))  # as many as were played


async def _ingest(mix: str, webhooks: int, in_flight: int, dispatcher: bool, storm: bool,
                  pace: timedelta, http: bool = False) -> None:
    sys.path.insert(0, str(Path.cwd() / "bench"))  # the measured tree's own load script
    import procs

    if not http:
        logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="ackd-instructions-") as tmp:
        work = Path(tmp)
        if not dispatcher:
            await _play(work, "127.0.0.1:9", mix, webhooks, in_flight, dispatcher=False,
                        storm=storm, pace=pace, http=http)
            return
        # valgrind does not follow children: the sink's instructions are not counted.
        sink = procs.bare(work, "sink")
        await sink.start_ready()
        try:
            await _play(work, sink.url.removeprefix("http://"), mix, webhooks, in_flight,
                        dispatcher=True, storm=storm, pace=pace)
        finally:
            sink.stop()


async def _play(work: Path, sink: str, mix: str, webhooks: int, in_flight: int, *,
                dispatcher: bool, storm: bool, pace: timedelta, http: bool = False) -> None:
    import run as bench

    from receiver.app.daemon import Daemon
    from receiver.config.build import load
    from receiver.testing.clock import FakeClock

    config_path = work / "ackd.yaml"
    text = bench.CONFIG.format(token=bench.WEBHOOK_TOKEN, synchronous="normal", sink=sink)
    if storm:
        import storm as storm_leg

        text += storm_leg.STAKEHOLDERS.replace("SINK", sink)
    config_path.write_text(text)
    config = replace(load(config_path), data_dir=work / "data", listen_host="127.0.0.1",
                     listen_port=0)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    streams = _streams(mix, webhooks, in_flight)
    warm = -(-WARM_UP // in_flight)
    # The dispatcher's work depends on the time (bundle windows, holds, backoff): on the
    # wall clock, under callgrind's slowdown, windows would end fifty times as often per
    # webhook as over HTTP, and at a different webhook in every run. So time moves by `pace` a
    # webhook, as in the ingest leg.
    clock = FakeClock(start) if dispatcher else None
    daemon = Daemon(config, clock=clock)
    await daemon.start()
    try:
        if not dispatcher:
            await daemon.dispatcher.stop()
        if http:
            await _over_http(daemon.port, mix, webhooks, in_flight)
            return

        async def play(bodies: list[bytes]) -> None:
            for body in bodies:
                await daemon.incidents.ingest_body(body)
                if clock is not None:
                    clock.advance(pace)

        await asyncio.gather(*(play(stream[:warm]) for stream in streams))
        _instrument("on")
        await asyncio.gather(*(play(stream[warm:warm + -(-webhooks // in_flight)])
                               for stream in streams))
        _instrument("off")
    finally:
        await daemon.stop()


def _streams(mix: str, webhooks: int, in_flight: int) -> list[list[bytes]]:
    """Each connection's bodies, warm-up first: the same bytes in every run."""
    from load import Script

    # A fixed start, so that every run sends the same bytes; one script per connection.
    start = datetime(2026, 12, 1, tzinfo=UTC)
    scripts = [Script(n, 1, start, mix) for n in range(in_flight)]
    return [[s.next()[1] for _ in range(-(-(WARM_UP + webhooks) // in_flight))]
            for s in scripts]


@contextmanager
def _serve_logging() -> Iterator[None]:
    """INFO lines to a file through the log thread, as `ackd serve` writes them: the loop
    makes the records."""
    from receiver.cli.local import _logging_off_the_loop
    from receiver.telemetry.logformat import formatter

    with tempfile.TemporaryDirectory(prefix="ackd-instructions-log-") as tmp:
        handler = logging.FileHandler(Path(tmp) / "ackd.log")
        handler.setFormatter(formatter("text"))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
        try:
            with _logging_off_the_loop():
                yield
        finally:
            handler.close()


async def _over_http(port: int | None, mix: str, webhooks: int, in_flight: int) -> None:
    """The bodies posted by a client process of their own (valgrind does not follow it), one
    keep-alive connection per script; counted from its warm-up's end to its last answer."""
    client = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", str(port), "--mix", mix,
        "--webhooks", str(webhooks), "--in-flight", str(in_flight),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert client.stdin is not None
    assert client.stdout is not None
    if await client.stdout.readline() != b"warm\n":
        raise RuntimeError("the client failed in its warm-up")
    _instrument("on")
    client.stdin.write(b"go\n")
    done = await client.stdout.readline()
    _instrument("off")
    if done != b"done\n" or await client.wait() != 0:
        raise RuntimeError("the client failed")


async def _client(port: int, mix: str, webhooks: int, in_flight: int) -> None:
    sys.path.insert(0, str(Path.cwd() / "bench"))
    import run as bench

    streams = _streams(mix, webhooks, in_flight)
    warm = -(-WARM_UP // in_flight)
    # The headers bench/load.py's aiohttp client sends.
    head = ("POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
            "User-Agent: Python/3.11 aiohttp/3.14.5\r\nContent-Length: {length}\r\n\r\n")
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in streams]

    async def post(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                   bodies: list[bytes]) -> None:
        reader, writer = conn
        for body in bodies:
            writer.write(head.format(port=port, token=bench.WEBHOOK_TOKEN,
                                     length=len(body)).encode() + body)
            answer = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in answer.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            if not answer.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(answer.decode())

    await asyncio.gather(*(post(c, s[:warm]) for c, s in zip(connections, streams, strict=True)))
    print("warm", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(post(c, s[warm:]) for c, s in zip(connections, streams, strict=True)))
    print("done", flush=True)
    for _, writer in connections:
        writer.close()


def _instrument(state: str) -> None:
    subprocess.run(["callgrind_control", "--instr=" + state, str(os.getpid())],
                   check=True, capture_output=True)


if __name__ == "__main__":
    main()
