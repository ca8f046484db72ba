"""HTTP and the Prometheus text format, for the observability tests.

Parses a scrape of /metrics into samples, types and help texts, and checks
it against the metric contract (docs/metrics.md).
"""

import json
import math
import re
import shutil
import subprocess
import urllib.error
import urllib.request

from checks import Failure, check, check_eq, fail


# Families without the shmbroker_ prefix that the tests accept on /metrics
# (and require in docs/metrics.md): prometheus-cpp's Exposer adds these three
# to every endpoint and cannot be told not to. docs/metrics.md documents them
# as the only exception; nothing else may lack the prefix.
ALLOWED_FOREIGN_FAMILIES = frozenset({
    "exposer_scrapes_total",
    "exposer_transferred_bytes_total",
    "exposer_request_latencies",
})

# The metric families of the contract, with their types.
CONTRACT_FAMILIES = {
    "shmbroker_build_info": "gauge",
    "shmbroker_capacity_bytes": "gauge",
    "shmbroker_allocated_bytes": "gauge",
    "shmbroker_resident_bytes": "gauge",
    "shmbroker_tenant_allocated_bytes": "gauge",
    "shmbroker_tenant_buffers": "gauge",
    "shmbroker_buffers": "gauge",
    "shmbroker_holds": "gauge",
    "shmbroker_allocations_total": "counter",
    "shmbroker_releases_total": "counter",
    "shmbroker_reclaims_total": "counter",
    "shmbroker_reclaimed_bytes_total": "counter",
    "shmbroker_client_connections": "gauge",
    "shmbroker_client_connections_opened_total": "counter",
    "shmbroker_client_connections_closed_total": "counter",
    "shmbroker_client_deaths_total": "counter",
    "shmbroker_reclaim_latency_seconds": "histogram",
    "shmbroker_permission_denials_total": "counter",
    "shmbroker_open_fds": "gauge",
    "shmbroker_max_fds": "gauge",
    "shmbroker_rpc_duration_seconds": "histogram",
    "shmbroker_leases": "gauge",
    "shmbroker_leases_granted_total": "counter",
    "shmbroker_leases_ended_total": "counter",
    "shmbroker_keepalives_total": "counter",
    "shmbroker_lease_expiry_reclaim_latency_seconds": "histogram",
}

# No proxies: everything here is on 127.0.0.1, whatever $http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url, timeout=10):
    """Returns (headers, body text); raises Failure on a non-200 answer."""
    try:
        with _OPENER.open(url, timeout=timeout) as r:
            return r.headers, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        fail(f"GET {url}: HTTP {e.code}: {e.read()[:500]!r}")
    except (urllib.error.URLError, OSError) as e:
        fail(f"GET {url}: {e}")


def http_get_json(url, timeout=10):
    return json.loads(http_get(url, timeout)[1])


