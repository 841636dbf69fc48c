"""`python -m m2e_sandbox`: the sandbox on its own, as its image runs it."""

import sys

from m2e_sandbox.server import cli

sys.exit(cli())
