"""Framing and field formatting of the TWS API socket protocol (sans-IO).

Wire format: after the client's raw ``API\\0`` magic every message, in both
directions, is a 4-byte big-endian length followed by that many bytes of
``\\0``-terminated text fields. Nothing here touches sockets: feed bytes in,
take events out (like h11).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .types import ContractQuery

MAGIC = b"API\0"
MAX_FRAME_SIZE = 16 * 1024 * 1024
MAX_HELLO_SIZE = 1024
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1
UNSET_LONG = 2**63 - 1
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
UNSET_INT_TEXT = str(UNSET_INTEGER)

_LENGTH = struct.Struct(">I")
_HELLO_RE = re.compile(r"v(\d+)\.\.(\d+)(?: (.*))?")


class ProtocolError(Exception):
    """The peer violated the framing or handshake rules."""


class DecodeError(ProtocolError):
    """A message could not be decoded; the text names the message and field."""


@dataclass(frozen=True)
class Hello:
    """The client's version range (``v157..178``) and connect options."""

    min_version: int
    max_version: int
    options: str = ""


# ---------------------------------------------------------------- encoding


def encode_frame(fields: Sequence[str]) -> bytes:
    """Length-prefix ``fields``, each terminated by ``\\0``."""
    payload = "".join(f"{field}\0" for field in fields).encode()
    return _LENGTH.pack(len(payload)) + payload


def encode_handshake_reply(version: int, connection_time: str) -> bytes:
    """The server's answer to the hello: exactly ``[version, connectionTime]``."""
    return encode_frame([str(version), connection_time])


def encode_client_hello(min_v: int, max_v: int, options: str = "") -> bytes:
    """What a client sends first: magic plus one frame ``v<min>..<max>[ options]``."""
    text = f"v{min_v}..{max_v}" + (f" {options}" if options else "")
    payload = text.encode()
    return MAGIC + _LENGTH.pack(len(payload)) + payload


# ---------------------------------------------------------------- readers


class _FrameBuffer:
    """Accumulates bytes and cuts length-prefixed payloads out of them."""

    def __init__(self, max_frame: int = MAX_FRAME_SIZE) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    def _next_payload(self, limit: int) -> bytes | None:
        if len(self._buf) < 4:
            return None
        (size,) = _LENGTH.unpack_from(self._buf)
        if size > limit:
            raise ProtocolError(f"frame of {size} bytes exceeds the {limit}-byte limit")
        if len(self._buf) < 4 + size:
            return None
        payload = bytes(self._buf[4 : 4 + size])
        del self._buf[: 4 + size]
        return payload

    def _next_fields(self) -> list[str] | None:
        payload = self._next_payload(self._max_frame)
        return None if payload is None else split_fields(payload)


def split_fields(payload: bytes) -> list[str]:
    """Split a frame payload on ``\\0`` and drop the empty tail element."""
    try:
        text = payload.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"frame is not valid UTF-8: {exc}") from exc
    return text.split("\0")[:-1]


class ClientFrameReader(_FrameBuffer):
    """Client side of a connection: every message is a frame of fields."""

    def next_event(self) -> list[str] | None:
        """The next complete message's fields, or None if more bytes are needed."""
        return self._next_fields()


class ServerFrameReader(_FrameBuffer):
    """Server side of a connection: magic, one hello frame, then frames of fields."""

    def __init__(self, max_frame: int = MAX_FRAME_SIZE) -> None:
        super().__init__(max_frame)
        self._magic_seen = False
        self._hello_seen = False

    def next_event(self) -> Hello | list[str] | None:
        """The Hello first, then each message's fields; None until one is complete."""
        if self._hello_seen:
            return self._next_fields()
        if not self._magic_seen and not self._take_magic():
            return None
        payload = self._next_payload(MAX_HELLO_SIZE)
        if payload is None:
            return None
        self._hello_seen = True
        return parse_hello(payload)

    def _take_magic(self) -> bool:
        head = bytes(self._buf[: len(MAGIC)])
        if not MAGIC.startswith(head):
            raise ProtocolError(f"bad magic {head!r}, expected {MAGIC!r}")
        if len(head) < len(MAGIC):
            return False
        del self._buf[: len(MAGIC)]
        self._magic_seen = True
        return True


def parse_hello(payload: bytes) -> Hello:
    """Parse ``v157..178`` (optionally `` +PACEAPI``) into a Hello."""
    text = payload.rstrip(b"\0").decode("ascii", errors="replace")
    match = _HELLO_RE.fullmatch(text)
    if match is None:
        raise ProtocolError(f"unparsable client version range {text!r}")
    low, high = int(match[1]), int(match[2])
    if low > high:
        raise ProtocolError(f"empty client version range {text!r}")
    return Hello(low, high, (match[3] or "").strip())


