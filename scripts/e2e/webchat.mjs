#!/usr/bin/env node
// Drives Hearth's web chat (/chat/, Converse.js) in Debian's Chromium through
// playwright-core (never `playwright install`: the browser is /usr/bin/chromium).
//
// Usage:
//   node scripts/e2e/webchat.mjs --url https://localhost:5281/chat/ --artifacts DIR \
//       [--locale de-DE] [--user alice --password PW --room family [--invite bob@localhost]
//        --body TEXT [--expect-reply TEXT]]
//
// Without --user: loads the page, waits for the login form, screenshots it.
// With --user: logs in, joins ROOM (a room name; Converse adds the group chat
// service from the page's muc_domain) and prints "JOINED room@service as NICK";
// with --invite, invites that JID through the participants menu and prints
// "INVITED JID"; then waits for a line "SEND" on stdin (so the caller can let
// another client enter the room first), sends BODY, prints "SENT", and with
// --expect-reply waits until that text shows in the room and prints
// "RECEIVED". Screenshots go to DIR (login.png, joined.png, sent.png,
// replied.png, and failure.png when something fails).
//
// It always checks that the browser asked for nothing outside the page's own
// origin (every HTTP request and WebSocket is recorded) and that no
// Content-Security-Policy violation happened; "PASS" ends a good run, any
// failure prints "FAIL: ..." and exits 1. Every wait is bounded (--timeout
// seconds per step, default 30). WEBCHAT_TRACE=1 prints the XMPP WebSocket
// frames to stderr.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { launch } from './browser.mjs';

const { values: opt } = parseArgs({
    options: {
        url: { type: 'string' },
        artifacts: { type: 'string' },
        user: { type: 'string' },
        password: { type: 'string' },
        room: { type: 'string' },
        body: { type: 'string' },
        'expect-reply': { type: 'string' },
        invite: { type: 'string' },
        timeout: { type: 'string', default: '30' },
        locale: { type: 'string', default: 'en-US' },
        chromium: { type: 'string', default: '/usr/bin/chromium' },
    },
});
if (!opt.url || !opt.artifacts) {
    console.error('usage: webchat.mjs --url URL --artifacts DIR [--user U --password PW --room R --body B]');
    process.exit(2);
}
const stepMs = Number(opt.timeout) * 1000;
const origin = new URL(opt.url).origin;
const wsOrigin = origin.replace(/^http/, 'ws');
mkdirSync(opt.artifacts, { recursive: true });

let step = 'start';
const ok = (what) => console.log('ok: ' + what);
const external = [];
const failedRequests = [];
const consoleErrors = [];

// Bounded stdin line reader (for the "SEND" go-ahead).
const lines = [];
let lineWaiter = null;
createInterface({ input: process.stdin }).on('line', (l) => {
    lines.push(l.trim());
    if (lineWaiter) lineWaiter();
});
async function waitLine(want, ms) {
    const deadline = Date.now() + ms;
    while (!lines.includes(want)) {
        if (Date.now() > deadline) throw new Error(`no "${want}" on stdin within ${ms / 1000}s`);
        await new Promise((res) => {
            lineWaiter = res;
            setTimeout(res, 500);
        });
    }
}

const { context, close } = await launch({
    executablePath: opt.chromium,
    timeout: stepMs,
    viewport: { width: 1280, height: 800 },
    locale: opt.locale, // Converse loads the matching translation from the server
});

