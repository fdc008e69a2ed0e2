#!/usr/bin/python3
"""What phones need: stream management, carbons, MAM paging, PEP +notify.

Usage (Debian's python, which has python3-slixmpp 1.8.3):
  /usr/bin/python3 scripts/interop/mobile.py --host 127.0.0.1 --port 5222 \\
      --alice alice@localhost --alice-password PW1 --bob bob@localhost --bob-password PW2 \\
      --carol carol@localhost --carol-password PW3 \\
      [--parts sm,carbons,mam,pep] [--mam-count 120] [--mam-page 50] \\
      [--ca DATA/tls/cert.pem | --insecure] [--mechs SCRAM-SHA-256] [--direct-tls]

Parts (run in this order; --parts picks some):
  sm       XEP-0198: alice enables SM with resumption; bob sends; alice's TCP
           connection is dropped (RST, no </stream:stream>, no TLS close_notify);
           bob sends more (to her bare and full JID); alice reconnects and must
           get <resumed/> (not a new session) and every message exactly once, in order.
  carbons  XEP-0280: alice on two resources with carbons; bob -> alice's bare JID
           (each resource sees it once: original or 'received' carbon), bob ->
           alice's full JID (the other resource gets a 'received' carbon), alice
           -> bob (her other resource gets a 'sent' carbon).
  mam      XEP-0313 with XEP-0059 paging: alice and bob exchange --mam-count
           messages; alice pages her archive 'with' bob (--mam-page per page) via
           slixmpp's retrieve(): every body once, in order, each result with an
           id equal to the live XEP-0359 stanza-id, 'complete' on the last page,
           the same through slixmpp's iterate(), and a reverse (<before/>) page
           returns the newest messages.
  pep      XEP-0163: alice<->bob and alice<->carol mutually subscribed; bob
           advertises tune+notify through XEP-0115 caps (xep_0118), carol
           advertises caps without it; alice publishes a tune; bob gets the
           pubsub#event, carol gets none.

Prints one "ok: ..." line per checked step, then PASS; exits 1 with
"FAIL: ..." on the first failed step or on timeout (--timeout, default 80 s
overall, --step-timeout per step). The accounts must exist; the pep part
subscribes them to each other if they are not yet.
"""

import asyncio
import logging
import secrets
import sys

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from xmpptest import Failure, Steps, parser, run  # noqa: E402
from mobile_helpers import (  # noqa: E402
    CARBONS_NS, DELAY_NS, MAM_NS, SM_NS, TUNE_NS, MobileClient, body_of, carbon, inner_message,
    local, pep_items, stanza_ids, subscribe_mutually)

PARTS = ("sm", "carbons", "mam", "pep")


def has_body(body):
    return lambda st: body_of(st.xml) == body


def counts(bodies, wanted):
    """{body: occurrences} for each wanted body."""
    return {b: bodies.count(b) for b in wanted}


# --------------------------------------------------------------------- sm ---

