"""Helpers for scripts/interop/mobile.py: what phones need from a server.

Built on xmpptest.Client (same TLS, SASL and timeout rules): a client that
also records every message stanza (with or without a body: carbons, MAM
results, PEP events), counts session events (session_start,
session_resumed, sm_enabled, sm_failed), can drop its TCP connection without
closing the stream, and reconnect.

Raw XML is read with ElementTree wherever a check matters, so a check does
not depend on which slixmpp stanza plugins happen to be registered.
"""

import asyncio
import socket
import struct
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from xmpptest import Client, Failure, Steps, roster_items

CLIENT_NS = "jabber:client"
CARBONS_NS = "urn:xmpp:carbons:2"
FORWARD_NS = "urn:xmpp:forward:0"
DELAY_NS = "urn:xmpp:delay"
MAM_NS = "urn:xmpp:mam:2"
SID_NS = "urn:xmpp:sid:0"
PING_NS = "urn:xmpp:ping"
SM_NS = "urn:xmpp:sm:3"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
PUBSUB_EVENT_NS = "http://jabber.org/protocol/pubsub#event"
TUNE_NS = "http://jabber.org/protocol/tune"


def local(tag):
    """Local name of an ElementTree tag ('{ns}name' -> 'name')."""
    return tag.rsplit("}", 1)[-1]


def inner_message(el):
    """The first child element named 'message' (any namespace), or None."""
    for child in el:
        if local(child.tag) == "message":
            return child
    return None


def body_of(msg_el):
    """Text of the <body/> child of a raw <message/> element (any namespace)."""
    if msg_el is None:
        return None
    for child in msg_el:
        if local(child.tag) == "body":
            return child.text or ""
    return None


def carbon(st):
    """('received'|'sent', forwarded <message/> element) for a carbon, else None."""
    for kind in ("received", "sent"):
        wrapper = st.xml.find("{%s}%s" % (CARBONS_NS, kind))
        if wrapper is not None:
            fwd = wrapper.find("{%s}forwarded" % FORWARD_NS)
            return kind, (inner_message(fwd) if fwd is not None else None)
    return None


def stanza_ids(st):
    """[(by, id)] of the XEP-0359 <stanza-id/> children of a message."""
    return [(el.get("by", ""), el.get("id", ""))
            for el in st.xml.findall("{%s}stanza-id" % SID_NS)]


def pep_items(st, node):
    """The <item/> elements of a pubsub#event notification for node, or []."""
    ev = st.xml.find("{%s}event" % PUBSUB_EVENT_NS)
    if ev is None:
        return []
    items = ev.find("{%s}items" % PUBSUB_EVENT_NS)
    if items is None or items.get("node") != node:
        return []
    return items.findall("{%s}item" % PUBSUB_EVENT_NS)