let page;
let exitCode = 0;
try {
    context.on('request', (req) => {
        const u = req.url();
        if (u.startsWith('data:') || u.startsWith('blob:')) return;
        if (new URL(u).origin !== origin) external.push(u);
    });
    context.on('requestfailed', (req) => failedRequests.push(`${req.url()}: ${req.failure()?.errorText}`));
    // Record CSP violations in the page (init scripts run outside the page's CSP).
    await context.addInitScript(() => {
        window.__cspViolations = [];
        document.addEventListener('securitypolicyviolation', (e) => {
            window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
        });
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(stepMs);
    page.on('websocket', (ws) => {
        if (!ws.url().startsWith(wsOrigin + '/')) external.push(ws.url());
        if (process.env.WEBCHAT_TRACE) {
            ws.on('framesent', (f) => console.error('SENT ' + f.payload));
            ws.on('framereceived', (f) => console.error('RECV ' + f.payload));
        }
    });
    page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push('page error: ' + e.message));

    step = 'load the page';
    const resp = await page.goto(opt.url, { waitUntil: 'load' });
    if (!resp || resp.status() !== 200) throw new Error(`GET ${opt.url}: status ${resp && resp.status()}`);
    step = 'wait for the login form';
    await page.locator('#converse-login-jid').waitFor({ state: 'visible' });
    await page.locator('#converse-login-password').waitFor({ state: 'visible' });
    const domainAddon = await page.locator('#converse-login .input-group-text').first().textContent();
    ok(`login form shown (domain addon ${JSON.stringify(domainAddon && domainAddon.trim())})`);
    await page.screenshot({ path: join(opt.artifacts, 'login.png'), animations: 'disabled' });

    if (opt.user) {
        step = 'log in';
        await page.fill('#converse-login-jid', opt.user);
        await page.fill('#converse-login-password', opt.password);
        await page.click('#converse-login button[type=submit]');
        // Logged in: the control box shows the user's profile and the rooms list.
        await page.locator('converse-user-profile, converse-controlbox .controlbox-section').first().waitFor({ state: 'visible' });
        await page.locator('#converse-login').waitFor({ state: 'detached' });
        ok('logged in as ' + opt.user);

        step = 'join the room';
        // As a person does: the group chats menu, "Add a new groupchat", the
        // room name (Converse adds muc_domain), Join. The nickname field is
        // prefilled from the username (muc_nickname_from_jid).
        await page.locator('converse-rooms-list button.dropdown-toggle').first().click();
        await page.locator('a.show-add-muc-modal').click();
        const modal = page.locator('converse-add-muc-modal');
        const roomInput = modal.locator('input[name=chatroom]');
        await roomInput.waitFor({ state: 'visible' });
        await roomInput.fill(opt.room);
        const nick = await modal.locator('input[name=nickname]').inputValue();
        await modal.locator('input[name=join]').click();
        const service = JSON.parse(await page.locator('#hearth-config').textContent()).muc_domain;
        const roomJid = opt.room.includes('@') ? opt.room : `${opt.room}@${service}`;
        const roomView = page.locator(`converse-muc[jid="${roomJid}"]`);
        // Entered: the message box shows and the occupant list has our nickname.
        await roomView.locator('textarea.chat-textarea').waitFor({ state: 'visible' });
        await roomView.locator('converse-muc-sidebar', { hasText: nick }).waitFor({ state: 'visible' });
        console.log(`JOINED ${roomJid} as ${nick}`);
        await page.screenshot({ path: join(opt.artifacts, 'joined.png'), animations: 'disabled' });

        if (opt.invite) {
            // The participants list's menu, "Invite": Converse makes the
            // invitee a member (the room is members-only) and sends a
            // XEP-0249 invitation.
            step = 'invite ' + opt.invite;
            await roomView.locator('converse-muc-occupants button.dropdown-toggle').first().click();
            await page.locator('a.open-invite-modal').click();
            const invite = page.locator('converse-muc-invite-modal');
            await invite.locator('input[name=invitee_jids]').fill(opt.invite);
            await invite.locator('textarea[name=reason]').fill('Our family chat');
            await invite.locator('input[type=submit]').click();
            await invite.locator('input[name=invitee_jids]').waitFor({ state: 'hidden' });
            console.log('INVITED ' + opt.invite);
        }

        step = 'wait for SEND on stdin';
        await waitLine('SEND', 4 * stepMs);

        step = 'send the message';
        const textarea = roomView.locator('textarea.chat-textarea');
        await textarea.fill(opt.body);
        await textarea.press('Enter');
        await roomView.locator('.chat-msg__text', { hasText: opt.body }).first().waitFor({ state: 'visible' });
        console.log('SENT');
        await page.screenshot({ path: join(opt.artifacts, 'sent.png'), animations: 'disabled' });

        if (opt['expect-reply']) {
            step = 'wait for the reply';
            await roomView.locator('.chat-msg__text', { hasText: opt['expect-reply'] }).first().waitFor({ state: 'visible' });
            console.log('RECEIVED');
            await page.screenshot({ path: join(opt.artifacts, 'replied.png'), animations: 'disabled' });
        }
    }

    step = 'check requests';
    const csp = await page.evaluate(() => window.__cspViolations);
    if (csp.length) throw new Error('Content-Security-Policy violations:\n  ' + csp.join('\n  '));
    ok('no Content-Security-Policy violation');
    if (external.length) throw new Error('requests outside ' + origin + ':\n  ' + external.join('\n  '));
    ok('every request stayed on ' + origin);
    console.log('PASS');
} catch (e) {
    exitCode = 1;
    console.log(`FAIL: ${step}: ${e.message.split('\n').slice(0, 8).join('\n')}`);
    if (external.length) console.log('requests outside the origin:\n  ' + external.join('\n  '));
    if (failedRequests.length) console.log('failed requests:\n  ' + failedRequests.join('\n  '));
    if (consoleErrors.length) console.log('console errors:\n  ' + consoleErrors.slice(0, 20).join('\n  '));
    if (page) {
        await page.screenshot({ path: join(opt.artifacts, 'failure.png') }).catch(() => {});
    }
} finally {
    await close();
}
process.exit(exitCode);