async def part_sm(args, tag):
    a_bare, b_bare = JID(args.alice).bare, JID(args.bob).bare
    alice = MobileClient("alice", a_bare, args.alice_password, args,
                         resource="phone-sm-" + tag, plugins=["xep_0198"])
    bob = MobileClient("bob", b_bare, args.bob_password, args, resource="sm-" + tag)
    try:
        await alice.login()
        feats = alice.stream_features[-1] if alice.stream_features else []
        if "{%s}sm" % SM_NS not in feats:
            raise Failure("sm: the stream features after SASL do not offer urn:xmpp:sm:3: %s" % feats)
        Steps.ok("sm: the server offers urn:xmpp:sm:3")
        ev = await alice.wait_event("sm: alice's <enable resume='true'/> is answered",
                                    {"sm_enabled": 0, "sm_failed": 0})
        if ev == "sm_failed":
            raise Failure("sm: the server answered <enable/> with %s" % alice.events["sm_failed"][0])
        enabled = alice.events["sm_enabled"][0]
        if not enabled["id"] or not enabled["resume"]:
            raise Failure("sm: <enabled/> without resumption (id=%r resume=%r): %s"
                          % (enabled["id"], enabled["resume"], enabled))
        Steps.ok("sm: alice enabled SM with resumption (id=%s, max=%s)"
                 % (enabled["id"], enabled["max"] or "-"))
        alice_full = alice.jid.full

        await bob.login()
        sent = []

        def send(body, to):
            bob.x.send_message(mto=to, mbody=body, mtype="chat")
            sent.append(body)

        before = ["sm before %d %s" % (i, tag) for i in range(5)]
        for b in before:
            send(b, a_bare)
        await alice.wait_messages("sm: alice receives bob's first 5 messages",
                                  lambda st: body_of(st.xml) in before, n=len(before))
        Steps.ok("sm: alice received %d messages before the drop" % len(before))

        # The drop: RST, no </stream:stream>, no TLS close_notify.
        Steps.start("sm: alice's TCP connection is dropped")
        # Stanzas alice sent since <enable/> (all answered or echoed, so all
        # received): the server's <resumed h=.../> must say exactly this.
        alice_sent = alice.x["xep_0198"].seq
        seen = alice.count("disconnected")
        alice.drop_connection()
        await alice.wait_event("sm: alice's client sees the connection gone", {"disconnected": seen})
        if alice.count("session_end"):
            raise Failure("sm: slixmpp ended the session on the drop (script bug: SM not enabled?)")
        Steps.ok("sm: alice's TCP connection was reset without closing the stream")

        # Some at once (the server may not have noticed yet), more later, to
        # the bare and the full JID.
        away = ["sm away-now %d %s" % (i, tag) for i in range(3)]
        for b in away:
            send(b, a_bare)
        await asyncio.sleep(1.5)
        later_bare = ["sm away-bare %d %s" % (i, tag) for i in range(3)]
        later_full = ["sm away-full %d %s" % (i, tag) for i in range(3)]
        for b in later_bare:
            send(b, a_bare)
        for b in later_full:
            send(b, alice_full)
        Steps.start("sm: bob's messages are processed (ping round trip)")
        await bob.ping()
        errors = [m for m in bob.messages if m["type"] == "error"]
        if errors:
            raise Failure("sm: bob got %d error(s) for messages to alice while she was away, first: %s"
                          % (len(errors), errors[0]))
        Steps.ok("sm: bob sent %d messages while alice was away (no errors)"
                 % (len(away) + len(later_bare) + len(later_full)))

        # Reconnect: slixmpp sends <resume previd=... h=.../> by itself.
        base = {n: alice.count(n) for n in ("session_resumed", "session_start", "sm_failed")}
        alice.reconnect()
        ev = await alice.wait_event("sm: alice reconnects and resumes", base)
        if ev != "session_resumed":
            failed = alice.events.get("sm_failed", [])
            raise Failure("sm: no <resumed/>: got %s instead%s" % (
                ev, (" (<failed/>: %s)" % failed[-1]) if failed else ""))
        resumed = [el for el in alice.sm_answers if local(el.tag) == "resumed"]
        h = resumed[-1].get("h") if resumed else None
        if h != str(alice_sent):
            raise Failure("sm: <resumed h='%s'/>, but alice had sent %d stanzas since <enable/> "
                          "(all of them answered)" % (h, alice_sent))
        Steps.ok("sm: alice resumed the stream (session_resumed; h=%s = stanzas she sent)" % h)
        if alice.count("session_start") != 1:
            raise Failure("sm: session_start fired %d times: a new session, not a resumption"
                          % alice.count("session_start"))
        if alice.jid.full != alice_full:
            raise Failure("sm: bound JID changed across resumption: %s -> %s" % (alice_full, alice.jid.full))
        Steps.ok("sm: still one session, bound to %s" % alice_full)

        missed = away + later_bare + later_full
        await alice.wait_messages("sm: alice receives the messages sent while she was away",
                                  lambda st: body_of(st.xml) in missed, n=len(missed))
        # Both ways work on the resumed stream; a last message and a ping
        # round trip flush anything resent late.
        back = "sm alice is back " + tag
        alice.x.send_message(mto=b_bare, mbody=back, mtype="chat")
        await bob.wait_messages("sm: bob receives alice's message sent after resumption", has_body(back))
        last = "sm after " + tag
        send(last, a_bare)
        await alice.wait_messages("sm: alice receives bob's message sent after resumption", has_body(last))
        await alice.ping()
        await asyncio.sleep(0.5)

        Steps.start("sm: every message exactly once, in order")
        got = [b for b in alice.bodies() if b in sent]
        c = counts(got, sent)
        lost = [b for b in sent if c[b] == 0]
        dups = {b: n for b, n in c.items() if n > 1}
        if lost or dups:
            raise Failure("sm: lost %s; duplicated %s (received in this order: %s)" % (lost, dups, got))
        if got != sent:
            raise Failure("sm: out of order: sent %s, received %s" % (sent, got))
        Steps.ok("sm: alice received all %d messages exactly once, in order" % len(sent))
    finally:
        await alice.close()
        await bob.close()


