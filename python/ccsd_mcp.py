"""Write a ccsd MCP in Python: libccsd_mcp (the C library, include/ccsd_mcp.h) through ctypes.

Nothing to compile: put this file on the Python path and libccsd_mcp.so where the dynamic
loader finds it (or name its path in the LIBCCSD_MCP_PATH environment variable; not a CCSD_*
name, which ccsd's settings would read as an override).

    import ccsd_mcp

    with ccsd_mcp.attach("ccsd.toml") as mcp:
        for req in mcp:                      # requests, connect/disconnect notices, forever
            if req.kind == ccsd_mcp.DATA:
                mcp.reply(req, req.payload)  # echo

A request's payload is the whole client packet, framing included; a reply is written to the
client as it is. Replies are published in batches (before the endpoint waits, and every 16
records). One MCP attaches to a set of lanes at a time: a second one raises McpError (BUSY).
An Mcp object is not thread-safe: use it from one thread. docs/mcp.md has the whole story.
"""

import ctypes
import ctypes.util
import ipaddress
import os

__all__ = [
    "attach", "attach_dir", "Mcp", "Request", "McpError",
    "DATA", "CONNECT", "DISCONNECT", "CLOSE", "CUSTOM",
    "TCP", "UDP", "AT_MOST_ONCE", "AT_LEAST_ONCE",
]

# Record kinds, transports, delivery modes: the values of ccsd_mcp.h.
DATA, CONNECT, DISCONNECT, CLOSE, CUSTOM = 1, 2, 3, 4, 5
NONE, TCP, UDP = 0, 1, 2
AT_MOST_ONCE, AT_LEAST_ONCE = 0, 1
_CLOSE_AFTER_FLUSH, _CLOSE_FORCE = 0, 1
_ERRORS = {
    -1: "INVALID", -2: "NOT_READY", -3: "BUSY", -4: "LANE",
    -5: "TOO_LARGE", -6: "IO", -7: "SETTINGS", -8: "INTERNAL",
}
# How long one wait inside the iterator lasts, so that Ctrl-C and signal handlers run.
_WAIT_MS = 200


class Record(ctypes.Structure):
    """ccsd_mcp_record, field for field (72 bytes on 64-bit targets)."""

    _fields_ = [
        ("flow", ctypes.c_uint64),
        ("timestamp_ns", ctypes.c_uint64),
        ("echo", ctypes.c_uint64 * 2),
        ("payload", ctypes.c_void_p),
        ("payload_len", ctypes.c_uint32),
        ("listen_port", ctypes.c_uint16),
        ("peer_port", ctypes.c_uint16),
        ("peer_addr", ctypes.c_uint8 * 16),
        ("kind", ctypes.c_uint8),
        ("code", ctypes.c_uint8),
        ("transport", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8 * 5),
    ]


