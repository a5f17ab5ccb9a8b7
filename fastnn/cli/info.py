"""``fastnn info``: what fastnn runs on (version, build, SIMD path, threads, BLAS)."""
import json


def add_parser(commands):
    p = commands.add_parser(
        "info", help="show the version, build, SIMD path, threads and BLAS",
        description="Show what fastnn runs on: version, build flags, SIMD path, OpenMP, "
                    "threads and BLAS libraries.")
    p.add_argument("--json", action="store_true", help="print the configuration as one JSON object")


def run(args, started):
    from .. import _config
    if args.json:
        print(json.dumps(_config.config(), default=str))
    else:
        _config.show_config()
    return 0
