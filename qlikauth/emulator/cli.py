"""``qlikauth emulator`` (and ``python -m qlikauth.emulator``): run an emulated QPS node until
interrupted."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
from pathlib import Path

from .._parse import FALSE_WORDS, TRUE_WORDS, parse_bool
from ..exceptions import ConfigurationError
from .faults import FAULT_KINDS, Fault
from .proxy import METHODS, VirtualProxy

__all__ = ["add_arguments", "run", "parse_virtual_proxy", "parse_fault", "apply_fault_command"]

_KEYS = {
    "prefix": "prefix",
    "method": "method",
    "module": "module_uri",
    "module_uri": "module_uri",
    "header": "header_name",
    "header_name": "header_name",
    "directory": "header_user_directory",
    "user_directory": "header_user_directory",
    "pattern": "header_pattern",
    "cookie": "session_cookie_name",
    "samesite": "samesite",
    "secure": "secure",
    "jwt_cert": "jwt_certificate",
    "jwt_user_id": "jwt_user_id_attribute",
    "jwt_user_directory": "jwt_user_directory_attribute",
    "timeout": "session_timeout",
    "session_timeout": "session_timeout",
    "windows_pattern": "windows_authentication_pattern",
}
# Split on commas that start a known key, so a module URL may itself contain commas.
_SPLIT = re.compile(r",(?=\s*(?:" + "|".join(sorted(_KEYS, key=len, reverse=True)) + r")=)")


def parse_virtual_proxy(spec: str) -> VirtualProxy:
    """``prefix=portal,method=ticket,module=URL`` (keys: prefix, method, module, header,
    directory, pattern, cookie, samesite, secure, timeout (seconds of inactivity), windows_pattern;
    for method=jwt: jwt_cert=PEMFILE, jwt_user_id,
    jwt_user_directory) -> :class:`VirtualProxy`."""
    kwargs: dict[str, object] = {}
    for item in _SPLIT.split(spec):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in _KEYS:
            raise ConfigurationError(
                f"--virtual-proxy {spec!r}: {item!r} is not key=value with a key among "
                f"{', '.join(sorted(set(_KEYS)))}."
            )
        if key == "secure":
            secure = parse_bool(value)
            if secure is None:
                raise ConfigurationError(
                    f"--virtual-proxy {spec!r}: secure={value!r} is not a boolean; use one of "
                    f"{', '.join(sorted(w for w in TRUE_WORDS | FALSE_WORDS if w))}."
                )
            kwargs["secure"] = secure
        elif key == "jwt_cert":
            try:
                kwargs["jwt_certificate"] = Path(value.strip()).read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(
                    f"--virtual-proxy {spec!r}: cannot read jwt_cert {value!r}: {exc}."
                ) from None
        elif key in ("timeout", "session_timeout"):
            try:
                kwargs["session_timeout"] = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"--virtual-proxy {spec!r}: timeout must be seconds, not {value!r}."
                ) from None
        elif key == "samesite":
            kwargs["samesite"] = (
                None if value.strip().lower() in ("", "unset", "none-set") else value.strip()
            )
        else:
            kwargs[_KEYS[key]] = value
    if "prefix" not in kwargs:
        raise ConfigurationError(f"--virtual-proxy {spec!r}: give prefix=NAME.")
    return VirtualProxy(**kwargs)  # type: ignore[arg-type]


_PORTS = ("qps", "hub", "both")


def parse_fault(words: list[str]) -> tuple[str, Fault]:
    """``[qps|hub|both] KIND [seconds=S] [status=N]`` -> (port, :class:`Fault`)."""
    port = "qps"
    if words and words[0] in _PORTS:
        port, words = words[0], words[1:]
    if not words:
        raise ConfigurationError(f"name a fault: one of {', '.join(FAULT_KINDS)}.")
    kind, opts = words[0], words[1:]
    kwargs: dict[str, float | int] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        try:
            if key == "seconds" and eq:
                kwargs["seconds"] = float(value)
            elif key == "status" and eq:
                kwargs["status"] = int(value)
            else:
                raise ValueError
        except ValueError:
            raise ConfigurationError(f"fault option {opt!r}: use seconds=S or status=N.") from None
    return port, Fault(kind, **kwargs)  # type: ignore[arg-type]


def apply_fault_command(emu: object, line: str) -> str:
    """Apply one control line to an emulator; return the answer line.

    ``fault [qps|hub|both] KIND [seconds=S] [status=N]``, ``clear [qps|hub|both]``, ``faults``,
    ``crash`` (the node dies and loses its tickets and proxy sessions), ``restart``.
    """
    from .server import Emulator

    assert isinstance(emu, Emulator)
    words = line.split()
    if not words:
        return ""
    try:
        if words[0] == "fault":
            port, fault = parse_fault(words[1:])
            emu.inject(fault, port=port)
            return f"ok fault {port} {fault.describe()}"
        if words[0] == "clear":
            port = words[1] if len(words) > 1 else "both"
            emu.clear_faults(port)
            return f"ok clear {port}"
        if words[0] == "crash":
            emu.crash()
            return "ok crash"
        if words[0] == "restart":
            emu.restart()
            return "ok restart"
        if words[0] == "faults":
            active = emu.faults
            return "ok faults " + (
                ", ".join(f"{p} {f.describe()}" for p, f in active.items()) or "none"
            )
        raise ConfigurationError(
            f"unknown command {words[0]!r}: use fault, clear, faults, crash or restart."
        )
    except ConfigurationError as exc:
        return f"error {exc}"


def _control_loop(emu: object, stream: object, stop: threading.Event) -> None:
    for line in stream:  # type: ignore[attr-defined]
        answer = apply_fault_command(emu, line)
        if answer:
            print(answer, flush=True)
        if stop.is_set():
            return


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser``."""
    parser.add_argument(
        "--certs",
        metavar="DIR",
        default=None,
        help="certificate directory (generated there when it has no root.pem; "
        "default: a temporary directory)",
    )
    parser.add_argument(
        "--host", default="localhost", help="host name in URLs and the server certificate"
    )
    parser.add_argument(
        "--bind", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--qps-port", type=int, default=4243, help="QPS API port (default: %(default)s)"
    )
    parser.add_argument(
        "--hub-port", type=int, default=8443, help="hub port (default: %(default)s)"
    )
    parser.add_argument(
        "--virtual-proxy",
        action="append",
        default=[],
        metavar="SPEC",
        help="prefix=NAME,method="
        + "|".join(METHODS)
        + "[,module=URL][,header=NAME][,directory=DIR][,pattern=PAT][,cookie=NAME] (repeat)",
    )
    parser.add_argument("--ticket-ttl", type=float, default=60.0, help="ticket lifetime in seconds")
    parser.add_argument(
        "--session-timeout", type=float, default=1800.0, help="session inactivity timeout (s)"
    )
    parser.add_argument("--max-sessions", type=int, default=5, help="parallel sessions per user")
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING (default: %(default)s)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="[PORT:]KIND[,seconds=S][,status=N]",
        help="start with a fault on the qps (default) or hub port: " + ", ".join(FAULT_KINDS),
    )
    parser.add_argument(
        "--control",
        choices=("stdin",),
        default=None,
        help="read fault commands from standard input while running: 'fault [qps|hub|both] KIND "
        "[seconds=S] [status=N]', 'clear [PORT]', 'faults', 'crash', "
        "'restart' "
        "(one per line, answered on stdout)",
    )


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    """Start the emulator, print its URLs, serve until SIGINT/SIGTERM (or ``stop`` is set)."""
    from .server import Emulator

    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    proxies = [parse_virtual_proxy(s) for s in args.virtual_proxy]
    stop = stop or threading.Event()
    emu = Emulator(
        certs_dir=Path(args.certs) if args.certs else None,
        host=args.host,
        bind=args.bind,
        qps_port=args.qps_port,
        hub_port=args.hub_port,
        virtual_proxies=proxies,
        ticket_ttl=args.ticket_ttl,
        session_timeout=args.session_timeout,
        max_sessions_per_user=args.max_sessions,
    )
    faults = []
    for spec in args.fault:
        head, _, rest = spec.partition(",")
        port, colon, kind = head.partition(":")
        words = ([port, kind] if colon else [head]) + [w for w in rest.split(",") if w]
        faults.append(parse_fault(words))
    # The handlers go in before the node starts: a SIGTERM that comes while it starts (or at any
    # time after) ends it cleanly, once; a second one stops waiting for that.
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: object) -> None:
            if stop.is_set():
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
    with emu:
        for port, fault in faults:
            emu.inject(fault, port=port)
        lines = [
            f"qlikauth emulator running (certificates in {emu.certs_dir})",
            f"  QPS API: {emu.qps_url}  (mutual TLS: client.pem/client_key.pem signed by root.pem)",
            f"  hub:     {emu.hub_url}",
        ]
        for prefix, vp in sorted(emu.virtual_proxies.items()):
            extra = f", module {vp.module_uri}" if vp.module_uri else ""
            extra += f", header {vp.header_name}" if vp.header_name else ""
            lines.append(
                f"  virtual proxy {prefix or '(default)'!s}: {vp.method}, hub "
                f"{emu.hub_url_for(prefix)}, proxyRestUri {emu.rest_uri_for(prefix)}{extra}"
            )
        for port, fault in emu.faults.items():
            lines.append(f"  fault on {port}: {fault.describe()}")
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)
        if args.control == "stdin":
            import sys

            threading.Thread(
                target=_control_loop,
                args=(emu, sys.stdin, stop),
                daemon=True,
                name="emulator-control",
            ).start()
        while not stop.wait(0.5):  # a timed wait: the signal handler runs within half a second
            pass
    print("qlikauth emulator stopped.", flush=True)
    return 0
