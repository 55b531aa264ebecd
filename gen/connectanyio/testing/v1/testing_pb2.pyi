from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Failure(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    details: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[str]] = ...) -> None: ...

class EchoRequest(_message.Message):
    __slots__ = ("text", "payload", "response_count", "fail", "wait_for_cancel", "response_payload_size", "tag")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_CANCEL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    text: str
    payload: bytes
    response_count: int
    fail: Failure
    wait_for_cancel: bool
    response_payload_size: int
    tag: str
    def __init__(self, text: _Optional[str] = ..., payload: _Optional[bytes] = ..., response_count: _Optional[int] = ..., fail: _Optional[_Union[Failure, _Mapping]] = ..., wait_for_cancel: bool = ..., response_payload_size: _Optional[int] = ..., tag: _Optional[str] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("text", "payload", "index", "request_texts", "headers", "timeout_ms")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TEXTS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    text: str
    payload: bytes
    index: int
    request_texts: _containers.RepeatedScalarFieldContainer[str]
    headers: _containers.ScalarMap[str, str]
    timeout_ms: int
    def __init__(self, text: _Optional[str] = ..., payload: _Optional[bytes] = ..., index: _Optional[int] = ..., request_texts: _Optional[_Iterable[str]] = ..., headers: _Optional[_Mapping[str, str]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...
