#!/usr/bin/env node
// One @xmpp/client (xmpp.js) session over RFC 7395 WebSocket, for Hearth's
// interop tests (appliance/interop/xmppjs_test.go).
//
// Usage (Node 20 needs --experimental-websocket for the global WebSocket):
//   node [--experimental-websocket] scripts/interop/node/ws_chat.mjs \
//       --service wss://localhost:5281/xmpp-websocket --domain localhost \
//       --username alice --password PW [--resource node] \
//       --to bob@localhost --body TEXT [--expect TEXT] [--timeout 60]
//
// Logs in (xmpp.js picks SASL2 with Bind 2 or SASL with resource binding,
// whatever the server offers), prints "ONLINE <full JID>", sends available
// presence and a chat message with BODY to TO, prints "SENT". With
// --expect it then waits for a message whose body is EXPECT and prints
// "RECEIVED <from>". Finally it closes the stream (<close/>, RFC 7395 §3.6),
// prints "STOPPED" and exits 0. Any error or the --timeout (seconds) prints
// "FAIL: ..." and exits 1. The server's certificate is checked against the
// system CAs plus NODE_EXTRA_CA_CERTS.
import { parseArgs } from "node:util";
import { client, xml } from "@xmpp/client";

const { values: opt } = parseArgs({
  options: {
    service: { type: "string" },
    domain: { type: "string" },
    username: { type: "string" },
    password: { type: "string" },
    resource: { type: "string", default: "node" },
    to: { type: "string" },
    body: { type: "string" },
    expect: { type: "string" },
    timeout: { type: "string", default: "60" },
  },
});
for (const k of ["service", "domain", "username", "password", "to", "body"]) {
  if (!opt[k]) {
    console.error(`usage: ws_chat.mjs --service URL --domain D --username U --password P --to JID --body TEXT [--expect TEXT]; missing --${k}`);
    process.exit(2);
  }
}
if (typeof WebSocket === "undefined") {
  console.log("FAIL: no global WebSocket (run node with --experimental-websocket)");
  process.exit(1);
}

function fail(msg) {
  console.log("FAIL: " + msg);
  process.exit(1);
}
const timer = setTimeout(() => fail(`timeout after ${opt.timeout} s`), Number(opt.timeout) * 1000);

const xmpp = client({
  service: opt.service,
  domain: opt.domain,
  resource: opt.resource,
  username: opt.username,
  password: opt.password,
});
// Reconnecting would hide a broken stream.
xmpp.reconnect.stop();

let received;
const gotExpected = new Promise((resolve) => {
  received = resolve;
});

xmpp.on("error", (err) => fail("client error: " + (err?.stack || err)));
xmpp.on("offline", () => console.error("offline"));
xmpp.on("nonza", (el) => console.error(`nonza <${el.name} xmlns='${el.attrs.xmlns ?? ""}'>`));
xmpp.on("stanza", (st) => {
  if (st.is("message") && opt.expect && st.getChildText("body") === opt.expect) {
    console.log("RECEIVED " + st.attrs.from);
    received();
  }
});
xmpp.on("online", async (address) => {
  try {
    console.log("ONLINE " + address.toString());
    await xmpp.send(xml("presence"));
    await xmpp.send(xml("message", { type: "chat", to: opt.to }, xml("body", {}, opt.body)));
    console.log("SENT");
    if (opt.expect) {
      await gotExpected;
    }
    await xmpp.stop();
    console.log("STOPPED");
    clearTimeout(timer);
  } catch (err) {
    fail("after login: " + (err?.stack || err));
  }
});

try {
  await xmpp.start();
} catch (err) {
  fail("start: " + (err?.stack || err));
}
