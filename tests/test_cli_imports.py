"""What each kind of command imports before it does its work, which is most of what it costs:
`ackd ack 12` paid about 2 s of CPU for the whole daemon's imports on a loaded machine.

`ackd --help` and the parser import no config, HTTP or notification library; a command that
asks a running ackd imports its API client (aiohttp's client) and nothing of the config, the
notifier or the daemon; check-config's module imports the config builder, and Apprise only
once a contact's URL is checked. A module-level import that brings one back fails here.
"""

import json
import subprocess
import sys

from tests.harness import ROOT

# One fresh interpreter, each stage adding to what the one before imported.
STAGES = r"""
import contextlib, importlib, io, json, sys

def present(*names):
    # those of `names` imported, themselves or a module of theirs
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in sys.modules)]

DAEMON = ("receiver.app.daemon", "receiver.store", "receiver.web", "aiohttp.web", "uvloop",
          "aiosqlite", "asyncpg")
found = {}
from receiver.cli import main
main._parser().parse_args(["ack", "12"])
found["parser"] = present("asyncio", "aiohttp", "apprise", "pydantic", "jinja2", "yaml",
                          "receiver.config", "receiver.notify", "importlib.metadata", *DAEMON)
with contextlib.redirect_stderr(io.StringIO()) as said:
    code = main.main(["ack", "12", "--url", "http://127.0.0.1:1", "--token", "t"])
assert code == 1 and "cannot reach ackd at http://127.0.0.1:1" in said.getvalue(), said.getvalue()
found["ack"] = present("apprise", "pydantic", "jinja2", "yaml", "receiver.config",
                       "receiver.notify", *DAEMON)
importlib.import_module("receiver.cli.local")  # check-config, routes test, oncall --config
found["check-config"] = present("apprise", *DAEMON)
print(json.dumps(found))
"""


def test_each_command_imports_only_what_it_needs() -> None:
    ran = subprocess.run([sys.executable, "-c", STAGES], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"parser": [], "ack": [], "check-config": []}
