"""A stand-in for systemd's notification socket (test/service/systemd-notify.test.ts).

Binds an AF_UNIX SOCK_DGRAM socket at argv[1] (a path, or @name for an
abstract socket, as NOTIFY_SOCKET spells them), prints "bound" once it
listens, then one JSON line per datagram: its text and the sender's pid as
the kernel vouches for it (SO_PASSCRED), which is what NotifyAccess=main
judges by. Exits on SIGTERM, or by itself after argv[2] seconds (default
30) so that a failed test never leaves it behind.
"""
import json
import os
import signal
import socket
import struct
import sys

address = sys.argv[1]
lifetime = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGALRM, lambda *_: sys.exit(3))
signal.setitimer(signal.ITIMER_REAL, lifetime)

sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
sock.bind("\0" + address[1:] if address.startswith("@") else address)
print("bound", flush=True)
ucred = struct.calcsize("3i")
while True:
    data, ancillary, _flags, _from = sock.recvmsg(4096, socket.CMSG_SPACE(ucred))
    pid = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", payload[:ucred])[0]
    print(json.dumps({"data": data.decode("utf-8", "replace"), "pid": pid}), flush=True)
