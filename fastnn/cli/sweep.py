"""``fastnn sweep``, the command side: its subparser and its run under SIGTERM-as-interrupt;
the grid, the trials and the table are :mod:`fastnn.sweep`'s."""
from .interrupt import sigterm_as_interrupt
from .options import HelpFormatter


def add_parser(commands):
    from .. import sweep  # standard library only at import: --help stays instant

    p = commands.add_parser(
        "sweep", help="train a grid of configurations (any train option with several values)",
        description="Run 'fastnn train' for every combination of the values given (--hidden 32 "
                    "64 --lr 0.01 0.1 is four trials), in this process, in --jobs N local "
                    "processes or on a Dask cluster (--scheduler), and show them in a table "
                    "sorted by --sort-by. Each trial gives what 'fastnn train' gives with its "
                    "options; a trial that fails is reported and the others go on (exit "
                    "status 1 when every trial fails).",
        formatter_class=HelpFormatter)
    sweep.add_arguments(p)


def run(args, started):
    from .. import sweep

    with sigterm_as_interrupt():
        return sweep.run(args, started)