# ---------------------------------------------------------------- carbons ---

def carbon_of(kind, body):
    def pred(st):
        c = carbon(st)
        return c is not None and c[0] == kind and body_of(c[1]) == body
    return pred


def sightings(client, body):
    """(originals, received carbons, sent carbons) of body at client."""
    o = [m for m in client.messages if body_of(m.xml) == body]
    r = [m for m in client.messages if carbon_of("received", body)(m)]
    s = [m for m in client.messages if carbon_of("sent", body)(m)]
    return o, r, s


def check_carbon_wrapper(who, st, a_bare, kind, frm_bare, to_bare):
    """The wrapper comes from the user's bare JID; the forwarded message is the right one."""
    if st["from"].full != a_bare:
        raise Failure("carbons: %s's %s carbon comes from %r, want the bare JID %s: %s"
                      % (who, kind, st["from"].full, a_bare, st))
    inner = carbon(st)[1]
    f, t = JID(inner.get("from", "")), JID(inner.get("to", ""))
    if f.bare != frm_bare or t.bare != to_bare:
        raise Failure("carbons: %s's %s carbon forwards from=%s to=%s, want %s -> %s"
                      % (who, kind, f, t, frm_bare, to_bare))


async def part_carbons(args, tag):
    a_bare, b_bare = JID(args.alice).bare, JID(args.bob).bare
    a1 = MobileClient("alice/phone", a_bare, args.alice_password, args,
                      resource="phone-cc-" + tag, plugins=["xep_0280"])
    a2 = MobileClient("alice/laptop", a_bare, args.alice_password, args,
                      resource="laptop-cc-" + tag, plugins=["xep_0280"])
    bob = MobileClient("bob", b_bare, args.bob_password, args, resource="cc-" + tag)
    clients = (a1, a2, bob)
    try:
        await a1.login(presence=False)
        await a2.login(presence=False)
        a1.x.send_presence(ppriority=10)
        a2.x.send_presence(ppriority=0)
        for c in (a1, a2):
            Steps.start("carbons: %s enables carbons" % c.name)
            await c.x["xep_0280"].enable(timeout=args.step_timeout)
            await c.ping()  # its presence and the enable are processed
            Steps.ok("carbons: %s (%s) enabled carbons" % (c.name, c.jid.full))
        await bob.login()

        # 1. To the bare JID (priorities 10 and 0): each resource sees it once.
        body = "carbons to bare " + tag
        bob.x.send_message(mto=a_bare, mbody=body, mtype="chat")
        seen = lambda st: body_of(st.xml) == body or carbon_of("received", body)(st)  # noqa: E731
        for c in (a1, a2):
            await c.wait_messages("carbons: %s sees bob's message to the bare JID" % c.name, seen)
        for c in clients:
            await c.ping()
        dist = {}
        for c in (a1, a2):
            o, r, s = sightings(c, body)
            if len(o) + len(r) != 1 or s:
                raise Failure("carbons: %s saw bob's bare-JID message %d times as original, %d as "
                              "received carbon, %d as sent carbon; want exactly once"
                              % (c.name, len(o), len(r), len(s)))
            if r:
                check_carbon_wrapper(c.name, r[0], a_bare, "received", b_bare, a_bare)
            dist[c.name] = "original" if o else "received carbon"
        if dist[a1.name] == dist[a2.name] == "original":
            note = "the server delivered the original to both resources (RFC 6121 8.5.2.1.1 (b))"
        else:
            note = "the %s got the original" % ("priority-10 resource" if dist[a1.name] == "original"
                                                 else "priority-0 resource (not the most available)")
        Steps.ok("carbons: bare JID: %s; %s" % (dist, note))

        # 2. To alice/phone's full JID: alice/laptop gets a 'received' carbon.
        body = "carbons to full " + tag
        bob.x.send_message(mto=a1.jid.full, mbody=body, mtype="chat")
        await a1.wait_messages("carbons: alice/phone receives bob's message to her full JID", has_body(body))
        rc = await a2.wait_messages("carbons: alice/laptop gets a 'received' carbon of it",
                                    carbon_of("received", body))
        check_carbon_wrapper(a2.name, rc[0], a_bare, "received", b_bare, a_bare)
        for c in clients:
            await c.ping()
        for c, want in ((a1, (1, 0, 0)), (a2, (0, 1, 0))):
            got = tuple(len(x) for x in sightings(c, body))
            if got != want:
                raise Failure("carbons: %s saw the full-JID message (original, received, sent) = %s, want %s"
                              % (c.name, got, want))
        Steps.ok("carbons: full JID: alice/phone got the original, alice/laptop one 'received' carbon")

        # 3. alice/phone -> bob: alice/laptop gets a 'sent' carbon.
        body = "carbons sent " + tag
        a1.x.send_message(mto=b_bare, mbody=body, mtype="chat")
        await bob.wait_messages("carbons: bob receives alice/phone's message", has_body(body))
        sc = await a2.wait_messages("carbons: alice/laptop gets a 'sent' carbon of it",
                                    carbon_of("sent", body))
        check_carbon_wrapper(a2.name, sc[0], a_bare, "sent", a_bare, b_bare)
        for c in clients:
            await c.ping()
        for c, want in ((a1, (0, 0, 0)), (a2, (0, 0, 1)), (bob, (1, 0, 0))):
            got = tuple(len(x) for x in sightings(c, body))
            if got != want:
                raise Failure("carbons: %s saw alice/phone's message (original, received, sent) = %s, want %s"
                              % (c.name, got, want))
        Steps.ok("carbons: sent: bob got it once, alice/laptop one 'sent' carbon, alice/phone nothing back")

        # Last, so a failure here means "works, but clients will not use it".
        Steps.start("carbons: server disco#info lists urn:xmpp:carbons:2")
        _, feats = await a1.disco_info(a1.jid.domain)
        if CARBONS_NS not in feats:
            raise Failure("carbons: %s does not advertise %s (clients check it before enabling): %s"
                          % (a1.jid.domain, CARBONS_NS, sorted(feats)))
        Steps.ok("carbons: the server advertises %s" % CARBONS_NS)
    finally:
        for c in clients:
            await c.close()


