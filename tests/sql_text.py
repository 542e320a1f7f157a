"""Text that looks like SQL, or like what SQL templates are filled with: the values the
SQL-text tests store everywhere. Each was a named part of a statement template once, a
driver placeholder, quoting, or a comment; none is NUL (which PostgreSQL cannot store)
nor contains '.', the memory store's namespace separator."""

HOSTILE_PIECES = (
    "{",
    "}",
    "{}",
    "{0}",
    "{table}",
    "{schema}",
    "{where}",
    "{keeping}",
    "{pairs}",
    "{rows}",
    "{triples}",
    "{parts}",
    "{live}",
    "%s",
    "%(x)s",
    "%%",
    "%",
    "$$",
    "$1",
    "'",
    "''",
    '"',
    "\\",
    "\\'",
    "E'",
    "E'\\\\'",
    "\\x00",  # the four characters, not NUL
    "--",
    ";",
    "/*",
    "*/",
    "工",
    "🚀",
)
