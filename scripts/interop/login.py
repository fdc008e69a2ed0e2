#!/usr/bin/python3
"""Log in once (STARTTLS or direct TLS), fetch the roster, log out.

Usage (Debian's python, which has python3-slixmpp):
  /usr/bin/python3 scripts/interop/login.py --host 127.0.0.1 --port 5222 \\
      --jid alice@localhost --password PW [--ca DATA/tls/cert.pem | --insecure] [--direct-tls]

Prints "ok: ..." per step and PASS; exits 1 with "FAIL: ..." otherwise.
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from xmpptest import Client, parser, run  # noqa: E402


async def main(args):
    c = await Client("user", args.jid, args.password, args).login()  # includes a roster get
    await c.close()


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jid", required=True, help="bare JID")
    p.add_argument("--password", required=True)
    run(main, p.parse_args())