def _load():
    path = os.environ.get("LIBCCSD_MCP_PATH") or ctypes.util.find_library("ccsd_mcp") or "libccsd_mcp.so"
    lib = ctypes.CDLL(path)
    handle, rec_p, c_int = ctypes.c_void_p, ctypes.POINTER(Record), ctypes.c_int
    signatures = {
        "ccsd_mcp_attach": (c_int, [ctypes.c_char_p, c_int, ctypes.POINTER(handle)]),
        "ccsd_mcp_attach_dir": (c_int, [ctypes.c_char_p, ctypes.c_char_p, c_int, ctypes.POINTER(handle)]),
        "ccsd_mcp_detach": (None, [handle]),
        "ccsd_mcp_recv": (c_int, [handle, rec_p, c_int]),
        "ccsd_mcp_reply": (c_int, [handle, rec_p, ctypes.c_char_p, ctypes.c_size_t]),
        "ccsd_mcp_close": (c_int, [handle, ctypes.c_uint64, c_int]),
        "ccsd_mcp_send": (c_int, [handle, rec_p]),
        "ccsd_mcp_flush": (c_int, [handle]),
        "ccsd_mcp_commit": (c_int, [handle]),
        "ccsd_mcp_set_delivery": (c_int, [handle, c_int]),
        "ccsd_mcp_wait_fd": (c_int, [handle]),
        "ccsd_mcp_prepare_wait": (c_int, [handle]),
        "ccsd_mcp_request_lanes": (ctypes.c_uint, [handle]),
        "ccsd_mcp_epoch": (ctypes.c_uint64, [handle]),
        "ccsd_mcp_last_error": (ctypes.c_char_p, []),
        "ccsd_mcp_strerror": (ctypes.c_char_p, [c_int]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


_lib = _load()


class McpError(Exception):
    """A libccsd_mcp call failed: `code` is the CCSD_MCP_E_* value, `name` its name."""

    def __init__(self, code):
        self.code = code
        self.name = _ERRORS.get(code, "UNKNOWN")
        super().__init__(f"{self.name}: {_lib.ccsd_mcp_last_error().decode(errors='replace')}")


def _check(rc):
    if rc < 0:
        raise McpError(rc)
    return rc


class Request:
    """A record from ccsd: `kind`, `flow`, `code`, `payload` (bytes), `peer` (address, port),
    `listen_port`, `transport`, `timestamp_ns`."""

    __slots__ = ("_rec", "payload")

    def __init__(self, rec):
        self._rec = Record.from_buffer_copy(rec)
        self.payload = ctypes.string_at(rec.payload, rec.payload_len) if rec.payload_len else b""

    kind = property(lambda self: self._rec.kind)
    flow = property(lambda self: self._rec.flow)
    code = property(lambda self: self._rec.code)
    listen_port = property(lambda self: self._rec.listen_port)
    transport = property(lambda self: self._rec.transport)
    timestamp_ns = property(lambda self: self._rec.timestamp_ns)

    @property
    def peer(self):
        ip = ipaddress.IPv6Address(bytes(self._rec.peer_addr))
        return (str(ip.ipv4_mapped or ip), self._rec.peer_port)

    def __repr__(self):
        return f"Request(kind={self.kind}, flow={self.flow:#018x}, code={self.code}, payload={self.payload[:32]!r})"


class Mcp:
    """An attached endpoint; iterate over it for requests. Use attach() or attach_dir()."""

    def __init__(self, handle):
        self._h = handle
        self._rec = Record()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()

    def __del__(self):
        try:
            self.detach()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass

    def __iter__(self):
        while True:
            req = self.recv(_WAIT_MS / 1000)
            if req is not None:
                yield req

    def recv(self, timeout=None):
        """The next record, or None when none came within `timeout` seconds (None: wait)."""
        ms = -1 if timeout is None else int(timeout * 1000)
        if _check(_lib.ccsd_mcp_recv(self._h, ctypes.byref(self._rec), ms)) == 0:
            return None
        return Request(self._rec)

    def reply(self, req, data):
        """Queues `data` (bytes-like) for the client `req` came from."""
        data = data if isinstance(data, bytes) else bytes(data)
        _check(_lib.ccsd_mcp_reply(self._h, ctypes.byref(req._rec), data, len(data)))

    def close(self, flow, force=False):
        """Asks ccsd to close `flow`: after the replies queued before, or at once (`force`)."""
        _check(_lib.ccsd_mcp_close(self._h, flow, _CLOSE_FORCE if force else _CLOSE_AFTER_FLUSH))

    def send(self, kind, payload=b"", *, flow=0, code=0, listen_port=0, like=None):
        """Queues any record: a custom record (kind CUSTOM, code, listen_port) or data to a flow
        stored earlier (server push; `like` copies the connection fields of a Request)."""
        rec = Record.from_buffer_copy(like._rec) if like is not None else Record()
        rec.kind, rec.code = kind, code
        if like is None:
            rec.flow, rec.listen_port = flow, listen_port
            rec.transport = NONE if kind == CUSTOM else TCP
        buf = ctypes.create_string_buffer(payload, len(payload))
        rec.payload, rec.payload_len = ctypes.cast(buf, ctypes.c_void_p), len(payload)
        _check(_lib.ccsd_mcp_send(self._h, ctypes.byref(rec)))

    def flush(self):
        """Publishes the queued replies now."""
        _check(_lib.ccsd_mcp_flush(self._h))

    def commit(self):
        """At least once: every request taken so far is answered; publish, then release them."""
        _check(_lib.ccsd_mcp_commit(self._h))

    def set_delivery(self, delivery):
        """AT_MOST_ONCE (default) or AT_LEAST_ONCE: see docs/protocol.md, Delivery guarantees."""
        _check(_lib.ccsd_mcp_set_delivery(self._h, delivery))

    def fileno(self):
        """A descriptor for select/selectors/asyncio: readable when records arrive after
        prepare_wait() returned True."""
        return _check(_lib.ccsd_mcp_wait_fd(self._h))

    def prepare_wait(self):
        """Publishes replies; True when the caller may sleep on fileno(), False when records wait."""
        return _check(_lib.ccsd_mcp_prepare_wait(self._h)) == 1

    @property
    def request_lanes(self):
        return _lib.ccsd_mcp_request_lanes(self._h)

    @property
    def epoch(self):
        return _lib.ccsd_mcp_epoch(self._h)

    def detach(self):
        """Publishes what is queued and lets the lanes go (also on `with` exit)."""
        if getattr(self, "_h", None):
            _lib.ccsd_mcp_detach(self._h)
            self._h = None


def _timeout_ms(timeout):
    return -1 if timeout is None else int(timeout * 1000)


def attach(settings_file=None, timeout=None, delivery=AT_MOST_ONCE):
    """Attaches to the lanes ccsd's settings file names, waiting up to `timeout` seconds (None:
    as long as it takes) for ccsd to create them."""
    h = ctypes.c_void_p()
    path = None if settings_file is None else os.fsencode(settings_file)
    _check(_lib.ccsd_mcp_attach(path, _timeout_ms(timeout), ctypes.byref(h)))
    mcp = Mcp(h)
    mcp.set_delivery(delivery)
    return mcp


def attach_dir(directory, name, timeout=None, delivery=AT_MOST_ONCE):
    """Attaches to the lanes {directory}/{name}.* (queues.dir, queues.name)."""
    h = ctypes.c_void_p()
    _check(_lib.ccsd_mcp_attach_dir(os.fsencode(directory), name.encode(), _timeout_ms(timeout), ctypes.byref(h)))
    mcp = Mcp(h)
    mcp.set_delivery(delivery)
    return mcp
