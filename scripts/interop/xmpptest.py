"""Shared helpers for Hearth's slixmpp interop scripts.

Run the scripts with Debian's interpreter (/usr/bin/python3): python3-slixmpp
(1.8.3) is installed for it, not for a pyenv/venv python that may be first on
PATH.

Every wait is bounded. A script prints one "ok: ..." line per checked step and
ends with "PASS" (exit 0) or "FAIL: ..." (exit 1).
"""

import argparse
import asyncio
import logging
import ssl
import sys
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import slixmpp

DELAY_NS = "urn:xmpp:delay"
ROSTER_NS = "jabber:iq:roster"

# slixmpp 1.8.3 implements SCRAM-*-PLUS with tls-unique only, which does not
# exist under TLS 1.3: restrict it to the non-PLUS SCRAM mechanisms.
DEFAULT_MECHS = "SCRAM-SHA-512,SCRAM-SHA-256,SCRAM-SHA-1"


class Failure(Exception):
    """A checked step failed."""


class Steps:
    """Tracks the step in progress so a timeout can say where it happened."""

    current = "start"

    @classmethod
    def start(cls, what):
        cls.current = what

    @classmethod
    def ok(cls, what):
        print("ok: " + what, flush=True)


def add_common_args(p):
    p.add_argument("--host", default="127.0.0.1", help="server address to connect to")
    p.add_argument("--port", type=int, default=5222, help="c2s port")
    p.add_argument("--direct-tls", action="store_true",
                   help="connect with direct TLS (XEP-0368) instead of STARTTLS")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ca", help="PEM file to verify the server certificate against "
                   "(e.g. the self-signed DATA/tls/cert.pem)")
    g.add_argument("--insecure", action="store_true",
                   help="do not verify the server certificate")
    p.add_argument("--mechs", default=DEFAULT_MECHS,
                   help="comma-separated SASL mechanisms allowed (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="overall timeout in seconds (default: %(default)s)")
    p.add_argument("--step-timeout", type=float, default=15.0,
                   help="timeout for one step in seconds (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help="log slixmpp debug output to stderr")


def setup_logging(args):
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def roster_items(iq):
    """{bare jid: (subscription, ask)} of the items in a roster result or push."""
    items = {}
    q = iq.xml.find("{%s}query" % ROSTER_NS)
    if q is not None:
        for item in q.findall("{%s}item" % ROSTER_NS):
            items[item.get("jid", "")] = (item.get("subscription", "none"), item.get("ask", ""))
    return items


def delay_stamp(msg):
    """Return (stamp, from) of a XEP-0203 <delay/> child, or None.

    Reads the raw XML: slixmpp's XEP-0082 date parsing is not trusted here.
    """
    el = msg.xml.find("{%s}delay" % DELAY_NS)
    if el is None:
        return None
    stamp = el.get("stamp", "")
    try:
        datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError as e:
        raise Failure("delay stamp %r is not a XEP-0082 DateTime: %s" % (stamp, e)) from e
    return stamp, el.get("from", "")


class Client:
    """A slixmpp client that records what it receives, for bounded waits."""

    def __init__(self, name, jid, password, args, resource=None):
        self.name = name
        self.args = args
        full = jid + "/" + resource if resource else jid
        mechs = [m.strip() for m in args.mechs.split(",") if m.strip()]
        self.x = slixmpp.ClientXMPP(
            full, password,
            plugin_config={"feature_mechanisms": {"use_mechs": mechs}})
        # With channel-binding data at hand, slixmpp 1.8.3 sends the gs2 flag
        # "y" on a non-PLUS SCRAM, which a server that offers -PLUS must reject
        # as a downgrade (RFC 5802 6). Withhold the data so it sends "n".
        fm = self.x["feature_mechanisms"]
        default_creds = fm.sasl_callback

        def creds_without_cb(required, optional):
            c = default_creds(required, optional)
            c.pop("channel_binding", None)
            return c

        fm.sasl_callback = creds_without_cb
        self.x.register_plugin("xep_0030")
        self.x.register_plugin("xep_0203")
        # Subscription requests are answered by the scripts, not by slixmpp.
        self.x.auto_authorize = None
        self.x.auto_subscribe = False
        if args.ca:
            if not Path(args.ca).is_file():
                raise Failure("CA file %s does not exist" % args.ca)
            self.x.ca_certs = Path(args.ca)
            self.x.ssl_context.check_hostname = True
        else:
            self.x.ssl_context.check_hostname = False
            self.x.ssl_context.verify_mode = ssl.CERT_NONE
        self.received = []  # messages and presences, in arrival order
        self._changed = asyncio.Event()
        self._session = asyncio.get_running_loop().create_future()
        self.x.add_event_handler("message", self._record)
        self.x.add_event_handler("presence", self._record)
        self.x.add_event_handler("roster_update", self._record_push)
        self.x.add_event_handler("session_start", self._on_session_start)
        self.x.add_event_handler("connection_failed", self._on_error("connection failed"))
        self.x.add_event_handler("failed_auth", self._on_failed_auth)
        self.x.add_event_handler("failed_all_auth", self._on_error("authentication failed"))
        self.x.add_event_handler("no_auth", self._on_error("no acceptable SASL mechanism"))
        self.x.add_event_handler("stream_error", self._on_error("stream error"))
        self.x.add_event_handler("ssl_invalid_chain", self._on_error("invalid TLS certificate"))
        self.x.add_event_handler("disconnected", self._on_error("disconnected before login"))
        self.mech = None
        self._sasl_failure = None

    def _record(self, stanza):
        self.received.append(stanza)
        self._changed.set()

    def _record_push(self, iq):
        if iq["type"] == "set":
            self._record(iq)

    def _on_session_start(self, _event):
        if not self._session.done():
            self._session.set_result(True)

    def _on_error(self, what):
        def handler(event):
            if self._session.done():
                return
            detail = str(event) if event is not None else ""
            if what in ("authentication failed", "no acceptable SASL mechanism"):
                fm = self.x["feature_mechanisms"]
                detail = "server offers %s; allowed here: %s; last SASL failure: %s" % (
                    sorted(fm.mech_list), self.args.mechs, self._sasl_failure or "none")
            self._session.set_exception(Failure("%s: %s: %s" % (self.name, what, detail)))
        return handler

    def _on_failed_auth(self, failure):
        try:
            self._sasl_failure = "%s %s" % (failure["condition"], failure["text"] or "")
        except Exception:  # pylint: disable=broad-except
            self._sasl_failure = str(failure)

    def _abort(self):
        try:
            self.x.cancel_connection_attempt()
            if self.x.transport is not None:
                self.x.abort()
        except Exception:  # pylint: disable=broad-except
            pass

    @property
    def jid(self):
        return self.x.boundjid

    async def login(self, presence=True):
        """Connect, authenticate, bind; send initial presence if asked."""
        what = "%s logs in (%s)" % (self.name, "direct TLS" if self.args.direct_tls else "STARTTLS")
        Steps.start(what)
        self.x.connect(address=(self.args.host, self.args.port),
                       use_ssl=self.args.direct_tls,
                       force_starttls=not self.args.direct_tls)
        try:
            await asyncio.wait_for(asyncio.shield(self._session), self.args.step_timeout)
        except BaseException as e:
            self._abort()
            if isinstance(e, asyncio.TimeoutError):
                raise Failure("%s: no session within %.0fs" % (what, self.args.step_timeout)) from None
            raise
        m = self.x["feature_mechanisms"].mech
        self.mech = m.name if m is not None else "?"
        if not self.x.boundjid.resource:
            raise Failure("%s: no resource bound (%s)" % (self.name, self.x.boundjid))
        Steps.ok("%s logged in as %s via %s" % (self.name, self.x.boundjid.full, self.mech))
        # Like a real client: fetch the roster (which makes this resource
        # "interested" in roster pushes, RFC 6121 2.1.6), then send presence.
        Steps.start("%s fetches the roster" % self.name)
        items = await self.roster()
        Steps.ok("%s fetched the roster (%d items)" % (self.name, len(items)))
        if presence:
            self.x.send_presence()
        return self

    async def wait_for(self, what, pred, timeout=None):
        """Return the first received stanza (oldest first) for which pred is true."""
        Steps.start(what)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.args.step_timeout)
        while True:
            for st in self.received:
                if pred(st):
                    self.received.remove(st)
                    return st
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Failure("timed out waiting: %s" % what)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def roster(self):
        """Fetch the whole roster from the server: {bare jid: (subscription, ask)}.

        A raw query without 'ver', so roster versioning cannot answer "unchanged".
        """
        iq = self.x.Iq()
        iq["type"] = "get"
        iq.xml.append(ET.Element("{%s}query" % ROSTER_NS))
        res = await iq.send(timeout=self.args.step_timeout)
        return roster_items(res)

    async def roster_set(self, jid, name, group):
        """Add or update a roster item (RFC 6121 2.3)."""
        iq = self.x.Iq()
        iq["type"] = "set"
        q = ET.Element("{%s}query" % ROSTER_NS)
        item = ET.SubElement(q, "{%s}item" % ROSTER_NS, jid=jid, name=name)
        ET.SubElement(item, "{%s}group" % ROSTER_NS).text = group
        iq.xml.append(q)
        await iq.send(timeout=self.args.step_timeout)

    async def close(self):
        if self.x.transport is None:
            return
        try:
            await asyncio.wait_for(self.x.disconnect(wait=2.0), 5)
        except Exception:  # pylint: disable=broad-except
            self._abort()


def run(main, args):
    """Run main(args) under the overall timeout; exit 0 on success, 1 otherwise."""

    async def guarded():
        try:
            await asyncio.wait_for(main(args), args.timeout)
        except asyncio.TimeoutError:
            raise Failure("overall timeout %.0fs during: %s" % (args.timeout, Steps.current)) from None

    setup_logging(args)
    try:
        asyncio.run(guarded())
    except Failure as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    except Exception as e:  # pylint: disable=broad-except
        print("FAIL: during %s: %s: %s" % (Steps.current, type(e).__name__, e), flush=True)
        sys.exit(1)
    print("PASS", flush=True)


def parser(description):
    p = argparse.ArgumentParser(description=description)
    add_common_args(p)
    return p
