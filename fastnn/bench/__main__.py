"""``python -m fastnn.bench``: ``fastnn bench`` (see fastnn.bench.command)."""
from .command import main

raise SystemExit(main())
