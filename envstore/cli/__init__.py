"""The ``envstore`` command line (``envstore.cli:main``): keygen, cp, cat, ls, inspect,
rewrap, verify, clean, demo, migrate (commands in ``data`` and ``admin``, shared parts in
``base``).

Exit codes: 0 success; 1 an operation failed (integrity, key access, configuration, not
found, permission, any other I/O or store error), with one ``envstore: error: ...`` line on
stderr (``--debug`` adds the traceback); 2 usage (unknown command or option, bad value).
"""

# isort: skip_file
# base first: without click installed it names the missing extra and exits
from envstore.cli.base import main
from envstore.cli import admin, data  # noqa: F401  (register the commands)

__all__ = ["main"]
