"""The vault as its own process: a small HTTP server (TCP on 127.0.0.1 or a unix socket).

``POST /v1/<method>`` with a JSON body; every request carries ``Authorization: Bearer
<token>`` (the token file is 0600 and shared only with the services allowed to call the
vault). Routes validate and delegate to a :class:`LocalVault`; they decide nothing.

Run: ``python -m keystep.vault.server --vault-dir DIR (--socket PATH | --port N)
--token-file FILE``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import secrets
import signal
import socket
import socketserver
import threading
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from keystep.audit.events import event_from_dict, parse_time
from keystep.policy.model import PolicyError
from keystep.vault import wire
from keystep.vault.base import VaultError
from keystep.vault.local import LocalVault

MAX_BODY: Final = 256 * 1024 * 1024

Route = Callable[[LocalVault, dict[str, Any]], Any]


def _p(d: dict[str, Any], key: str = "principal") -> Any:
    return wire.principal_from_wire(d[key])


def _t(s: str) -> datetime:
    return parse_time(s)


ROUTES: Final[dict[str, Route]] = {
    "enroll_contributor": lambda v, a: v.enroll_contributor(a["contributor_id"]),
    "pseudonym": lambda v, a: v.pseudonym(a["contributor_id"]),
    "sealing_key": lambda v, a: wire.sealing_key_to_wire(
        v.sealing_key(a["pseudonym"], a["period"])
    ),
    "register_device": lambda v, a: v.register_device(
        a["device_id"], wire.unb64(a["public_key"]), pseudonym=a["pseudonym"]
    ),
    "unseal_many": lambda v, a: [
        {"error": wire.error_to_wire(r)}
        if isinstance(r, Exception)
        else {"ok": wire.unsealed_to_wire(r)}
        for r in v.unseal_many(
            [wire.unb64(e) for e in a["envelopes"]], principal=_p(a), purpose=a["purpose"]
        )
    ],
    "unseal_keys": lambda v, a: [
        {"error": wire.error_to_wire(r)} if isinstance(r, Exception) else {"ok": wire.b64(r)}
        for r in v.unseal_keys(
            [wire.unb64(e) for e in a["envelopes"]], principal=_p(a), purpose=a["purpose"]
        )
    ],
    "record": lambda v, a: v.record(event_from_dict(a["event"])),
    "create_grant": lambda v, a: wire.grant_to_wire(
        v.create_grant(
            _p(a),
            a["purpose"],
            a["data_class"],
            expires=_t(a["expires"]),
            by=_p(a, "by"),
            contributor=a.get("contributor"),
            justification=a.get("justification", ""),
        )
    ),
    "revoke_grant": lambda v, a: v.revoke_grant(
        a["grant_id"], by=_p(a, "by"), justification=a.get("justification", "")
    ),
    "end_expired_grants": lambda v, a: v.end_expired_grants(by=_p(a, "by")),
    "grants": lambda v, a: [wire.grant_to_wire(g) for g in v.grants()],
    "open_break_glass": lambda v, a: wire.grant_to_wire(
        v.open_break_glass(
            _p(a),
            a["contributor"],
            approvers=(
                wire.principal_from_wire(a["approvers"][0]),
                wire.principal_from_wire(a["approvers"][1]),
            ),
            justification=a["justification"],
            expires=_t(a["expires"]),
        )
    ),
    "set_legal_hold": lambda v, a: v.set_legal_hold(
        a["pseudonym"], a["periods"], by=_p(a, "by"), reason=a["reason"]
    ),
    "release_legal_hold": lambda v, a: v.release_legal_hold(
        a["pseudonym"], a["periods"], by=_p(a, "by"), reason=a["reason"]
    ),
    "legal_holds": lambda v, a: [wire.hold_to_wire(h) for h in v.legal_holds()],
    "erase_contributor": lambda v, a: v.erase_contributor(
        a["pseudonym"], by=_p(a, "by"), justification=a.get("justification", "")
    ),
    "expire_periods": lambda v, a: [
        list(x) for x in v.expire_periods(_t(a["now"]), by=_p(a, "by"))
    ],
    "feed": lambda v, a: [
        e.to_dict() for e in v.feed(a["pseudonym"], principal=_p(a), purpose=a["purpose"])
    ],
    "read_audit": lambda v, a: [
        e.to_dict() for e in v.read_audit(principal=_p(a), purpose=a["purpose"])
    ],
    "verify_audit": lambda v, a: wire.report_to_wire(v.verify_audit(principal=_p(a))),
    "checkpoint": lambda v, a: cp.to_json() if (cp := v.checkpoint()) else None,
    "audit_public_key": lambda v, a: wire.b64(v.audit_public_key()),
    "describe": lambda v, a: {**v.describe(), "kind": "remote-server"},
}


class _Handler(BaseHTTPRequestHandler):
    server: _VaultHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are audited by the vault; access logs would only leak metadata

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.server.token}".encode()):
            self._reply(
                401, {"ok": False, "error": {"type": "AccessDenied", "message": "bad vault token"}}
            )
            return
        prefix = f"/v{wire.WIRE_VERSION}/"
        route = ROUTES.get(self.path.removeprefix(prefix)) if self.path.startswith(prefix) else None
        if route is None:
            self._reply(
                404,
                {
                    "ok": False,
                    "error": {"type": "VaultError", "message": f"no such call {self.path}"},
                },
            )
            return
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_BODY:
            self._reply(
                413, {"ok": False, "error": {"type": "VaultError", "message": "request too large"}}
            )
            return
        try:
            args = json.loads(self.rfile.read(length) or b"{}")
            result = route(self.server.vault, args)
        except (VaultError, PolicyError) as exc:
            self._reply(200, {"ok": False, "error": wire.error_to_wire(exc)})
            return
        except (KeyError, TypeError, ValueError) as exc:
            self._reply(
                400,
                {"ok": False, "error": {"type": "VaultError", "message": f"bad request: {exc}"}},
            )
            return
        self._reply(200, {"ok": True, "result": result})


class _VaultHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: Any, vault: LocalVault, token: str) -> None:
        self.vault = vault
        self.token = token
        super().__init__(address, _Handler)


class _UnixVaultHTTPServer(_VaultHTTPServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        # HTTPServer.server_bind expects (host, port); a unix socket has a path.
        socketserver.TCPServer.server_bind(self)
        os.chmod(str(self.server_address), 0o600)
        self.server_name, self.server_port = "localhost", 0


class VaultServer:
    """A running vault server (in a thread of this process, or the main loop via ``serve``)."""

    def __init__(
        self,
        vault: LocalVault,
        *,
        token: str,
        socket_path: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.vault = vault
        self.token = token
        self.socket_path = socket_path
        self._httpd: _VaultHTTPServer
        if socket_path is not None:
            socket_path.unlink(missing_ok=True)
            self._httpd = _UnixVaultHTTPServer(str(socket_path), vault, token)
        else:
            self._httpd = _VaultHTTPServer((host, port), vault, token)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> VaultServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)


def ensure_token(path: Path) -> str:
    """Read the shared token, creating it (0600) if absent."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m keystep.vault.server", description=__doc__)
    ap.add_argument("--vault-dir", type=Path, required=True)
    ap.add_argument("--socket", type=Path, help="unix socket path (else TCP)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8421)
    ap.add_argument("--token-file", type=Path, required=True)
    args = ap.parse_args(argv)
    vault = LocalVault.open(args.vault_dir)
    server = VaultServer(
        vault,
        token=ensure_token(args.token_file),
        socket_path=args.socket,
        host=args.host,
        port=args.port,
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop).start())
    print(f"vault serving on {server.url}", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        vault.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
