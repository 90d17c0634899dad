"""A TCP forwarder, run inside a server's namespaces: LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT.

It stands for the VPC's route to a managed service: the RDS endpoint's name
resolves (the server's /etc/hosts) to LISTEN_HOST, and bytes go unchanged to
the test's PostgreSQL (TLS is between psql and PostgreSQL, end to end).
"""
import socket
import sys
import threading

listen_host, listen_port, target_host, target_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])


def pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((listen_host, listen_port))
server.listen(64)
while True:
    client, _ = server.accept()
    try:
        upstream = socket.create_connection((target_host, target_port), timeout=10)
    except OSError:
        client.close()
        continue
    upstream.settimeout(None)
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
