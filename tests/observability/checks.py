"""Failures and checks shared by the observability tests."""


class Failure(Exception):
    """A check failed; the message says what was expected and what was seen."""


class Fatal(Failure):
    """A failure that poll_until() does not retry (e.g. the process exited)."""


def fail(message):
    raise Failure(message)


def fatal(message):
    raise Fatal(message)


def check(condition, message):
    if not condition:
        raise Failure(message)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def check_ge(actual, minimum, what):
    if actual is None or actual < minimum:
        raise Failure(f"{what}: expected >= {minimum!r}, got {actual!r}")