class Exposition:
    """A parsed scrape.

    samples: {(name, frozenset(labels.items())): value}
    types:   {family: type} from "# TYPE" lines
    helps:   {family: text} from "# HELP" lines
    """

    def __init__(self, samples, types, helps, text):
        self.samples, self.types, self.helps, self.text = samples, types, helps, text

    def get(self, name, **labels):
        """The value of the sample with exactly these labels, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        """Like get(), but a missing sample is a Failure listing what exists."""
        v = self.get(name, **labels)
        if v is None:
            present = sorted(_fmt_key(k) for k in self.samples if k[0] == name)
            fail(f"no sample {_fmt(name, labels)} on /metrics; samples of {name}: "
                 f"{present if present else 'none'}")
        return v

    def select(self, name, **labels):
        """{frozenset(labels): value} of every sample of `name` whose labels
        include the given ones."""
        want = set(labels.items())
        return {k[1]: v for k, v in self.samples.items() if k[0] == name and want <= k[1]}

    def total(self, name, **labels):
        return sum(self.select(name, **labels).values())


def _fmt(name, labels):
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(dict(labels).items()))
    return f"{name}{{{inner}}}"


def _fmt_key(key):
    return _fmt(key[0], dict(key[1]))


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"

_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _parse_labels(text, line):
    # text is "{...}" including the braces.
    labels = {}
    i, n = 1, len(text) - 1
    while i < n:
        while i < n and text[i] in " ,":
            i += 1
        if i >= n:
            break
        m = _LABEL_NAME_RE.match(text, i)
        if not m:
            fail(f"bad label name in line: {line!r}")
        key = m.group(0)
        i = m.end()
        while i < n and text[i] == " ":
            i += 1
        if i >= n or text[i] != "=":
            fail(f"expected '=' after label {key!r} in line: {line!r}")
        i += 1
        while i < n and text[i] == " ":
            i += 1
        if i >= n or text[i] != '"':
            fail(f"expected '\"' for label {key!r} in line: {line!r}")
        i += 1
        value = []
        while True:
            if i >= n:
                fail(f"unterminated label value in line: {line!r}")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1] if i + 1 < n else ""
                value.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        if key in labels:
            fail(f"duplicate label {key!r} in line: {line!r}")
        labels[key] = "".join(value)
    return labels


def _parse_value(s, line):
    special = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if s in special:
        return special[s]
    try:
        return float(s)
    except ValueError:
        fail(f"bad sample value {s!r} in line: {line!r}")


def parse_prometheus(text):
    """Parses the Prometheus text exposition format (0.0.4)."""
    samples, types, helps = {}, {}, {}
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                if parts[2] in types:
                    fail(f"second TYPE line for {parts[2]}: {line!r}")
                types[parts[2]] = parts[3].strip() if len(parts) > 3 else ""
            elif len(parts) >= 3 and parts[1] == "HELP":
                helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        # Split name{labels} from the value, minding '}' inside label values.
        m = re.match(rf"^({_NAME})", line)
        if not m:
            fail(f"bad sample line: {line!r}")
        name = m.group(1)
        rest = line[m.end():]
        labels = {}
        if rest.startswith("{"):
            j, in_str, esc = 1, False, False
            while j < len(rest):
                c = rest[j]
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = not in_str
                elif c == "}" and not in_str:
                    break
                j += 1
            if j >= len(rest):
                fail(f"unterminated label set in line: {line!r}")
            labels = _parse_labels(rest[:j + 1], line)
            rest = rest[j + 1:]
        fields = rest.split()
        if not fields or len(fields) > 2:
            fail(f"bad sample line (expected value [timestamp]): {line!r}")
        key = (name, frozenset(labels.items()))
        if key in samples:
            fail(f"duplicate sample {_fmt_key(key)} on /metrics")
        samples[key] = _parse_value(fields[0], line)
    return Exposition(samples, types, helps, text)


def family_of(sample_name, types):
    """The family a sample belongs to (histogram/summary suffixes stripped)."""
    if sample_name in types:
        return sample_name
    for suffix in ("_bucket", "_count", "_sum", "_created", "_total", "_info"):
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            if base in types:
                return base
    return None


def check_histogram(expo, name, **labels):
    """Checks one histogram series is well-formed; returns its _count."""
    buckets = {}
    for key, v in expo.samples.items():
        if key[0] != name + "_bucket":
            continue
        d = dict(key[1])
        le = d.pop("le", None)
        if d == labels and le is not None:
            buckets[_parse_value(le, f"le={le}")] = v
    count = expo.value(name + "_count", **labels)
    expo.value(name + "_sum", **labels)
    what = _fmt(name, labels)
    check(math.inf in buckets, f"{what}: no le=\"+Inf\" bucket (buckets: {sorted(buckets)})")
    check_eq(buckets[math.inf], count, f"{what}: +Inf bucket vs _count")
    ordered = [buckets[k] for k in sorted(buckets)]
    check(all(a <= b for a, b in zip(ordered, ordered[1:])),
          f"{what}: bucket counts are not cumulative: {sorted(buckets.items())}")
    return count


def promtool_check_metrics(text):
    """Runs `promtool check metrics` on text; returns (returncode, output)."""
    promtool = shutil.which("promtool")
    check(promtool, "promtool not found on PATH (Debian package: prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace").strip()
