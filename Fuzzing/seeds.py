#!/usr/bin/env python3
"""Writes the seed inputs of the pipeline and edge targets into Fuzzing/Corpus/<target>/.

The inputs are structured (a flags byte, frame records, binary policy records), so they are
generated here rather than typed; run `python3 Fuzzing/seeds.py` after changing a layout.
Regression reproducers found by a fuzzing run are committed as libFuzzer wrote them and are
not written here; the hand-made ones are.
"""
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Corpus")
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>".encode()
OPEN_EXAMPLE = f"<open xmlns='{FRAMING}' to='example.com' version='1.0' xml:lang='en'/>".encode()
CLOSE = f"<close xmlns='{FRAMING}'/>".encode()
MESSAGE = b"<message xmlns='jabber:client' to='juliet@localhost' type='chat'><body>hi</body></message>"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


# ---- WebSocketFrameFuzzer ------------------------------------------------------------------
# flags: 0x01 offer deflate, 0x02 structured, 0x04 small limits, 0x08 compress everything,
# 0x10 served but full, 0x20 deflate off, 0x40/0x80 chunking.
# record: header (FIN 0x80, RSV 0x70, opcode), mode, length, payload, [cut if 0x10], [seconds if 0x80]
# mode: bits 1-2 deflate kind (1 sync, 2 sync + final empty block, 3 stored final block),
# 0x08 flush marker, 0x10 fragment, 0x20 long length, 0x40 unmasked, 0x80 pause.

def record(header, payload=b"", mode=0, cut=None, seconds=None):
    out = bytes([header, mode, len(payload)]) + payload
    if mode & 0x10:
        out += bytes([cut or 0])
    if mode & 0x80:
        out += bytes([seconds or 0])
    return out


TEXT, BINARY, CLOSE_OP, PING, PONG = 0x81, 0x82, 0x88, 0x89, 0x8A
close_1000 = struct.pack(">H", 1000)

ws = {
    "open-close.bin": bytes([0x02]) + record(TEXT, OPEN) + record(TEXT, CLOSE) + record(CLOSE_OP, close_1000),
    "open-stanza-unserved.bin": bytes([0x02]) + record(TEXT, OPEN_EXAMPLE) + record(TEXT, MESSAGE),
    "deflate-open.bin": bytes([0x0B]) + record(TEXT | 0x40, OPEN, mode=0x02) + record(TEXT | 0x40, CLOSE, mode=0x02),
    "deflate-flush-marker.bin": bytes([0x03]) + record(TEXT | 0x40, OPEN, mode=0x0A),
    "fragmented-open.bin": bytes([0x42]) + record(0x81, OPEN, mode=0x10, cut=21) + record(TEXT, CLOSE),
    "fragmented-deflate.bin": bytes([0x03]) + record(0xC1, OPEN, mode=0x12, cut=7),
    "ping-pong.bin": bytes([0x02]) + record(PING, b"are you there") + record(PONG, b"") + record(TEXT, OPEN),
    "ping-timeout.bin": bytes([0x02]) + record(TEXT, OPEN, mode=0x80, seconds=30) + record(PONG, b"", mode=0x80, seconds=30),
    "close-timeout.bin": bytes([0x02]) + record(TEXT, OPEN) + record(TEXT, CLOSE, mode=0x80, seconds=6),
    "binary.bin": bytes([0x02]) + record(BINARY, OPEN),
    "unmasked.bin": bytes([0x02]) + record(TEXT, OPEN, mode=0x40),
    "rsv2.bin": bytes([0x02]) + record(TEXT | 0x20, OPEN),
    "rsv1-uncompressed.bin": bytes([0x02]) + record(TEXT | 0x40, OPEN),
    "long-length.bin": bytes([0x82]) + record(TEXT, OPEN, mode=0x20),
    "small-limits.bin": bytes([0x06]) + record(TEXT, OPEN) + record(TEXT, b"<message xmlns='jabber:client'>" + b"a" * 200 + b"</message>"),
    "served-full.bin": bytes([0x12]) + record(TEXT, OPEN),
    "deflate-declined.bin": bytes([0x23]) + record(TEXT | 0x40, OPEN, mode=0x02),
    "stream-header.bin": bytes([0x02]) + record(TEXT, b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"),
    "close-in-fragments.bin": bytes([0x02]) + record(0x01, OPEN[:10]) + record(CLOSE_OP, close_1000) + record(0x80, OPEN[10:]),
}
# Raw mode: the client's bytes as they are (one masked text frame with <open/>, then a close).
def raw_frame(opcode, payload, key=b"\x01\x02\x03\x04"):
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        length = bytes([0x80 | len(payload)])
    else:
        length = bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    return bytes([0x80 | opcode]) + length + key + masked


ws["raw-open-close.bin"] = bytes([0x00]) + raw_frame(1, OPEN) + raw_frame(8, close_1000)
# Regression (fixed in df724e9): a payload ending its DEFLATE stream with BFINAL=1 made
# PerMessageDeflateCodec.decompress spin forever. Both final-block shapes, and a raw copy of zlib's
# own Z_FINISH output.
ws["regression-deflate-bfinal.bin"] = bytes([0x03]) + record(TEXT | 0x40, OPEN, mode=0x04) + record(TEXT | 0x40, CLOSE, mode=0x06)
z = zlib.compressobj(6, zlib.DEFLATED, -15)
finished = z.compress(OPEN) + z.flush(zlib.Z_FINISH)
ws["regression-deflate-bfinal-raw.bin"] = bytes([0x01]) + bytes([0xC1]) + raw_frame(1, finished)[1:]
# Finding (not fixed): a reserved opcode (3) is ignored instead of failing the connection.
ws["regression-reserved-opcode.bin"] = bytes([0x02]) + record(0x83, b"junk") + record(TEXT, OPEN)
for name, data in ws.items():
    write("WebSocketFrameFuzzer", name, data)

# ---- HTTPRequestFuzzer ---------------------------------------------------------------------
# flags: 0x01 trusted peer, 0x02 Forwarded believed, 0x04/0x08 CORS (any, origins, disabled,
# origins + public host), 0x10 served but full, 0x20 small limits, 0x40/0x80 chunking.

def bosh(body, headers="", host="localhost:5280", path="/http-bind"):
    body = body.encode() if isinstance(body, str) else body
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n"
            f"Content-Type: text/xml; charset=UTF-8\r\n{headers}Content-Length: {len(body)}\r\n\r\n").encode() + body


