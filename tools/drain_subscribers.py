# Opens N WebSocket subscribers and drains them (counts bytes) for D seconds.
import socket, selectors, sys, time, json, urllib.request, base64, os
host, port, key, n, dur = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
tok = json.loads(urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/auth/token", data=json.dumps({"api_key": key}).encode())).read())["token"]
sel = selectors.DefaultSelector(); socks = []
for i in range(n):
    s = socket.create_connection((host, port))
    k = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws/ticker HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {k}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {tok}\r\n\r\n".encode())
    s.setblocking(False); sel.register(s, selectors.EVENT_READ); socks.append(s)
total = 0; t0 = time.time()
while time.time() - t0 < dur:
    for k, _ in sel.select(0.5):
        try:
            d = k.fileobj.recv(1 << 16); total += len(d)
        except BlockingIOError: pass
print(f"client_bytes={total}")