# -------------------------------------------------------------------- mam ---

def mam_entry(msg):
    """(result id, body, from bare, to bare, delay stamp) of a MAM result message."""
    res = msg.xml.find("{%s}result" % MAM_NS)
    if res is None:
        raise Failure("mam: a collected message has no <result/>: %s" % msg)
    fwd = None
    for child in res:
        if local(child.tag) == "forwarded":
            fwd = child
    if fwd is None:
        raise Failure("mam: result %s has no <forwarded/>: %s" % (res.get("id"), msg))
    inner = inner_message(fwd)
    delay = fwd.find("{%s}delay" % DELAY_NS)
    if inner is None or delay is None or not delay.get("stamp"):
        raise Failure("mam: result %s lacks the forwarded <message/> or its <delay stamp/>: %s"
                      % (res.get("id"), msg))
    return (res.get("id", ""), body_of(inner), JID(inner.get("from", "")).bare,
            JID(inner.get("to", "")).bare, delay.get("stamp"))


def fin_info(iq):
    """(complete, first, last, count) of a MAM <fin/>."""
    fin = iq.xml.find("{%s}fin" % MAM_NS)
    if fin is None:
        raise Failure("mam: the query's result has no <fin/>: %s" % iq)
    rsm = fin.find("{http://jabber.org/protocol/rsm}set")

    def text(name):
        el = rsm.find("{http://jabber.org/protocol/rsm}" + name) if rsm is not None else None
        return el.text if el is not None else None

    return fin.get("complete") in ("true", "1"), text("first"), text("last"), text("count")