CREATE = ("<body rid='2863431473' xmlns='http://jabber.org/protocol/httpbind' to='localhost' xml:lang='en' "
          "wait='60' hold='1' content='text/xml; charset=utf-8' ver='1.6' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>")
upgrade = (f"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost:5280\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n"
           f"Origin: http://localhost:5280\r\n")
chunked_body = CREATE.encode()
chunked = (b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
           b"Content-Type: text/xml\r\n\r\n" + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in
           (chunked_body[:40], chunked_body[40:100], chunked_body[100:])) + b"0\r\n\r\n")
http = {
    "bosh-create-strophe.bin": bytes([0x00]) + bosh(CREATE, "Origin: http://localhost:8080\r\nConnection: keep-alive\r\n"),
    "bosh-create-served-full.bin": bytes([0x50]) + bosh(CREATE.replace("localhost", "example.com"), host="example.com"),
    "bosh-create-node-path.bin": bytes([0x10]) + bosh(CREATE, path="/http-bind/node1"),
    "bosh-unknown-sid.bin": bytes([0x10]) + bosh("<body rid='2863431474' sid='node2.0123456789abcdef' xmlns='http://jabber.org/protocol/httpbind'/>"),
    "bosh-legacy-unserved.bin": bytes([0x00]) + bosh("<body rid='1' to='nowhere.example' content='text/html' xmlns='http://jabber.org/protocol/httpbind'/>"),
    "bosh-malformed.bin": bytes([0x00]) + bosh("<body rid='1' xmlns='http://jabber.org/protocol/httpbind'><message>"),
    "preflight-then-post.bin": bytes([0x04]) + (
        b"OPTIONS /http-bind HTTP/1.1\r\nHost: localhost:5280\r\nOrigin: https://app.example.com\r\n"
        b"Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n")
        + bosh(CREATE, "Origin: https://app.example.com\r\n"),
    "preflight-refused.bin": bytes([0x04]) + b"OPTIONS /http-bind HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\n\r\n",
    "chunked-expect.bin": bytes([0x80]) + chunked,
    "upgrade.bin": bytes([0x00]) + (upgrade + "\r\n").encode() + raw_frame(1, OPEN) + raw_frame(8, close_1000),
    "upgrade-deflate.bin": bytes([0x40]) + (upgrade + "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n").encode(),
    "upgrade-refused-origin.bin": bytes([0x04]) + (upgrade.replace("http://localhost:5280", "https://evil.example") + "\r\n").encode(),
    "upgrade-no-protocol.bin": bytes([0x00]) + (upgrade.replace("Sec-WebSocket-Protocol: xmpp\r\n", "") + "\r\n").encode(),
    "websocket-plain-get.bin": bytes([0x00]) + b"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "operations-pipelined.bin": bytes([0x00]) + b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:5280\r\n\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /readyz?probe=1 HTTP/1.0\r\n\r\n",
    "host-meta.bin": bytes([0x10]) + b"GET /.well-known/host-meta HTTP/1.1\r\nHost: example.com\r\n\r\nHEAD /.well-known/host-meta.json HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    "trusted-x-forwarded-for.bin": bytes([0x01]) + bosh(CREATE, "X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\nX-Forwarded-Proto: https\r\nForwarded: for=198.51.100.1;proto=https\r\n"),
    "trusted-forwarded.bin": bytes([0x03]) + bosh(CREATE, "Forwarded: for=\"[2001:db8::1]:4711\";proto=https, for=127.0.0.1\r\nX-Forwarded-For: 198.51.100.1\r\n"),
    "public-host-mismatch.bin": bytes([0x0C]) + bosh(CREATE, "Origin: https://evil.example\r\n", host="evil.example"),
    "body-too-large.bin": bytes([0x20]) + b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n<body",
    "expectation-failed.bin": bytes([0x00]) + b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nExpect: 200-ok\r\nContent-Length: 5\r\n\r\n<body",
    "method-not-allowed.bin": bytes([0x08]) + b"PUT /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\nGET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "prebind-off.bin": bytes([0x00]) + b"POST /prebind HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x\r\nContent-Length: 2\r\n\r\n{}",
    "garbage.bin": bytes([0x00]) + b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
    # Finding (NIO's, not fixed): a version other than 1.x gets NIO's 400 twice.
    "regression-nio-invalid-version-twice.bin": bytes([0x00]) + b"GET /healthz HTTP/2.0\r\n\r\n",
}
for name, data in http.items():
    write("HTTPRequestFuzzer", name, data)

