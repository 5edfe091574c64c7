"""Run an OpenStack service or command of Debian's packaged libraries (tests only; used by openstack.sh).

Run it with Debian's /usr/bin/python3, the interpreter that sees python3-nova & co.:

    /usr/bin/python3 openstack_run.py main NAME MODULE:FUNCTION [ARGS...]
        e.g. main nova-api nova.cmd.api:main --config-file nova.conf: sys.argv becomes [NAME, ARGS...]
    /usr/bin/python3 openstack_run.py wsgi keystone|placement --config FILE --port PORT [--host 127.0.0.1]
        serves Keystone's or Placement's WSGI application with a threaded wsgiref server.
        keystone:  FILE is keystone.conf (passed on as OS_KEYSTONE_CONFIG_FILES).
        placement: FILE is .../placement.conf (its directory becomes OS_PLACEMENT_CONFIG_DIR, the only way
                   Placement's WSGI entry point accepts a config location).

Under libfaketime (LD_PRELOAD, fake clock) time.sleep is replaced first: Python 3.11 sleeps with
clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which libfaketime 0.9.10 turns into EINVAL when
FAKETIME_DONT_FAKE_MONOTONIC=1 ("OSError: [Errno 22] Invalid argument" from time.sleep(0) in oslo.db).
"""

import importlib
import os
import sys
import types


def fix_sleep_under_faketime():
    if "faketime" not in os.environ.get("LD_PRELOAD", ""):
        return
    import select
    import time

    def sleep(secs, _select=select.select):
        if secs < 0:
            raise ValueError("sleep length must be non-negative")
        _select([], [], [], secs)  # a relative timeout: untouched by libfaketime without a rate

    time.sleep = sleep
    # eventlet's hubs and oslo.service re-import an unpatched `time` through eventlet.patcher.original('time'),
    # which looks here first. A copy, not `time` itself: eventlet's monkey patching replaces time.sleep in place.
    original = types.ModuleType("time")
    original.__dict__.update(time.__dict__)
    sys.modules["__original_module_time"] = original


def run_main(name, target, args):
    module, _, function = target.partition(":")
    sys.argv = [name, *args]
    return getattr(importlib.import_module(module), function)()


def serve_wsgi(args):
    import argparse
    import signal
    import socketserver
    from wsgiref import simple_server

    parser = argparse.ArgumentParser(prog="openstack_run.py wsgi")
    parser.add_argument("service", choices=["keystone", "placement"])
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    opts = parser.parse_args(args)
    config = os.path.abspath(opts.config)

    sys.argv = [opts.service]  # both apps hand sys.argv[1:] to oslo.config
    if opts.service == "keystone":
        os.environ["OS_KEYSTONE_CONFIG_FILES"] = config
        os.environ.pop("OS_KEYSTONE_CONFIG_DIR", None)
        from keystone.server import wsgi

        app = wsgi.initialize_public_application()
    else:
        if os.path.basename(config) != "placement.conf":
            raise SystemExit("placement: --config must name a file called placement.conf")
        os.environ["OS_PLACEMENT_CONFIG_DIR"] = os.path.dirname(config)
        from placement import wsgi

        app = wsgi.init_application()

    class Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 64

    class Handler(simple_server.WSGIRequestHandler):
        def address_string(self):  # no reverse DNS lookup
            return self.client_address[0]

    server = simple_server.make_server(opts.host, opts.port, app, server_class=Server, handler_class=Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{opts.service}: serving on http://{opts.host}:{opts.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    return 0


def main():
    fix_sleep_under_faketime()
    if len(sys.argv) >= 4 and sys.argv[1] == "main":
        return run_main(sys.argv[2], sys.argv[3], sys.argv[4:])
    if len(sys.argv) >= 2 and sys.argv[1] == "wsgi":
        return serve_wsgi(sys.argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
