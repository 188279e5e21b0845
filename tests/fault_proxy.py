"""A TCP proxy between the driver and a real simulated board that misbehaves on demand: the
link faults a serial line or a network can cause, applied to the frames of the real top."""

import socket
import struct
import threading
from collections import Counter, defaultdict

from squeezefpga import protocol as cmd
from squeezefpga.host.link import ReplyParser, RequestParser, encode_reply, encode_request
from squeezefpga.protocol import LINK_BAD_CRC, LINK_OK

__all__ = ["FaultProxy"]


class FaultProxy:
    """Serves ``socket://127.0.0.1:PORT`` (:attr:`url`) and forwards whole frames to the board
    at ``upstream`` (host, port), one upstream connection per client.

    ``faults[command byte]`` lists one-shot misbehaviours for the next requests carrying that
    command:

    - ``"corrupt"``: flip the reply's last CRC byte;
    - ``"drop"``: forward the request, swallow the reply;
    - ``"ignore"``: swallow the request (the board never sees it);
    - ``"bad_crc"``: forward the request with a broken CRC (the board answers BAD_CRC and does
      not execute it);
    - ``"exec_bad_crc"``: forward it, but answer BAD_CRC instead of the board's reply;
    - ``"stale"``: garbage and a reply with another sequence number before the real one;
    - ``"cut"``: lose the reply's last 3 bytes;
    - ``"hangup"``: close the client's connection instead of forwarding.

    ``silent`` swallows every request. ``reply_version`` rewrites the link version of every
    reply, ``port_version`` the host-port version in INFO replies.

    Members
    -------
    sent : Counter of command bytes forwarded to the board.
    writes : list of (address, length) of the WRITE_WEIGHTS commands forwarded.
    """

    def __init__(self, upstream):
        self.upstream = upstream
        self.faults = defaultdict(list)
        self.silent = False
        self.reply_version = None
        self.port_version = None
        self.sent = Counter()
        self.writes = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def close(self):
        self._stop.set()
        for thread in list(self._threads):
            thread.join(10)
        self._server.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            board = socket.create_connection(self.upstream, timeout=10)
            actions = {}                    # sequence number -> action on its reply
            for target, args in ((self._requests, (client, board, actions)),
                                 (self._replies, (client, board, actions))):
                thread = threading.Thread(target=target, args=args, daemon=True)
                self._threads.append(thread)
                thread.start()

    @staticmethod
    def _receive(sock):
        """Bytes, None if nothing came within 50 ms, b"" if the connection is closed."""
        try:
            sock.settimeout(0.05)
            return sock.recv(1 << 16)
        except TimeoutError:
            return None
        except OSError:                 # closed, here or by the other direction's thread
            return b""

    def _hang_up(self, client, board):
        for sock in (client, board):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _requests(self, client, board, actions):
        parser = RequestParser()
        while not self._stop.is_set():
            data = self._receive(client)
            if data is None:
                continue
            if not data:
                self._hang_up(client, board)
                return
            for request in parser.feed(data):
                if self.silent:
                    continue
                command = request.payload[0] if request.payload else None
                with self._lock:
                    queue = self.faults.get(command)
                    action = queue.pop(0) if queue else None
                if action == "ignore":
                    continue
                if action == "hangup":
                    self._hang_up(client, board)
                    return
                frame = encode_request(request.seq, request.payload, request.version)
                if action == "bad_crc":
                    frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
                actions[request.seq] = action
                with self._lock:
                    self.sent[command] += 1
                    if command == cmd.CMD_WRITE_WEIGHTS:
                        self.writes.append(struct.unpack_from("<II", request.payload, 1))
                try:
                    board.sendall(frame)
                except OSError:
                    return

    def _replies(self, client, board, actions):
        parser = ReplyParser()
        while not self._stop.is_set():
            data = self._receive(board)
            if data is None:
                continue
            if not data:
                return
            for reply in parser.feed(data):
                action = actions.pop(reply.seq, None)
                payload = reply.payload
                if (self.port_version is not None and reply.status == LINK_OK
                        and payload[:4] == cmd.INFO_MAGIC):
                    payload = payload[:4] + bytes([self.port_version]) + payload[5:]
                version = self.reply_version if self.reply_version is not None else reply.version
                frame = encode_reply(reply.seq, reply.status, payload, version)
                if action == "drop":
                    continue
                if action == "exec_bad_crc":
                    frame = encode_reply(reply.seq, LINK_BAD_CRC, b"", version)
                elif action == "corrupt":
                    frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
                elif action == "stale":
                    frame = (b"\x00\xa5junk" + encode_reply((reply.seq - 1) & 0xFF, LINK_OK,
                                                            b"\x00") + frame)
                elif action == "cut":
                    frame = frame[:-3]
                try:
                    client.sendall(frame)
                except OSError:
                    return