# ---- HTTP2FrameFuzzer ---------------------------------------------------------------------
# flags: 0x01 trusted peer, 0x02 no client preface put in front, 0x10 served but full, 0x20 small
# limits, 0x40/0x80 chunking. The rest: frames (RFC 9113 §4.1), header blocks in HPACK literals
# without indexing or Huffman (RFC 7541 §6.2.2), so the fuzzer can edit names and values.

def h2_frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack(fields):
    out = b""
    for name, value in fields:
        name, value = name.encode(), value.encode()
        out += b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    return out


def request(stream, method, path, body=None, extra=()):
    fields = [(":method", method), (":scheme", "https"), (":authority", "localhost"), (":path", path)] + list(extra)
    if body is not None:
        fields += [("content-type", "text/xml; charset=utf-8"), ("content-length", str(len(body)))]
    flags = 0x4 | (0x1 if body is None else 0)
    out = h2_frame(0x1, flags, stream, hpack(fields))
    if body is not None:
        out += h2_frame(0x0, 0x1, stream, body)
    return out


SETTINGS = h2_frame(0x4, 0, 0, struct.pack(">HI", 0x3, 100) + struct.pack(">HI", 0x4, 65535))
SETTINGS_ACK = h2_frame(0x4, 0x1, 0, b"")
PING_FRAME = h2_frame(0x6, 0, 0, b"12345678")
create = CREATE.encode()
h2 = {
    "healthz.bin": bytes([0x00]) + SETTINGS + SETTINGS_ACK + request(1, "GET", "/healthz"),
    "head-metrics.bin": bytes([0x00]) + SETTINGS + request(1, "HEAD", "/metrics") + request(3, "GET", "/readyz"),
    "bosh-create-full.bin": bytes([0x10]) + SETTINGS + request(1, "POST", "/http-bind", create, [("origin", "https://app.example.com")]),
    "bosh-unserved.bin": bytes([0x00]) + SETTINGS + request(1, "POST", "/http-bind", create),
    "preflight.bin": bytes([0x00]) + SETTINGS + request(1, "OPTIONS", "/http-bind", None,
        [("origin", "https://app.example.com"), ("access-control-request-method", "POST")]),
    "body-too-large.bin": bytes([0x20]) + SETTINGS + request(1, "POST", "/http-bind", b"<body/>" * 60),
    "continuation.bin": bytes([0x00]) + SETTINGS + h2_frame(0x1, 0x1, 1, hpack([(":method", "GET"), (":scheme", "https")]))
        + h2_frame(0x9, 0x4, 1, hpack([(":authority", "localhost"), (":path", "/healthz")])),
    # A request cut by RST_STREAM CANCEL before its body, a PING and a connection WINDOW_UPDATE.
    "reset-and-ping.bin": bytes([0x00]) + SETTINGS
        + h2_frame(0x1, 0x4, 1, hpack([(":method", "POST"), (":scheme", "https"), (":authority", "localhost"), (":path", "/http-bind")]))
        + h2_frame(0x3, 0, 1, struct.pack(">I", 0x8)) + PING_FRAME + h2_frame(0x8, 0, 0, struct.pack(">I", 1 << 16)),
    "zero-window.bin": bytes([0x80]) + h2_frame(0x4, 0, 0, struct.pack(">HI", 0x4, 0)) + request(1, "GET", "/metrics"),
    "goaway.bin": bytes([0x00]) + SETTINGS + request(1, "GET", "/healthz") + h2_frame(0x7, 0, 0, struct.pack(">II", 1, 0)),
    "bad-magic.bin": bytes([0x02]) + b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "websocket-connect.bin": bytes([0x00]) + SETTINGS + h2_frame(0x1, 0x4, 1, hpack([(":method", "CONNECT"), (":protocol", "websocket"),
        (":scheme", "https"), (":authority", "localhost"), (":path", "/xmpp-websocket"), ("sec-websocket-protocol", "xmpp")])),
    # RFC 8441: an accepted WebSocket, then <open/> and a close frame in its DATA frames.
    "websocket-connect-open.bin": bytes([0x10]) + SETTINGS + h2_frame(0x1, 0x4, 1, hpack([(":method", "CONNECT"), (":protocol", "websocket"),
        (":scheme", "https"), (":authority", "localhost"), (":path", "/xmpp-websocket"), ("sec-websocket-protocol", "xmpp"),
        ("sec-websocket-version", "13"), ("origin", "https://localhost")]))
        + h2_frame(0x0, 0, 1, raw_frame(1, OPEN)) + h2_frame(0x0, 0x1, 1, raw_frame(8, close_1000)),
}
for name, data in h2.items():
    write("HTTP2FrameFuzzer", name, data)

