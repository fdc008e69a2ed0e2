#!/usr/bin/python3
"""Two users meet: roster, mutual subscription, presence, chat, offline message.

Usage (Debian's python, which has python3-slixmpp):
  /usr/bin/python3 scripts/interop/two_users.py --host 127.0.0.1 --port 5222 \\
      --alice alice@localhost --alice-password PW1 --bob bob@localhost --bob-password PW2 \\
      [--ca DATA/tls/cert.pem | --insecure] [--mechs SCRAM-SHA-256] [--direct-tls]

Prints one "ok: ..." line per checked step, then PASS; exits 1 with "FAIL: ..."
on the first failed step or on timeout (--timeout, default 60 s overall).
The accounts must exist and should start with empty rosters.
"""

import secrets
import sys

import slixmpp

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from xmpptest import Client, Failure, Steps, delay_stamp, parser, roster_items, run  # noqa: E402


def is_presence(frm, ptype):
    """Match a presence of type ptype from frm (a full JID, or a bare JID for any resource)."""

    def pred(st):
        if not isinstance(st, slixmpp.Presence) or st["type"] != ptype:
            return False
        return st["from"].full == frm if "/" in frm else st["from"].bare == frm

    return pred


def is_chat(frm_full, body):
    def pred(st):
        return (isinstance(st, slixmpp.Message) and st["body"] == body
                and st["from"].full == frm_full)

    return pred


def is_body(body):
    return lambda st: isinstance(st, slixmpp.Message) and st["body"] == body


def is_push_for(jid):
    return lambda st: isinstance(st, slixmpp.Iq) and jid in roster_items(st)


async def check_roster(client, contact, want):
    what = "%s's roster has %s with subscription=%s" % (client.name, contact, want)
    Steps.start(what)
    items = await client.roster()
    got = items.get(contact)
    if got is None or got[0] != want or got[1]:
        raise Failure("%s: got %r (whole roster %r)" % (what, got, items))
    Steps.ok(what)


async def main(args):
    a_bare, b_bare = args.alice, args.bob
    tag = secrets.token_hex(4)

    alice = await Client("alice", a_bare, args.alice_password, args).login()
    bob = await Client("bob", b_bare, args.bob_password, args).login()

    try:
        # Roster add with a roster push back to the user (RFC 6121 2.3).
        Steps.start("alice adds bob to her roster")
        await alice.roster_set(b_bare, "Bob", "Family")
        push = await alice.wait_for("alice gets a roster push for bob", is_push_for(b_bare))
        Steps.ok("alice added bob to her roster (push: %r)" % (roster_items(push)[b_bare],))

        # Mutual subscription (RFC 6121 3.1), answered by hand.
        alice.x.send_presence(pto=b_bare, ptype="subscribe")
        st = await bob.wait_for("bob receives alice's subscription request",
                                is_presence(a_bare, "subscribe"))
        Steps.ok("bob received a subscription request from %s" % st["from"])

        bob.x.send_presence(pto=a_bare, ptype="subscribed")
        bob.x.send_presence(pto=a_bare, ptype="subscribe")
        await alice.wait_for("alice receives bob's approval", is_presence(b_bare, "subscribed"))
        Steps.ok("alice received bob's approval")
        await alice.wait_for("alice receives bob's subscription request",
                             is_presence(b_bare, "subscribe"))
        Steps.ok("alice received bob's subscription request")
        alice.x.send_presence(pto=b_bare, ptype="subscribed")
        await bob.wait_for("bob receives alice's approval", is_presence(a_bare, "subscribed"))
        Steps.ok("bob received alice's approval")

        # Presence flows both ways once subscribed (RFC 6121 3.1.5/3.1.6).
        await alice.wait_for("alice sees bob available", is_presence(bob.jid.full, "available"))
        Steps.ok("alice sees %s available" % bob.jid.full)
        await bob.wait_for("bob sees alice available", is_presence(alice.jid.full, "available"))
        Steps.ok("bob sees %s available" % alice.jid.full)

        await check_roster(alice, b_bare, "both")
        await check_roster(bob, a_bare, "both")

        # Chat both ways; 'from' must be the sender's full JID, stamped by the server.
        body = "hello bob " + tag
        alice.x.send_message(mto=b_bare, mbody=body, mtype="chat")
        await bob.wait_for("bob receives alice's message", is_chat(alice.jid.full, body))
        Steps.ok("bob received %r from %s" % (body, alice.jid.full))
        body = "hello alice " + tag
        bob.x.send_message(mto=alice.jid.full, mbody=body, mtype="chat")
        await alice.wait_for("alice receives bob's message", is_chat(bob.jid.full, body))
        Steps.ok("alice received %r from %s" % (body, bob.jid.full))

        # Offline message (XEP-0160) with a XEP-0203 delay stamp.
        Steps.start("bob disconnects")
        old_bob = bob.jid.full
        await bob.close()
        await alice.wait_for("alice sees bob go offline", is_presence(old_bob, "unavailable"))
        Steps.ok("alice sees %s unavailable" % old_bob)
        body = "while you were out " + tag
        alice.x.send_message(mto=b_bare, mbody=body, mtype="chat")
        Steps.ok("alice sent %r to offline bob" % body)

        bob = await Client("bob", b_bare, args.bob_password, args).login()
        msg = await bob.wait_for("bob receives the offline message", is_body(body))
        if msg["from"].bare != a_bare:
            raise Failure("offline message from %s, want %s" % (msg["from"], a_bare))
        delay = delay_stamp(msg)
        if delay is None:
            raise Failure("offline message has no XEP-0203 <delay/>: %s" % msg)
        Steps.ok("bob received the offline message from %s with delay stamp=%s from=%s"
                 % (msg["from"], delay[0], delay[1] or "-"))
        await alice.wait_for("alice sees bob back online", is_presence(bob.jid.full, "available"))
        Steps.ok("alice sees %s available again" % bob.jid.full)
        await check_roster(bob, a_bare, "both")
    finally:
        await bob.close()
        await alice.close()


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--alice", required=True, help="first user's bare JID")
    p.add_argument("--alice-password", required=True)
    p.add_argument("--bob", required=True, help="second user's bare JID")
    p.add_argument("--bob-password", required=True)
    run(main, p.parse_args())
