"""Schemathesis hooks for scripts/schemathesis (loaded through schemathesis.toml).

Each hook covers something the OpenAPI document cannot state. They change
how schema-valid (positive) test data is sent, never what counts as a pass,
and they leave schema-invalid (negative) data alone.
"""

import ast
import uuid

import schemathesis
from schemathesis.core.parameters import ParameterLocation

# Hypothesis describes strategies by parsing source with `ast.parse`, from
# both worker threads at once. CPython 3.11 keeps the AST constructor's
# recursion counter per interpreter, not per thread, so two parses racing
# can fail with "SystemError: AST constructor recursion depth mismatch"
# (python/cpython#106905), which schemathesis reports as a runtime error.
# The parse itself is fine: try it again.
_ast_parse = ast.parse


def _ast_parse_retrying(*args, **kwargs):
    for attempt in range(3):
        try:
            return _ast_parse(*args, **kwargs)
        except SystemError as error:
            if "recursion depth mismatch" not in str(error) or attempt == 2:
                raise
    raise AssertionError("unreachable")


ast.parse = _ast_parse_retrying

# `POST /api/v1/inbound/email` takes one raw RFC 5322 message, which the
# schema describes as a string: send the string as the message text.
schemathesis.serializer.alias("message/rfc822", "text/plain")


def _positive(case, location):
    meta = case.meta
    return meta is None or not meta.is_negative_at(location)


def _has_integral_float(value):
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, list):
        return any(_has_integral_float(v) for v in value)
    if isinstance(value, dict):
        return any(_has_integral_float(v) for v in value.values())
    return False


def _integral_floats_to_ints(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_to_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_to_ints(v) for k, v in value.items()}
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    # `cursor` is an opaque token the server issues (base64url of JSON naming
    # a sort order and a position). The schema states its alphabet and
    # length, but a made-up value of that shape is still refused with 400
    # `query.invalid_cursor`, as it should be. Positive requests go without.
    if case.query and "cursor" in case.query and _positive(case, ParameterLocation.QUERY):
        del case.query["cursor"]

    # An `Idempotency-Key` names one intended request: reusing a key with a
    # different body is refused with 422 `idempotency.key_reused`, a rule
    # about earlier requests. Positive requests get a fresh key that keeps
    # the generated one as its prefix.
    headers = case.headers
    if headers and "Idempotency-Key" in headers and _positive(case, ParameterLocation.HEADER):
        key = str(headers["Idempotency-Key"])
        headers["Idempotency-Key"] = f"{key[:200]} {uuid.uuid4().hex}"

    # JSON Schema's `integer` admits `3.0`; Keel, like most JSON readers,
    # reads an integer field only from an integer literal and refuses `3.0`
    # with 400. Positive bodies send integral numbers as integers.
    if (
        (case.media_type or "").startswith("application/json")
        and _has_integral_float(case.body)
        and _positive(case, ParameterLocation.BODY)
    ):
        case.body = _integral_floats_to_ints(case.body)