# ---------------------------------------------------------------- formatting


def fmt_int(value: int | None) -> str:
    """An int field; None is the empty field."""
    return "" if value is None else str(int(value))


def fmt_bool(value: bool) -> str:
    """Booleans are ``1`` / ``0``."""
    return "1" if value else "0"


def fmt_qty(value: float) -> str:
    """A size: ``100`` when integral (ibapi 9.81 needs it), else ``0.5``."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def fmt_price(value: float | None, unset: str = "") -> str:
    """A double as Java prints it (``196.52``, ``0.0``); None gives ``unset``."""
    if value is None or value == UNSET_DOUBLE:
        return unset
    if math.isinf(value):
        return "Infinite"
    return repr(float(value))


def fmt_unset_price(value: float | None) -> str:
    """A double whose unset form is IB's UNSET_DOUBLE literal."""
    return fmt_price(value, UNSET_DOUBLE_TEXT)


# ---------------------------------------------------------------- parsing


def parse_int(text: str, field: str, default: int = 0) -> int:
    """An int field; empty or UNSET_INTEGER gives ``default``."""
    if text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise DecodeError(f"{field}: not an integer: {text!r}") from exc
    return default if value == UNSET_INTEGER else value


def parse_float(text: str, field: str) -> float | None:
    """A double field; empty or UNSET_DOUBLE gives None, ``Infinite`` gives inf."""
    if text == "":
        return None
    if text == "Infinite":
        return math.inf
    try:
        value = float(text)
    except ValueError as exc:
        raise DecodeError(f"{field}: not a number: {text!r}") from exc
    if math.isnan(value):
        raise DecodeError(f"{field}: not a number: {text!r}")
    return None if value == UNSET_DOUBLE else value


def parse_bool(text: str, field: str, default: bool = False) -> bool:
    """A ``1`` / ``0`` field; empty gives ``default``."""
    return default if text == "" else parse_int(text, field) != 0


class FieldReader:
    """Reads one message's fields in order; errors name the message and field."""

    def __init__(self, fields: Sequence[str], message: str, start: int = 1) -> None:
        self._fields = fields
        self._pos = start
        self.message = message

    def _name(self, name: str) -> str:
        return f"{self.message}.{name}"

    def read_str(self, name: str) -> str:
        """The next field as text."""
        if self._pos >= len(self._fields):
            raise DecodeError(f"{self._name(name)}: missing field #{self._pos}")
        self._pos += 1
        return self._fields[self._pos - 1]

    def read_int(self, name: str, default: int = 0) -> int:
        """The next field as an int."""
        return parse_int(self.read_str(name), self._name(name), default)

    def read_opt_float(self, name: str) -> float | None:
        """The next field as a double, None when empty or unset."""
        return parse_float(self.read_str(name), self._name(name))

    def read_float(self, name: str, default: float = 0.0) -> float:
        """The next field as a double, ``default`` when empty or unset."""
        value = self.read_opt_float(name)
        return default if value is None else value

    def read_bool(self, name: str, default: bool = False) -> bool:
        """The next field as a boolean."""
        return parse_bool(self.read_str(name), self._name(name), default)

    def read_count(self, name: str, width: int = 1) -> int:
        """A repeat count whose ``width``-field groups must fit in the message."""
        count = self.read_int(name)
        if count < 0 or count * width > len(self._fields) - self._pos:
            raise DecodeError(f"{self._name(name)}: bad count {count}")
        return count

    def skip(self, count: int, name: str) -> None:
        """Skip ``count`` fields the simulator does not use."""
        if self._pos + count > len(self._fields):
            raise DecodeError(f"{self._name(name)}: missing field #{len(self._fields)}")
        self._pos += count

    def finish(self) -> None:
        """Fail if fields are left over (a layout or version mismatch)."""
        extra = len(self._fields) - self._pos
        if extra:
            raise DecodeError(f"{self.message}: {extra} unexpected trailing field(s)")


def read_contract(r: FieldReader) -> ContractQuery:
    """The 12-field contract block (conId … tradingClass) that reqMktData, reqMktDepth,
    reqContractDetails, reqHistoricalData and placeOrder share."""
    return ContractQuery(
        con_id=r.read_int("conId"),
        symbol=r.read_str("symbol"),
        sec_type=r.read_str("secType"),
        last_trade_date=r.read_str("lastTradeDateOrContractMonth"),
        strike=r.read_float("strike"),
        right=r.read_str("right"),
        multiplier=r.read_str("multiplier"),
        exchange=r.read_str("exchange"),
        primary_exchange=r.read_str("primaryExchange"),
        currency=r.read_str("currency"),
        local_symbol=r.read_str("localSymbol"),
        trading_class=r.read_str("tradingClass"),
    )
