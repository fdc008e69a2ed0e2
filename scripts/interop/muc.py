#!/usr/bin/python3
"""Group chat (XEP-0045) with slixmpp's xep_0045 plugin: create, configure, join, talk, leave.

Usage (Debian's python, which has python3-slixmpp):
  /usr/bin/python3 scripts/interop/muc.py --host 127.0.0.1 --port 5222 \\
      --alice alice@localhost --alice-password PW1 --bob bob@localhost --bob-password PW2 \\
      --muc-domain groups.localhost [--ca DATA/tls/cert.pem | --insecure]

Alice creates a room (status 201), accepts the default configuration (an
instant room), makes Bob a member; Bob enters and both exchange groupchat
messages carrying the room's XEP-0359 stanza-id and a XEP-0421 occupant-id;
Bob leaves and Alice sees it. Prints one "ok: ..." line per checked step,
then PASS; exits 1 with "FAIL: ..." on the first failed step or on timeout.
"""

import secrets
import sys

import slixmpp
from slixmpp import JID

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from xmpptest import Client, Failure, Steps, parser, run  # noqa: E402

MUC_USER = "http://jabber.org/protocol/muc#user"
SID = "urn:xmpp:sid:0"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"


def status_codes(st):
    x = st.xml.find("{%s}x" % MUC_USER)
    if x is None:
        return set()
    return {s.get("code") for s in x.findall("{%s}status" % MUC_USER)}


def muc_item(st):
    x = st.xml.find("{%s}x" % MUC_USER)
    it = x.find("{%s}item" % MUC_USER) if x is not None else None
    return it.attrib if it is not None else {}


def stanza_id(msg, by):
    for el in msg.xml.findall("{%s}stanza-id" % SID):
        if el.get("by") == by:
            return el.get("id")
    return None


def occupant_id(st):
    el = st.xml.find("{%s}occupant-id" % OCCUPANT_ID)
    return el.get("id") if el is not None else None


def groupchat(frm, body):
    return lambda st: (isinstance(st, slixmpp.Message) and st["type"] == "groupchat"
                       and st["from"].full == frm and st["body"] == body)


def presence(frm, ptype):
    return lambda st: (isinstance(st, slixmpp.Presence) and st["from"].full == frm
                       and st["type"] == ptype)


def muc_client(name, jid, password, args):
    c = Client(name, jid, password, args)
    c.x.register_plugin("xep_0004")
    c.x.register_plugin("xep_0045")
    # Occupant presence is not a roster presence: slixmpp raises
    # groupchat_presence for it instead of presence.
    c.x.add_event_handler("groupchat_presence", c._record)  # pylint: disable=protected-access
    return c


async def main(args):
    room = JID("family-%s@%s" % (secrets.token_hex(3), args.muc_domain))
    tag = secrets.token_hex(4)
    alice = await muc_client("alice", args.alice, args.alice_password, args).login()
    bob = await muc_client("bob", args.bob, args.bob_password, args).login()
    muc_a, muc_b = alice.x["xep_0045"], bob.x["xep_0045"]
    try:
        Steps.start("alice creates %s" % room)
        pres, _subject, _occupants, _history = await muc_a.join_muc_wait(
            room, "Alice", maxstanzas=0, timeout=args.step_timeout)
        codes = status_codes(pres)
        if not {"110", "201"} <= codes or muc_item(pres).get("affiliation") != "owner":
            raise Failure("creator's self-presence: %s" % pres)
        Steps.ok("alice created the room (status codes %s)" % sorted(codes))

        Steps.start("alice accepts the default configuration (instant room)")
        form = alice.x["xep_0004"].make_form(ftype="submit")
        await muc_a.set_room_config(room, form, timeout=args.step_timeout)
        Steps.ok("the room is configured")

        Steps.start("alice makes bob a member")
        await muc_a.set_affiliation(room, "member", jid=JID(args.bob), timeout=args.step_timeout)
        Steps.ok("bob is a member")

        Steps.start("bob enters the room")
        pres, subject, occupants, _history = await muc_b.join_muc_wait(
            room, "Bob", timeout=args.step_timeout)
        item = muc_item(pres)
        if "110" not in status_codes(pres) or item.get("affiliation") != "member" \
                or item.get("role") != "participant":
            raise Failure("bob's self-presence: %s" % pres)
        Steps.ok("bob entered as %s/%s (%d occupants listed)" % (
            item.get("affiliation"), item.get("role"), len(occupants)))
        seen = await alice.wait_for("alice sees bob enter", presence(room.bare + "/Bob", "available"))
        if muc_item(seen).get("jid", "").split("/")[0] != args.bob or not occupant_id(seen):
            raise Failure("bob's presence to alice: %s" % seen)
        Steps.ok("alice sees bob with his real JID and an occupant-id")

        body = "hello family " + tag
        alice.x.send_message(mto=room, mbody=body, mtype="groupchat")
        got = await bob.wait_for("bob receives alice's message", groupchat(room.bare + "/Alice", body))
        echo = await alice.wait_for("alice gets her message back", groupchat(room.bare + "/Alice", body))
        sid = stanza_id(got, room.bare)
        if not sid or stanza_id(echo, room.bare) != sid or not occupant_id(got):
            raise Failure("stanza-id/occupant-id: %s / %s" % (got, echo))
        Steps.ok("bob received %r with stanza-id %s" % (body, sid))

        body = "hi alice " + tag
        bob.x.send_message(mto=room, mbody=body, mtype="groupchat")
        await alice.wait_for("alice receives bob's message", groupchat(room.bare + "/Bob", body))
        Steps.ok("alice received %r" % body)

        Steps.start("bob leaves")
        muc_b.leave_muc(room, "Bob")
        await alice.wait_for("alice sees bob leave", presence(room.bare + "/Bob", "unavailable"))
        Steps.ok("alice saw bob leave")
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--alice", required=True)
    p.add_argument("--alice-password", required=True)
    p.add_argument("--bob", required=True)
    p.add_argument("--bob-password", required=True)
    p.add_argument("--muc-domain", required=True)
    run(main, p.parse_args())
