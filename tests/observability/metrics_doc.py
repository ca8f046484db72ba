"""docs/metrics.md as the tests read it: the metric families its tables
document, and the PromQL of its "Useful queries" table.

The path is $SHMBROKER_METRICS_DOC, else docs/metrics.md of this source tree.
A missing file, or one without rows, is a failure, never an empty list: a
test must not pass by checking nothing.
"""

import os
import re

from checks import check, fail
from exposition import ALLOWED_FOREIGN_FAMILIES

TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_FAMILY_ROW_RE = re.compile(r"^\s*\|\s*`([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^`]*\})?`\s*\|(.*)$")
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def metrics_doc_path():
    return (os.environ.get("SHMBROKER_METRICS_DOC") or
            os.path.join(_SOURCE_ROOT, "docs", "metrics.md"))


def _lines(path):
    if not os.path.exists(path):
        fail(f"{path} does not exist")
    with open(path, encoding="utf-8") as f:
        return list(enumerate(f, 1))


def documented_families(path):
    """{family: (type or None, line number)} of every table row whose first
    cell is a backticked name starting with shmbroker_ (a `{labels}` part
    inside the backticks is ignored) or one of ALLOWED_FOREIGN_FAMILIES."""
    docs = {}
    for lineno, line in _lines(path):
        m = _FAMILY_ROW_RE.match(line)
        if not m:
            continue
        name = m.group(1)
        if not name.startswith("shmbroker_") and name not in ALLOWED_FOREIGN_FAMILIES:
            continue
        cells = [c.strip().strip("`").lower() for c in m.group(2).split("|")]
        typ = cells[0] if cells and cells[0] in TYPES else None
        if name in docs:
            fail(f"{path}:{lineno}: {name} is documented twice")
        docs[name] = (typ, lineno)
    check(docs, f"{path} has no table rows starting with a backticked shmbroker_ name")
    return docs


def documented_queries(path):
    """The backticked PromQL in the last cell of table rows that mention
    shmbroker_ but do not start with a metric name."""
    queries = []
    for _, line in _lines(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (len(cells) >= 2 and not cells[0].startswith("`")
                and re.fullmatch(r"`[^`]*shmbroker_[^`]*`", cells[-1])):
            queries.append(cells[-1].strip("`"))
    check(queries, f"{path} has no '| question | `PromQL` |' rows")
    return queries