async def part_mam(args, tag):
    a_bare, b_bare = JID(args.alice).bare, JID(args.bob).bare
    alice = MobileClient("alice", a_bare, args.alice_password, args,
                         resource="phone-mam-" + tag, plugins=["xep_0313"])
    bob = MobileClient("bob", b_bare, args.bob_password, args, resource="mam-" + tag)
    try:
        await alice.login()
        await bob.login()

        n, block = args.mam_count, 10
        expected = []  # (body, from bare) in archive order
        live_ids = {}  # body -> alice's stanza-id (by her bare JID) on bob's messages
        Steps.start("mam: alice and bob exchange %d messages" % n)
        for start in range(0, n, block):
            sender, receiver, frm = (bob, alice, b_bare) if (start // block) % 2 == 0 else (alice, bob, a_bare)
            bodies = ["mam %03d %s" % (i, tag) for i in range(start, min(n, start + block))]
            for b in bodies:
                sender.x.send_message(mto=receiver.jid.bare, mbody=b, mtype="chat")
                expected.append((b, frm))
            got = await receiver.wait_messages("mam: %s receives messages %d.." % (receiver.name, start),
                                               lambda st, bs=set(bodies): body_of(st.xml) in bs,
                                               n=len(bodies))
            if receiver is alice:
                for m in got:
                    ids = [i for by, i in stanza_ids(m) if JID(by).bare == a_bare]
                    if len(ids) != 1 or not ids[0]:
                        raise Failure("mam: bob's message as delivered to alice carries stanza-ids %s, "
                                      "want one <stanza-id by='%s'/> (XEP-0313 mam:2 / XEP-0359): %s"
                                      % (stanza_ids(m), a_bare, m))
                    live_ids[body_of(m.xml)] = ids[0]
        Steps.ok("mam: exchanged %d messages; bob's carry alice's <stanza-id/>" % n)

        # Forward paging with retrieve(): page by page, after=<last>.
        xep = alice.x["xep_0313"]
        entries, pages, after = [], [], None
        Steps.start("mam: alice pages her archive with bob (max %d)" % args.mam_page)
        for _ in range(n // args.mam_page + 50):
            rsm = {"max": args.mam_page}
            if after:
                rsm["after"] = after
            res = await xep.retrieve(with_jid=JID(b_bare), rsm=rsm, timeout=args.step_timeout)
            page = [mam_entry(m) for m in res["mam"]["results"]]
            complete, first, last, count = fin_info(res)
            pages.append((len(page), complete, count))
            if len(page) > args.mam_page:
                raise Failure("mam: a page of max %d has %d results" % (args.mam_page, len(page)))
            if page and (first != page[0][0] or last != page[-1][0]):
                raise Failure("mam: RSM first/last %s/%s do not match the page's ids %s/%s"
                              % (first, last, page[0][0], page[-1][0]))
            entries.extend(page)
            if complete or not page:
                break
            if len(page) < args.mam_page:
                raise Failure("mam: a page with %d < max %d results, without complete='true' "
                              "(pages so far (results, complete, count): %s)" % (len(page), args.mam_page, pages))
            after = last
        else:
            raise Failure("mam: paging did not end (pages (results, complete, count): %s)" % pages)
        if not pages[-1][1]:
            raise Failure("mam: the last page lacks <fin complete='true'/> (pages: %s)" % pages)
        Steps.ok("mam: %d pages (results, complete, count): %s" % (len(pages), pages))

        Steps.start("mam: the archive holds every message once, in order, with ids")
        ids = [e[0] for e in entries]
        if any(not i for i in ids) or len(set(ids)) != len(ids):
            raise Failure("mam: result ids missing or repeated: %s" % ids)
        bodies = [e[1] for e in entries]
        dups = sorted({b for b in bodies if bodies.count(b) > 1})
        if dups:
            first = [e for e in entries if e[1] == dups[0]]
            raise Failure("mam: %d bodies archived more than once (of %d results), e.g. %r as "
                          "(id, from, to, stamp) %s; all: %s"
                          % (len(dups), len(entries), dups[0],
                             [(e[0], e[2], e[3], e[4]) for e in first], dups[:5] + ["..."][:len(dups) > 5]))
        mine = [(e[1], e[2]) for e in entries if e[1] and e[1].startswith("mam ") and e[1].endswith(tag)]
        if mine != expected:
            missing = [b for b, _ in expected if b not in bodies]
            raise Failure("mam: archive with bob does not hold the %d messages in order: missing %s; "
                          "got %d of ours in order %s" % (n, missing, len(mine), [b for b, _ in mine]))
        for e in entries:
            if e[1] in live_ids and live_ids[e[1]] != e[0]:
                raise Failure("mam: result id %s for %r differs from the live stanza-id %s"
                              % (e[0], e[1], live_ids[e[1]]))
            if {e[2], e[3]} != {a_bare, b_bare}:
                raise Failure("mam: result %s is %s -> %s, not between alice and bob" % (e[0], e[2], e[3]))
        Steps.ok("mam: all %d messages once, in order (from/to right, ids = live stanza-ids); "
                 "archive with bob holds %d" % (n, len(entries)))

        # The same through slixmpp's iterate() (what a client library does).
        Steps.start("mam: slixmpp iterate() over the archive")
        it_ids = []
        async for m in xep.iterate(with_jid=JID(b_bare), rsm={"max": args.mam_page}):
            it_ids.append(mam_entry(m)[0])
        if it_ids != ids:
            raise Failure("mam: iterate() yields %d results, paging %d (first mismatch at %s)"
                          % (len(it_ids), len(ids),
                             next((i for i, (x, y) in enumerate(zip(it_ids, ids)) if x != y), "end")))
        Steps.ok("mam: iterate() yields the same %d results" % len(it_ids))

        # A reverse page: <before/> with max k gives the newest k, in chronological order.
        k = 10
        Steps.start("mam: a <before/> page of max %d" % k)
        rit = xep.retrieve(with_jid=JID(b_bare), iterator=True, reverse=True, rsm={"max": k})
        try:
            res = await rit.next()
        except StopAsyncIteration:
            raise Failure("mam: the <before/> query returned no page (or an error slixmpp "
                          "swallows; rerun with --debug)") from None
        newest = [mam_entry(m) for m in res["mam"]["results"]]
        if [e[0] for e in newest] != ids[-k:]:
            raise Failure("mam: the <before/> page holds %s, want the newest %d: %s"
                          % ([e[1] for e in newest], k, [e[1] for e in entries[-k:]]))
        Steps.ok("mam: the <before/> page holds the newest %d (%r .. %r)" % (k, newest[0][1], newest[-1][1]))

        # Last, so a failure here means "works, but clients will not use it".
        Steps.start("mam: disco#info on alice's bare JID lists urn:xmpp:mam:2")
        _, feats = await alice.disco_info(a_bare)
        if MAM_NS not in feats:
            raise Failure("mam: %s does not advertise %s (clients check it before querying): %s"
                          % (a_bare, MAM_NS, sorted(feats)))
        Steps.ok("mam: alice's account advertises %s" % MAM_NS)
    finally:
        await alice.close()
        await bob.close()


# -------------------------------------------------------------------- pep ---

async def part_pep(args, tag):
    from slixmpp.plugins.xep_0118.stanza import UserTune

    a_bare, b_bare, c_bare = JID(args.alice).bare, JID(args.bob).bare, JID(args.carol).bare
    notify = TUNE_NS + "+notify"
    alice = MobileClient("alice", a_bare, args.alice_password, args,
                         resource="phone-pep-" + tag, plugins=["xep_0163"])
    opened = [alice]
    try:
        await alice.login()

        # Subscriptions first, with plain clients.
        for name, bare, pw in (("bob", b_bare, args.bob_password), ("carol", c_bare, args.carol_password)):
            c = MobileClient(name, bare, pw, args, resource="setup-" + tag)
            opened.append(c)
            await c.login()
            await subscribe_mutually(alice, c)
            await c.close()

        # Then they come back: bob with tune+notify in his caps, carol without.
        bob = MobileClient("bob", b_bare, args.bob_password, args,
                           resource="phone-pep-" + tag, plugins=["xep_0118"])
        carol = MobileClient("carol", c_bare, args.carol_password, args,
                             resource="phone-pep-" + tag, plugins=["xep_0115"])
        opened += [bob, carol]
        for c, want in ((bob, True), (carol, False)):
            await c.login(presence=False)
            await c.x["xep_0115"].update_caps(broadcast=False)
            info = await c.x["xep_0030"].get_info(jid=c.jid.full, local=True)
            if isinstance(info, slixmpp.Iq):
                info = info["disco_info"]
            if (notify in info["features"]) != want:
                raise Failure("pep: script bug: %s's features %s %s %s"
                              % (c.name, info["features"], "lack" if want else "include", notify))
            ver = await c.x["xep_0115"].get_verstring(c.jid.full)
            c.x.send_presence()
            Steps.ok("pep: %s is online with caps ver=%s (%s %s)"
                     % (c.name, ver, "with" if want else "without", notify))
        # The server (a bare JID: a PEP service) asks for the caps it does not
        # know yet; alice's own client may ask too (from her full JID).
        for c in (bob, carol):
            Steps.start("pep: the server looks up %s's caps" % c.name)
            q = await c.wait_disco_query(5, lambda frm, node: "/" not in frm)
            if q:
                Steps.ok("pep: %s answered disco#info from %s node=%s" % ((c.name,) + q))
            else:
                Steps.ok("pep: note: no disco#info query from a bare JID reached %s within 5 s "
                         "(caps cached by ver?); queries seen: %s" % (c.name, c.disco_queries))

        title = "Hearth interop " + tag
        item_id = "tune-" + tag
        tune = UserTune()
        tune["title"] = title
        tune["artist"] = "The Phones"
        Steps.start("pep: alice publishes a tune")
        try:
            await alice.x["xep_0163"].publish(tune, node=TUNE_NS, id=item_id, timeout=args.step_timeout)
        except IqError as e:
            raise Failure("pep: alice's publish to her own account was refused with <%s/>%s "
                          "(no PEP service for accounts?): %s"
                          % (e.iq["error"]["condition"], (" " + e.iq["error"]["text"]) if e.iq["error"]["text"] else "",
                             e.iq)) from None
        Steps.ok("pep: alice published item %s to %s" % (item_id, TUNE_NS))

        def is_item(st):
            for it in pep_items(st, TUNE_NS):
                t = it.find("{%s}tune" % TUNE_NS)
                tt = t.find("{%s}title" % TUNE_NS) if t is not None else None
                if it.get("id") == item_id and tt is not None and tt.text == title:
                    return True
            return False

        got = await bob.wait_messages("pep: bob gets the pubsub#event for alice's tune", is_item)
        if got[0]["from"].full != a_bare:
            raise Failure("pep: the notification comes from %r, want %s" % (got[0]["from"].full, a_bare))
        Steps.ok("pep: bob got the pubsub#event from %s (type=%s)" % (a_bare, got[0]["type"] or "normal"))

        Steps.start("pep: carol (no +notify) gets no notification")
        await carol.ping()
        await asyncio.sleep(2)
        await carol.ping()
        bad = [m for m in carol.messages if pep_items(m, TUNE_NS)
               or m.xml.find("{http://jabber.org/protocol/pubsub#event}event") is not None]
        if bad:
            raise Failure("pep: carol, without %s, got %d pubsub#event message(s), first: %s"
                          % (notify, len(bad), bad[0]))
        n_bob = len([m for m in bob.messages if is_item(m)])
        Steps.ok("pep: carol got no notification within 2 s (bob got %d)" % n_bob)

        # Last, so a failure here means "works, but clients will not use it".
        Steps.start("pep: disco#info on alice's bare JID has identity pubsub/pep")
        idents, _ = await alice.disco_info(a_bare)
        if ("pubsub", "pep") not in idents:
            raise Failure("pep: %s has identities %s, want pubsub/pep (XEP-0163 3; clients check it)"
                          % (a_bare, idents))
        Steps.ok("pep: alice's account is a PEP service (identity pubsub/pep)")
    finally:
        for c in opened:
            await c.close()


async def main(args):
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise Failure("--parts: unknown %s (choose from %s)" % (unknown, ",".join(PARTS)))
    if "pep" in parts and not (args.carol and args.carol_password):
        raise Failure("the pep part needs --carol and --carol-password")
    tag = secrets.token_hex(4)
    for p in PARTS:
        if p in parts:
            await globals()["part_" + p](args, tag)
            Steps.ok("part %s passed" % p)


class _QuietResumeAck(logging.Filter):
    """slixmpp 1.8.3 empties its unacked queue when it sends <resume/>, then logs
    "Inconsistent sequence numbers" for any non-zero h in <resumed/>. That is a
    client quirk (part_sm checks h itself), so keep it out of the output."""

    def filter(self, record):
        return "Inconsistent sequence numbers" not in record.getMessage()


logging.getLogger("slixmpp.plugins.xep_0198.stream_management").addFilter(_QuietResumeAck())


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(timeout=80.0)
    p.add_argument("--alice", required=True, help="first user's bare JID")
    p.add_argument("--alice-password", required=True)
    p.add_argument("--bob", required=True, help="second user's bare JID")
    p.add_argument("--bob-password", required=True)
    p.add_argument("--carol", help="third user's bare JID (pep part)")
    p.add_argument("--carol-password")
    p.add_argument("--parts", default=",".join(PARTS),
                   help="comma-separated parts to run (default: %(default)s)")
    p.add_argument("--mam-count", type=int, default=120, help="messages for the mam part (default: %(default)s)")
    p.add_argument("--mam-page", type=int, default=50, help="RSM page size (default: %(default)s)")
    run(main, p.parse_args())