class MobileClient(Client):
    """xmpptest.Client plus message/event recording, SM drop and reconnect."""

    def __init__(self, name, jid, password, args, resource=None, plugins=(), plugin_config=None):
        super().__init__(name, jid, password, args, resource=resource)
        for p in plugins:
            self.x.register_plugin(p, pconfig=(plugin_config or {}).get(p))
        self.messages = []  # every <message/> received, in arrival order, never removed
        self.disco_queries = []  # (from, node) of disco#info gets received
        self.events = {}  # event name -> list of payloads
        self._msg_changed = asyncio.Event()
        self._event_changed = asyncio.Event()
        self.x.register_handler(Callback(
            "mobile: every message", MatchXPath("{%s}message" % CLIENT_NS), self._record_message))
        self.sm_answers = []  # <enabled/>, <resumed/>, <failed/> (raw elements) from the server
        for what in ("enabled", "resumed", "failed"):
            self.x.register_handler(Callback(
                "mobile: sm " + what, MatchXPath("{%s}%s" % (SM_NS, what)),
                lambda st: self.sm_answers.append(st.xml)))
        self.stream_features = []  # [{namespace}tag, ...] of each <stream:features/> received
        self.x.register_handler(Callback(
            "mobile: stream features",
            MatchXPath("{http://etherx.jabber.org/streams}features"),
            lambda f: self.stream_features.append([c.tag for c in f.xml])))
        self.x.register_handler(Callback(
            "mobile: disco#info gets",
            MatchXPath("{%s}iq/{%s}query" % (CLIENT_NS, DISCO_INFO_NS)), self._record_disco))
        for ev in ("session_start", "session_resumed", "sm_enabled", "sm_failed",
                   "disconnected", "session_end", "stream_error"):
            self.x.add_event_handler(ev, self._event_recorder(ev))

    def _record_message(self, st):
        self.messages.append(st)
        self._msg_changed.set()

    def _record_disco(self, iq):
        if iq["type"] == "get":
            q = iq.xml.find("{%s}query" % DISCO_INFO_NS)
            self.disco_queries.append((iq["from"].full, q.get("node", "") if q is not None else ""))
            self._msg_changed.set()

    def _event_recorder(self, name):
        def handler(data):
            self.events.setdefault(name, []).append(data)
            self._event_changed.set()
        return handler

    def count(self, name):
        return len(self.events.get(name, []))

    async def wait_event(self, what, names, timeout=None):
        """Wait until one of the events in names has fired more often than now-known
        baselines; names is {event: count already seen}. Returns the event name."""
        Steps.start(what)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.args.step_timeout)
        while True:
            for name, seen in names.items():
                if self.count(name) > seen:
                    return name
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Failure("timed out waiting: %s" % what)
            self._event_changed.clear()
            try:
                await asyncio.wait_for(self._event_changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_messages(self, what, pred, n=1, timeout=None):
        """Wait until at least n recorded messages satisfy pred; return them all."""
        Steps.start(what)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.args.step_timeout)
        while True:
            got = [m for m in self.messages if pred(m)]
            if len(got) >= n:
                return got
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Failure("timed out waiting: %s (have %d of %d)" % (what, len(got), n))
            self._msg_changed.clear()
            try:
                await asyncio.wait_for(self._msg_changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_disco_query(self, timeout, pred=lambda frm, node: True):
        """Wait up to timeout for a disco#info get (from, node) satisfying pred;
        return it, or None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for q in self.disco_queries:
                if pred(*q):
                    return q
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._msg_changed.clear()
            try:
                await asyncio.wait_for(self._msg_changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def bodies(self):
        """Bodies of the recorded messages that carry a direct <body/>, in order."""
        return [b for b in (body_of(m.xml) for m in self.messages) if b is not None]

    async def close(self):
        await super().close()
        # slixmpp 1.8.3 leaves its output-filter task pending after a disconnect;
        # cancel it so a collected client does not log "Task was destroyed".
        task = getattr(self.x, "_run_out_filters", None)
        if task is not None and not task.done() and self.x.transport is None:
            task.cancel()

    async def ping(self, to=None):
        """XEP-0199 ping (raw IQ) to the server or to; a round trip orders the stream."""
        iq = self.x.Iq()
        iq["type"] = "get"
        if to:
            iq["to"] = to
        iq.xml.append(ET.Element("{%s}ping" % PING_NS))
        await iq.send(timeout=self.args.step_timeout)

    async def disco_info(self, to):
        """(identities [(category, type)], features set) of a disco#info query to 'to'."""
        iq = self.x.Iq()
        iq["type"] = "get"
        iq["to"] = to
        iq.xml.append(ET.Element("{%s}query" % DISCO_INFO_NS))
        res = await iq.send(timeout=self.args.step_timeout)
        q = res.xml.find("{%s}query" % DISCO_INFO_NS)
        if q is None:
            return [], set()
        ids = [(i.get("category", ""), i.get("type", ""))
               for i in q.findall("{%s}identity" % DISCO_INFO_NS)]
        feats = {f.get("var", "") for f in q.findall("{%s}feature" % DISCO_INFO_NS)}
        return ids, feats

    def drop_connection(self):
        """Lose the TCP connection like a phone leaving coverage: no </stream:stream>,
        no TLS close_notify; SO_LINGER 0 makes the kernel send a RST."""
        t = self.x.transport
        if t is None:
            raise Failure("%s: no transport to drop" % self.name)
        sock = t.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        # The TLS transport's abort() aborts the TCP transport under it at once
        # (xmlstream.abort() would call close() first, which starts a TLS shutdown).
        t.abort()

    def reconnect(self):
        """Open a new TCP connection with the same settings as login(); the xep_0198
        plugin resumes by itself when it holds an SM id."""
        self.x.connect(address=(self.args.host, self.args.port),
                       use_ssl=self.args.direct_tls,
                       force_starttls=not self.args.direct_tls)


def is_presence(frm, ptype):
    """A presence of type ptype from frm (full JID, or bare JID for any resource)."""

    def pred(st):
        if not isinstance(st, slixmpp.Presence) or st["type"] != ptype:
            return False
        return st["from"].full == frm if "/" in frm else st["from"].bare == frm

    return pred


async def subscribe_mutually(a, b):
    """Make a and b (logged in, presence sent) mutually subscribed (RFC 6121 3.1),
    answering by hand as two_users.py does. Skips when already 'both'."""
    a_bare, b_bare = a.jid.bare, b.jid.bare
    Steps.start("%s and %s check their rosters" % (a.name, b.name))
    ra, rb = await a.roster(), await b.roster()
    if ra.get(b_bare, ("",))[0] == "both" and rb.get(a_bare, ("",))[0] == "both":
        Steps.ok("%s and %s are already mutually subscribed" % (a.name, b.name))
        return
    a.x.send_presence(pto=b_bare, ptype="subscribe")
    await b.wait_for("%s receives %s's subscription request" % (b.name, a.name),
                     is_presence(a_bare, "subscribe"))
    b.x.send_presence(pto=a_bare, ptype="subscribed")
    b.x.send_presence(pto=a_bare, ptype="subscribe")
    await a.wait_for("%s receives %s's approval" % (a.name, b.name), is_presence(b_bare, "subscribed"))
    await a.wait_for("%s receives %s's subscription request" % (a.name, b.name),
                     is_presence(b_bare, "subscribe"))
    a.x.send_presence(pto=b_bare, ptype="subscribed")
    await b.wait_for("%s receives %s's approval" % (b.name, a.name), is_presence(a_bare, "subscribed"))
    what = "%s's and %s's rosters show subscription=both" % (a.name, b.name)
    Steps.start(what)
    ra, rb = await a.roster(), await b.roster()
    if ra.get(b_bare, ("",))[0] != "both" or rb.get(a_bare, ("",))[0] != "both":
        raise Failure("%s: %s has %r, %s has %r" % (what, a.name, ra.get(b_bare), b.name, rb.get(a_bare)))
    Steps.ok("%s and %s are mutually subscribed" % (a.name, b.name))


__all__ = [
    "CARBONS_NS", "DELAY_NS", "FORWARD_NS", "MAM_NS", "PUBSUB_EVENT_NS", "SID_NS", "TUNE_NS",
    "SM_NS", "MobileClient", "body_of", "carbon", "inner_message", "is_presence", "local", "pep_items",
    "roster_items", "stanza_ids", "subscribe_mutually",
]
