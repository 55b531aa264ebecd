"""``Code``: names, gRPC numbers, Connect HTTP statuses and HTTP-to-code inference."""

from __future__ import annotations

import pytest

from connect_anyio import Code

# name, gRPC number, Connect HTTP status (https://connectrpc.com/docs/protocol#error-codes)
TABLE = [
    ("canceled", 1, 499),
    ("unknown", 2, 500),
    ("invalid_argument", 3, 400),
    ("deadline_exceeded", 4, 504),
    ("not_found", 5, 404),
    ("already_exists", 6, 409),
    ("permission_denied", 7, 403),
    ("resource_exhausted", 8, 429),
    ("failed_precondition", 9, 400),
    ("aborted", 10, 409),
    ("out_of_range", 11, 400),
    ("unimplemented", 12, 501),
    ("internal", 13, 500),
    ("unavailable", 14, 503),
    ("data_loss", 15, 500),
    ("unauthenticated", 16, 401),
]


def test_the_table_covers_every_code() -> None:
    assert {Code(name) for name, _, _ in TABLE} == set(Code)


@pytest.mark.parametrize(("name", "number", "status"), TABLE)
def test_code_tables(name: str, number: int, status: int) -> None:
    code = Code.from_name(name)
    assert code is not None
    assert code.value == name
    assert code.grpc_number == number
    assert code.http_status == status
    assert Code.from_grpc_number(number) is code


def test_grpc_ok_is_no_code_and_unknown_numbers_are_unknown() -> None:
    assert Code.from_grpc_number(0) is None
    assert Code.from_grpc_number(17) is Code.UNKNOWN
    assert Code.from_grpc_number(-1) is Code.UNKNOWN
    assert Code.from_grpc_number(1 << 40) is Code.UNKNOWN


@pytest.mark.parametrize("name", ["", "ok", "OK", "Canceled", "INVALID_ARGUMENT", "cancelled"])
def test_from_name_is_exact(name: str) -> None:
    assert Code.from_name(name) is None


# The HTTP-to-code table shared by the Connect spec and gRPC's http-grpc-status-mapping.md.
@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, Code.INTERNAL),
        (401, Code.UNAUTHENTICATED),
        (403, Code.PERMISSION_DENIED),
        (404, Code.UNIMPLEMENTED),
        (429, Code.UNAVAILABLE),
        (502, Code.UNAVAILABLE),
        (503, Code.UNAVAILABLE),
        (504, Code.UNAVAILABLE),
        (200, Code.UNKNOWN),
        (302, Code.UNKNOWN),
        (405, Code.UNKNOWN),
        (415, Code.UNKNOWN),
        (500, Code.UNKNOWN),
        (505, Code.UNKNOWN),
        (599, Code.UNKNOWN),
    ],
)
def test_code_from_http_status(status: int, code: Code) -> None:
    assert Code.from_http_status(status) is code