# ---- EdgePolicyFuzzer ----------------------------------------------------------------------
# byte 0 % 3: 0 AddressPolicy, 1 ForwardedHeaders, 2 CORSPolicy (see the target for the records).
v4 = lambda text: bytes(int(part) for part in text.split("."))
edge = {
    "address-plain.bin": bytes([0, 0]) + bytes([0]) + v4("8.8.8.8") + bytes([0]) + v4("127.0.0.1")
    + bytes([1]) + bytes.fromhex("20014860000000000000000000008888") + bytes([1]) + bytes.fromhex("fe800000000000000000000000000001"),
    "address-allowlisted.bin": bytes([0, 1]) + bytes([16 << 1]) + v4("10.1.0.0") + bytes([0]) + v4("10.1.2.3") + bytes([4]) + v4("10.1.2.3"),
    # 127.0.0.1, 10.0.0.1 and 192.168.1.1 inside each IPv6 form that carries IPv4.
    "regression-embedded-ipv4-mapped-compat.bin": bytes([0, 0]) + bytes([2]) + v4("127.0.0.1") + bytes([3]) + v4("127.0.0.1"),
    "regression-embedded-ipv4-nat64.bin": bytes([0, 0]) + bytes([4]) + v4("10.0.0.1") + bytes([5 | (3 << 3)]) + v4("127.0.0.1") + bytes(10),
    "regression-embedded-ipv4-6to4.bin": bytes([0, 0]) + bytes([6]) + v4("192.168.1.1") + bytes(10),
    "regression-embedded-ipv4-teredo.bin": bytes([0, 0]) + bytes([7]) + v4("127.0.0.1") + v4("65.54.227.120") + bytes(4),
    # X-Forwarded-For behind loopback: header byte, trust byte, peer kind 2 (127.0.0.1), local, headers.
    "forwarded-xff.bin": bytes([1, 0, 1, 2, 0, 2]) + bytes([1 | 8, 2, 0, 0x01]) + bytes([2, 0, 0, 0]) + bytes([2, 5]) + b"https",
    "forwarded-rfc7239.bin": bytes([1, 1, 1 | 4, 2, 0, 2]) + bytes([0 | 8, 1, 0x22 | (1 << 5)]) + bytes(16) + bytes([0, 1, 8]) + b"for=_x;a",
    "forwarded-untrusted.bin": bytes([1, 0, 2, 4]) + v4("203.0.113.9") + bytes([0, 1, 1 | 8, 0, 0]) + bytes([1, 2, 3]),
    # CORS: configured count, strings, policy kind, choice, then what the choice reads.
    "cors-origins.bin": bytes([2, 1, 23]) + b"https://app.example.com" + bytes([2, 1 | 4, 1, 12]) + b"content-type",
    "cors-any-preflight.bin": bytes([2, 0, 1, 3 | 4 | 8, 10]) + b"http://x.y" + bytes([12]) + b"content-type" + bytes([3]) + b"x.y",
}
for name, data in edge.items():
    write("EdgePolicyFuzzer", name, data)
