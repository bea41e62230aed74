#!/usr/bin/env python3
"""A real SMTP server for the smtp adapter's tests (tests/provider_smtp.rs).

Usage: smtp_server.py OUT_DIR USERNAME PASSWORD [--port N] [--no-auth-required]

Listens on 127.0.0.1 (port N, default 0 = a free port), prints `PORT <n>` on stdout once it
accepts connections, and serves until killed. It offers AUTH PLAIN and LOGIN over plaintext
and, unless --no-auth-required, answers 530 to MAIL FROM before a successful AUTH.

Scripted refusals, chosen by the local part of the address:
  MAIL FROM blocked@...   553 5.7.1 ... Sender address rejected
  RCPT TO   unknown@...   550 5.1.1 ... Recipient address rejected: User unknown
  RCPT TO   nouser@...    550 No such user here            (no enhanced status code)
  RCPT TO   busy@...      451 4.3.0 ... try again later    (temporary)

Each accepted message is written to OUT_DIR as <uuid>.json:
  {"mail_from", "rcpt_tos", "auth_user" (null when no AUTH), "data" (the raw message),
   "parsed": {"headers": [[name, decoded value], ...], "content_type",
              "parts": [{"content_type", "content"}, ...]}}
"parsed" comes from Python's own MIME parser (email.policy.default), so the tests check what a
standards-following reader sees, not what a hand-written parser guesses.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import sys
import uuid

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    print(
        "smtp_server.py: the Python package aiosmtpd is missing; run `pip install aiosmtpd`",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(3)


def local_part(address):
    return address.rsplit("@", 1)[0].lower()


class Handler:
    def __init__(self, out_dir):
        self.out_dir = out_dir

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if local_part(address) == "blocked":
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        who = local_part(address)
        if who == "unknown":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if who == "nouser":
            return "550 No such user here"
        if who == "busy":
            return f"451 4.3.0 <{address}>: Temporary lookup failure, try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        auth = session.auth_data if session.authenticated else None
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parsed = {
            "headers": [[name, str(value)] for name, value in msg.items()],
            "content_type": msg.get_content_type(),
            "parts": [
                {"content_type": part.get_content_type(), "content": part.get_content()}
                for part in msg.walk()
                if not part.is_multipart()
            ],
        }
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth_user": auth.login.decode("utf-8", "replace")
            if isinstance(auth, LoginPassword)
            else None,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "parsed": parsed,
        }
        name = uuid.uuid4().hex
        tmp = os.path.join(self.out_dir, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        # Rename last so a reader never sees a half-written file.
        os.replace(tmp, os.path.join(self.out_dir, f"{name}.json"))
        return "250 2.0.0 Message accepted for delivery"


def make_authenticator(username, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        # handled=False lets aiosmtpd answer 535 5.7.8 on failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("username")
    parser.add_argument("password")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-auth-required", action="store_true")
    args = parser.parse_args()

    handler = Handler(args.out_dir)
    authenticator = make_authenticator(args.username, args.password)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="smtp.test.invalid",
            authenticator=authenticator,
            auth_require_tls=False,
            auth_required=not args.no_auth_required,
            loop=loop,
        ),
        host="127.0.0.1",
        port=args.port,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
