"""``python -m callipso_agent.meteo``: the ``meteo`` subcommand on its own."""

import argparse
import sys

from callipso_agent.meteo.cli import register, run

parser = argparse.ArgumentParser(prog="callipso-agent")
sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
register(sub)
args = parser.parse_args(["meteo", *sys.argv[1:]])
raise SystemExit(run(args))
