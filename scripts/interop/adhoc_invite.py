#!/usr/bin/python3
"""Create an invitation with the XEP-0050 command urn:xmpp:invite#invite (XEP-0401).

Usage (Debian's python, which has python3-slixmpp):
  /usr/bin/python3 scripts/interop/adhoc_invite.py --host 127.0.0.1 --port 5222 \\
      --jid alice@localhost --password PW [--ca DATA/tls/cert.pem | --insecure]

Lists the server's commands with slixmpp's xep_0050 plugin, executes the
invite command and checks the result form (FORM_TYPE, uri, landing-url,
expire). Prints "ok: ..." per step, "token: TOKEN" and PASS; exits 1 with
"FAIL: ..." otherwise.
"""

import asyncio
import sys
from datetime import datetime
from urllib.parse import unquote

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from xmpptest import Client, Failure, Steps, parser, run  # noqa: E402

NODE = "urn:xmpp:invite#invite"
DATA_NS = "jabber:x:data"
CMD_NS = "http://jabber.org/protocol/commands"


def form_values(x):
    """{var: first value} of a data form element."""
    out = {}
    for f in x.findall("{%s}field" % DATA_NS):
        v = f.find("{%s}value" % DATA_NS)
        out[f.get("var", "")] = v.text if v is not None else ""
    return out


async def main(args):
    c = Client("user", args.jid, args.password, args)
    c.x.register_plugin("xep_0004")
    c.x.register_plugin("xep_0050")
    await c.login()
    domain = c.jid.domain

    Steps.start("list the commands")
    items = await asyncio.wait_for(c.x["xep_0050"].get_commands(domain), args.step_timeout)
    nodes = [it[1] for it in items["disco_items"]["items"]]
    if NODE not in nodes:
        raise Failure("%s not among the commands %s" % (NODE, nodes))
    Steps.ok("the command list has %s" % NODE)

    Steps.start("execute the invite command")
    iq = await asyncio.wait_for(c.x["xep_0050"].send_command(domain, NODE), args.step_timeout)
    cmd = iq.xml.find("{%s}command" % CMD_NS)
    if cmd is None or cmd.get("status") != "completed" or not cmd.get("sessionid"):
        raise Failure("not a completed command: %s" % iq)
    x = cmd.find("{%s}x" % DATA_NS)
    if x is None or x.get("type") != "result":
        raise Failure("no result form: %s" % iq)
    v = form_values(x)
    if v.get("FORM_TYPE") != "urn:xmpp:invite#invitation":
        raise Failure("FORM_TYPE %r" % v.get("FORM_TYPE"))
    prefix = "xmpp:%s?roster;preauth=" % c.jid.bare
    uri = v.get("uri", "")
    if not uri.startswith(prefix) or not uri.endswith(";ibr=y"):
        raise Failure("uri %r, want %s...;ibr=y" % (uri, prefix))
    token = unquote(uri[len(prefix):-len(";ibr=y")])
    url = v.get("landing-url", "")
    if not url.startswith("https://") or not url.endswith("/invite/" + token):
        raise Failure("landing-url %r does not end with /invite/%s" % (url, token))
    try:
        datetime.fromisoformat(v.get("expire", "").replace("Z", "+00:00"))
    except ValueError as e:
        raise Failure("expire %r is not a XEP-0082 DateTime: %s" % (v.get("expire"), e)) from e
    Steps.ok("the invitation form has uri, landing-url and expire")
    print("token: " + token, flush=True)
    await c.close()


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jid", required=True, help="bare JID")
    p.add_argument("--password", required=True)
    run(main, p.parse_args())
