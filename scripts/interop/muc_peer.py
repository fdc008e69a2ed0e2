#!/usr/bin/python3
"""Join a group chat (XEP-0045), print READY, wait for one message, reply.

Usage (Debian's python, which has python3-slixmpp):
  /usr/bin/python3 scripts/interop/muc_peer.py --host 127.0.0.1 --port 5222 \\
      --jid bob@localhost --password PW --room family@groups.localhost --nick bob \\
      --from-nick alice --expect BODY [--reply TEXT] [--wait-invite] \\
      [--ca DATA/tls/cert.pem | --insecure] [--wait 60]

Lines: "ok: ..." per step; with --wait-invite, "WAITING" once logged in, and
the room is joined only after an invitation to it arrived (XEP-0249 direct or
XEP-0045 mediated, as a members-only room needs); "READY" once in the room (our
own presence with status 110 came back; a room we created is first unlocked
as an instant room; start the sender after READY); "BODY: <body>" for the live
groupchat message from --from-nick (room history is not asked for and delayed
messages are ignored); with --reply, the reply is sent and its reflection by
the room awaited; then PASS. Exits 1 with "FAIL: ..." on error or when nothing
arrives within --wait seconds.
"""

import asyncio
import sys

import slixmpp

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from xmpptest import Client, Failure, Steps, parser, run  # noqa: E402

MUC_USER_NS = "http://jabber.org/protocol/muc#user"
MUC_OWNER_NS = "http://jabber.org/protocol/muc#owner"
CONFERENCE_NS = "jabber:x:conference"  # XEP-0249 direct invitations
DELAY_NS = "urn:xmpp:delay"


def is_room_message(st, room, nick, body=None):
    """A live groupchat message from room/nick (with body, if given)."""
    if not isinstance(st, slixmpp.Message) or st["type"] != "groupchat":
        return False
    if st["from"].bare != room or st["from"].resource != nick or not st["body"]:
        return False
    if st.xml.find("{%s}delay" % DELAY_NS) is not None:
        return False  # history, not the live message
    return body is None or st["body"].strip() == body


async def main(args):
    c = Client("peer", args.jid, args.password, args)
    c.x.register_plugin("xep_0045")
    c.x.register_plugin("xep_0249")
    # slixmpp raises "message" only for messages with a body; invitations
    # have none, so record them from the plugins' events.
    c.x.add_event_handler("groupchat_direct_invite", c._record)
    c.x.add_event_handler("groupchat_invite", c._record)
    await c.login()
    room = slixmpp.JID(args.room).bare
    try:
        if args.wait_invite:
            print("WAITING", flush=True)

            def invitation(st):
                if not isinstance(st, slixmpp.Message):
                    return False
                direct = st.xml.find("{%s}x" % CONFERENCE_NS)
                if direct is not None and direct.get("jid") == room:
                    return True
                mediated = st.xml.find("{%s}x/{%s}invite" % (MUC_USER_NS, MUC_USER_NS))
                return mediated is not None and st["from"].bare == room

            inv = await c.wait_for("peer waits for an invitation to %s" % room, invitation, timeout=args.wait)
            Steps.ok("peer was invited to %s by %s" % (room, inv["from"]))

        def self_presence(st):
            if not isinstance(st, slixmpp.Presence) or st["from"].bare != room:
                return False
            if st["type"] == "error":
                return True
            item_x = st.xml.find("{%s}x" % MUC_USER_NS)
            if item_x is None:
                return False
            codes = {s.get("code") for s in item_x.findall("{%s}status" % MUC_USER_NS)}
            return "110" in codes

        # An inviter's client may send the invitation before the room has
        # processed the membership it grants (Converse does): a members-only
        # room then answers registration-required, and the join is retried a
        # few times, as a person would click again.
        tries = 10 if args.wait_invite else 1
        for attempt in range(1, tries + 1):
            Steps.start("peer joins %s as %s (attempt %d)" % (room, args.nick, attempt))
            join = c.x.Presence()
            join["to"] = "%s/%s" % (room, args.nick)
            x = join.xml.makeelement("{http://jabber.org/protocol/muc}x", {})
            hist = x.makeelement("{http://jabber.org/protocol/muc}history", {"maxstanzas": "0"})
            x.append(hist)
            join.xml.append(x)
            join.send()
            pres = await c.wait_for("peer waits for its own presence in %s (status 110)" % room, self_presence)
            if pres["type"] != "error":
                break
            cond = pres["error"]["condition"]
            if cond != "registration-required" or attempt == tries:
                raise Failure("joining %s failed: %s" % (room, cond))
            await asyncio.sleep(0.5)
        Steps.ok("peer joined %s as %s" % (room, pres["from"].resource))
        codes = {s.get("code") for s in pres.xml.find("{%s}x" % MUC_USER_NS).findall("{%s}status" % MUC_USER_NS)}
        if "201" in codes:
            # We created the room: it stays locked until configured; accept
            # the default configuration (an instant room, XEP-0045 10.1.2).
            Steps.start("peer unlocks the new room %s as an instant room" % room)
            iq = c.x.Iq()
            iq["type"] = "set"
            iq["to"] = room
            q = iq.xml.makeelement("{%s}query" % MUC_OWNER_NS, {})
            q.append(q.makeelement("{jabber:x:data}x", {"type": "submit"}))
            iq.xml.append(q)
            await iq.send(timeout=args.step_timeout)
            Steps.ok("peer created %s as an instant room" % room)
        nick = pres["from"].resource  # the room may have changed it
        print("READY", flush=True)

        msg = await c.wait_for(
            "peer waits for %s's message in %s" % (args.from_nick, room),
            lambda st: is_room_message(st, room, args.from_nick), timeout=args.wait)
        body = msg["body"]
        print("BODY: " + body.replace("\n", "\\n"), flush=True)
        if args.expect is not None and body.strip() != args.expect:
            raise Failure("body %r, want %r" % (body, args.expect))
        Steps.ok("received the groupchat message from %s" % msg["from"])

        if args.reply:
            c.x.send_message(mto=room, mbody=args.reply, mtype="groupchat")
            await c.wait_for("peer waits for the room to reflect its reply",
                             lambda st: is_room_message(st, room, nick, args.reply))
            Steps.ok("the room reflected the reply")
        leave = c.x.Presence()
        leave["to"] = "%s/%s" % (room, nick)
        leave["type"] = "unavailable"
        leave.send()
    finally:
        await c.close()


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jid", required=True, help="the peer's bare JID")
    p.add_argument("--password", required=True)
    p.add_argument("--room", required=True, help="room JID, e.g. family@groups.localhost")
    p.add_argument("--nick", required=True, help="nickname in the room")
    p.add_argument("--from-nick", required=True, help="nickname of the sender to wait for")
    p.add_argument("--expect", help="required body (compared after stripping whitespace)")
    p.add_argument("--reply", help="send this to the room after the message arrived")
    p.add_argument("--wait-invite", action="store_true",
                   help="print WAITING after login and join only once invited (XEP-0249 "
                   "direct or XEP-0045 mediated invitation), e.g. to a members-only room")
    p.add_argument("--wait", type=float, default=60.0,
                   help="seconds to wait for the message after READY (default: %(default)s)")
    run(main, p.parse_args())
