"""The ``prioritize`` command line: check a policy file, try it against a load.

The only part of the package that imports click and rich (both from the
``cli`` extra), so ``import prioritize`` stays dependency-free. Commands
print problems one per line on stderr and exit 1 on any configuration or
load error, never with a traceback; usage mistakes exit 2, as click does.
"""

from __future__ import annotations

import click

from .. import __version__
from .check import check
from .demo import demo
from .serve import serve
from .sign import sign
from .simulate import simulate
from .worker import worker

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="prioritize")
def main() -> None:
    """Keep the important work of a service fast when it is overloaded."""


main.add_command(check)
main.add_command(simulate)
main.add_command(sign)
main.add_command(demo)
main.add_command(worker)
main.add_command(serve)
