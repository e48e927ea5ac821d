"""A minimal Foxglove WebSocket client on the standard library, for tests (no `websockets`).

Speaks just enough of RFC 6455 (handshake, masked client frames, unmasked server frames,
fragmentation, ping/pong, close) and of the Foxglove protocol (serverInfo, advertise,
subscribe, binary messageData) to check what a server streams.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time
from dataclasses import dataclass

SUBPROTOCOLS = ("foxglove.sdk.v1", "foxglove.websocket.v1")
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MESSAGE_DATA = 0x01  # server binary opcode: subscription id (u32), log time (u64 ns), payload


@dataclass
class Message:
    subscription_id: int
    log_time_ns: int
    payload: bytes


class FoxgloveClient:
    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Protocol: {', '.join(SUBPROTOCOLS)}\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"the server closed during the handshake: {head!r}")
            head += chunk
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise ConnectionError(f"handshake refused: {lines[0]}")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        expected = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        self.subprotocol = headers.get("sec-websocket-protocol", "")
        self.server_info: dict | None = None
        self.channels: dict[int, dict] = {}        # id -> advertised channel
        self.subscriptions: dict[int, int] = {}    # subscription id -> channel id
        self.messages: list[Message] = []
        self.other: list[dict] = []

    # ---- frames -------------------------------------------------------------------------
    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("connection closed")
            data += chunk
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _frame(self) -> tuple[int, bytes]:
        """One whole message (fragments joined); answers pings itself."""
        opcode, data = None, b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else None
            payload = self._exact(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            op = b0 & 0x0F
            if op == 0x9:  # ping
                self._send(0xA, payload)
                continue
            if op == 0x8:
                raise ConnectionError("the server closed the connection")
            if op != 0x0:
                opcode = op
            data += payload
            if b0 & 0x80:
                return opcode, data

    # ---- protocol -----------------------------------------------------------------------
    def poll(self, timeout_s: float) -> None:
        """Read whatever arrives for up to timeout_s seconds."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                opcode, data = self._frame()
            except (socket.timeout, TimeoutError):
                return
            self._handle(opcode, data)

    def _handle(self, opcode: int, data: bytes) -> None:
        if opcode == 0x1:
            message = json.loads(data)
            op = message.get("op")
            if op == "serverInfo":
                self.server_info = message
            elif op == "advertise":
                for channel in message["channels"]:
                    self.channels[channel["id"]] = channel
            elif op == "unadvertise":
                for channel_id in message["channelIds"]:
                    self.channels.pop(channel_id, None)
            else:
                self.other.append(message)
        elif opcode == 0x2 and data and data[0] == MESSAGE_DATA:
            subscription, log_time = struct.unpack("<IQ", data[1:13])
            self.messages.append(Message(subscription, log_time, data[13:]))

    def wait_for(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.poll(0.2)
        return True

    def topics(self) -> dict[str, dict]:
        return {c["topic"]: c for c in self.channels.values()}

    def subscribe(self, topic: str) -> int:
        channel = self.topics()[topic]
        subscription = len(self.subscriptions) + 1
        self.subscriptions[subscription] = channel["id"]
        self._send(0x1, json.dumps({"op": "subscribe",
                                    "subscriptions": [{"id": subscription, "channelId": channel["id"]}]}).encode())
        return subscription

    def received(self, subscription: int) -> list[Message]:
        return [m for m in self.messages if m.subscription_id == subscription]

    def close(self) -> None:
        try:
            self._send(0x8, struct.pack(">H", 1000))
        except OSError:
            pass
        self.sock.close()


def png_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) of the first PNG inside a payload (e.g. an encoded CompressedImage)."""
    start = payload.find(b"\x89PNG\r\n\x1a\n")
    if start < 0 or payload[start + 12:start + 16] != b"IHDR":
        return None
    return struct.unpack(">II", payload[start + 16:start + 24])
