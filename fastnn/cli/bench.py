"""``fastnn bench``, the command side: the harness is the package :mod:`fastnn.bench`."""


def add_parser(commands):
    from .. import bench  # standard library only at import: --help stays instant

    p = commands.add_parser(
        "bench", help="time fastnn against its NumPy twins, a NumPy network and PyTorch")
    bench.add_arguments(p)


def run(args, started):
    from .. import bench

    return bench.run(args)
