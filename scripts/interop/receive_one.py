#!/usr/bin/python3
"""Log in, print READY, wait for one chat message with a body, print it, exit.

Usage (Debian's python, which has python3-slixmpp):
  /usr/bin/python3 scripts/interop/receive_one.py --host 127.0.0.1 --port 5222 \\
      --jid bob@localhost --password PW [--from alice@localhost] [--expect BODY] \\
      [--ca DATA/tls/cert.pem | --insecure] [--wait 30]

Lines: "ok: ..." per step, "READY" once logged in with presence sent (start
the sender after it), "BODY: <body>" for the message received, then PASS.
Exits 1 with "FAIL: ..." on error or when no message arrives within --wait.
"""

import sys

import slixmpp

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from xmpptest import Client, Failure, Steps, parser, run  # noqa: E402


async def main(args):
    c = await Client("receiver", args.jid, args.password, args).login()
    try:
        print("READY", flush=True)

        def pred(st):
            if not isinstance(st, slixmpp.Message) or not st["body"]:
                return False
            return not args.sender or st["from"].bare == args.sender

        msg = await c.wait_for("receiver waits for a message", pred, timeout=args.wait)
        body = msg["body"]
        print("BODY: " + body.replace("\n", "\\n"), flush=True)
        if args.expect is not None and body.strip() != args.expect:
            raise Failure("body %r, want %r" % (body, args.expect))
        Steps.ok("received a %s message from %s" % (msg["type"], msg["from"]))
    finally:
        await c.close()


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jid", required=True, help="receiving user's bare JID")
    p.add_argument("--password", required=True)
    p.add_argument("--from", dest="sender", help="accept messages from this bare JID only")
    p.add_argument("--expect", help="required body (compared after stripping whitespace)")
    p.add_argument("--wait", type=float, default=30.0,
                   help="seconds to wait for the message after READY (default: %(default)s)")
    run(main, p.parse_args())
