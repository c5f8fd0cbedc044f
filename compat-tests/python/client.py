#!/usr/bin/python3
"""A python-socketio (Debian's python3-socketio, sync socketio.Client) client for compat-tests/python.test.js.

It prints one JSON object per line on stdout, {"step": NAME, ...}, and the Node test asserts on them. All printing
is done by the main thread; the event handlers only put what they get into an inbox. Every wait is bounded, and a
watchdog ends the process (exit 3) if the whole run takes longer than --deadline seconds.

The token comes from the environment variable SWITCHBOARD_TOKEN (unset: connect without a token).

--transport polling | websocket: only that one; default: python-engineio's default, polling then the upgrade.

--mode session (default):
  connect (auth={"token": ...}) -> "connect" {sid, transport}
  the server's first event      -> "session" {data, extra}
  join-room --room with ack     -> "join" {ack}
  message with ack              -> "message" {ack, clientId}
  its own message back          -> "own-message" {event, extra}  (the room includes the sender)
  then                          -> "ready": the Node side now sends a message to the room from another client
  that message                  -> "broadcast" {event, extra}  (the first message event not sent by this user)
  then                          -> "transport" {transport}  (default transports: once upgraded, waited for, bounded)
  disconnect                    -> "disconnect" {}  (its disconnect event came)
  data/event: an event's first argument; extra: the arguments after it, i.e. the connection state recovery offset
  the server appends to every event as Node's server does, which python-socketio hands to the handlers.
--mode refused:
  connect, expecting a refusal  -> "connect_error" {data, exception}  (data: the connect_error handler's argument)
--mode versions: only the first line, "start" {python, executable, versions}, which every mode prints.
On any failure: "error" {error} and exit 1.
"""
import argparse
import importlib.metadata
import json
import os
import sys
import threading
import time

import socketio


def out(step, **fields):
    sys.stdout.write(json.dumps({"step": step, **fields}) + "\n")
    sys.stdout.flush()


class Inbox:
    """Events received by handlers, as (name, args) in arrival order, for the main thread to wait on."""

    def __init__(self):
        self.cond = threading.Condition()
        self.items = []

    def put(self, name, *args):
        with self.cond:
            self.items.append((name, list(args)))
            self.cond.notify_all()

    def take(self, pred, timeout, what):
        """Removes and returns the first (name, args) for which pred holds; raises after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, item in enumerate(self.items):
                    if pred(*item):
                        return self.items.pop(i)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out after %gs waiting for %s (received: %s)" % (timeout, what, json.dumps(self.items)))
                self.cond.wait(left)


def make_client(inbox):
    sio = socketio.Client(reconnection=False, logger=bool(os.environ.get("PY_DEBUG")),
                          engineio_logger=bool(os.environ.get("PY_DEBUG")))
    sio.on("connect", lambda: inbox.put("connect"))
    sio.on("connect_error", lambda *args: inbox.put("connect_error", *args))
    sio.on("disconnect", lambda *args: inbox.put("disconnect", *args))
    for name in ("session", "message", "user-joined", "user-left"):
        sio.on(name, (lambda n: lambda *args: inbox.put(n, *args))(name))
    return sio


def dist_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def auth_of(token):
    return {"token": token} if token is not None else None


def message_where(cond):
    """An inbox predicate: a "message" event whose first argument is an object satisfying cond."""
    return lambda n, a: n == "message" and bool(a) and isinstance(a[0], dict) and cond(a[0])


def session(args, token):
    inbox = Inbox()
    sio = make_client(inbox)
    sio.connect(args.url, auth=auth_of(token), transports=[args.transport] if args.transport != "default" else None,
                wait_timeout=args.timeout)
    out("connect", sid=sio.get_sid(), transport=sio.transport())

    _, (data, *extra) = inbox.take(lambda n, a: n == "session" and a, args.timeout, "the session event")
    out("session", data=data, extra=extra)

    out("join", ack=sio.call("join-room", args.room, timeout=args.timeout))

    client_id = "py-%s-%d" % (args.transport, os.getpid())
    ack = sio.call("message", {"roomId": args.room, "text": args.text, "clientId": client_id}, timeout=args.timeout)
    out("message", ack=ack, clientId=client_id)
    _, (own, *extra) = inbox.take(message_where(lambda m: m.get("clientId") == client_id), args.timeout,
                                  "its own message event")
    out("own-message", event=own, extra=extra)

    me = (data or {}).get("userId")
    out("ready")
    _, (other, *extra) = inbox.take(message_where(lambda m: m.get("userId") != me), args.timeout,
                                    "a message from another user")
    out("broadcast", event=other, extra=extra)

    # the transport at the end: unchanged when only one is allowed; with the default (polling first, then the
    # upgrade in the background) the upgrade has had time to happen, and is waited for up to --timeout seconds
    deadline = time.monotonic() + args.timeout
    while args.transport == "default" and sio.transport() != "websocket" and time.monotonic() < deadline:
        time.sleep(0.05)
    out("transport", transport=sio.transport())

    sio.disconnect()
    try:
        inbox.take(lambda n, a: n == "disconnect", args.timeout, "the disconnect event")
        out("disconnect")
    finally:
        # python-engineio's threads end with the connection; wait() returns once they have
        waiter = threading.Thread(target=sio.wait, daemon=True)
        waiter.start()
        waiter.join(args.timeout)


def refused(args, token):
    inbox = Inbox()
    sio = make_client(inbox)
    exc = None
    try:
        # wait=False: the call returns once Engine.IO is connected and the namespace answer comes as an event
        sio.connect(args.url, auth=auth_of(token), transports=[args.transport] if args.transport != "default" else None,
                    wait=False)
    except socketio.exceptions.ConnectionError as e:  # a refusal during the Engine.IO handshake itself
        exc = str(e)
    name, data = inbox.take(lambda n, a: n in ("connect", "connect_error"), args.timeout, "connect or connect_error")
    if name == "connect":
        sio.disconnect()
        raise RuntimeError("connected although the server should have refused the connection")
    out("connect_error", data=data[0] if len(data) == 1 else data, exception=exc)
    sio.disconnect()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--transport", choices=["polling", "websocket", "default"], required=True)
    p.add_argument("--mode", choices=["session", "refused", "versions"], default="session")
    p.add_argument("--room", default="python")
    p.add_argument("--text", default="hello from python")
    p.add_argument("--timeout", type=float, default=10.0, help="bound of each wait, seconds")
    p.add_argument("--deadline", type=float, default=60.0, help="bound of the whole run, seconds")
    args = p.parse_args()

    def expire():
        out("error", error="deadline of %gs exceeded" % args.deadline)
        os._exit(3)

    watchdog = threading.Timer(args.deadline, expire)
    watchdog.daemon = True
    watchdog.start()

    out("start", python=sys.version.split()[0], executable=sys.executable,
        versions={d: dist_version(d) for d in ("python-socketio", "python-engineio", "websocket-client", "requests")})
    try:
        if args.mode == "session":
            session(args, os.environ.get("SWITCHBOARD_TOKEN"))
        elif args.mode == "refused":
            refused(args, os.environ.get("SWITCHBOARD_TOKEN"))
    except Exception as e:  # reported to the Node side, which shows it in the failure
        out("error", error="%s: %s" % (type(e).__name__, e))
        sys.stdout.flush()
        os._exit(1)
    out("done")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
