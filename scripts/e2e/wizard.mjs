#!/usr/bin/env node
// Drives Hearth's setup wizard, invitation pages and admin pages in Debian's
// Chromium through playwright-core (never `playwright install`).
//
// Usage:
//   node scripts/e2e/wizard.mjs --http http://127.0.0.1:5280 --https https://localhost:5281 \
//       --artifacts DIR --admin ADMIN --admin-password PW --user NEW --password PW2 \
//       [--new-domain family.test]
//
// On a fresh data directory: runs the wizard from / (step 1 creates ADMIN,
// step 2 refuses a bad domain name, then with --new-domain switches Hearth
// to that domain with manual DNS, follows the page's automatic reload after
// the in-process restart and prints the live DNS check's summary as
// "DNSCHECK <summary>", reloading until every record is in place; step 3
// shows its state, step 4 runs the reachability check and
// prints "REACH <verdict>", step 5 creates an invitation), checks that a
// POST without a CSRF token is refused (403), opens the invitation's landing
// page, registers NEW through the web form, logs in to the admin pages as
// ADMIN and finds NEW in the users list, visits the system and network
// pages, publishes terms of service, adds NEW to a circle, sends an
// announcement, downloads a backup, then logs in as NEW on the account page
// and downloads NEW's data (XEP-0227). Prints "INVITE <link>" and
// "REGISTERED <jid>", then "PASS"; any failure prints "FAIL: ..." and exits
// 1. It checks that no page asked for anything outside Hearth's origins and
// that no page had a script. Screenshots of each page go to DIR. Every wait
// is bounded (--timeout seconds per step, default 30).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'playwright-core';
import { expectStatus, launch, screenshotter } from './browser.mjs';

const { values: opt } = parseArgs({
    options: {
        http: { type: 'string' },
        https: { type: 'string' },
        artifacts: { type: 'string' },
        admin: { type: 'string' },
        'admin-password': { type: 'string' },
        user: { type: 'string' },
        password: { type: 'string' },
        'new-domain': { type: 'string' },
        timeout: { type: 'string', default: '30' },
        chromium: { type: 'string', default: '/usr/bin/chromium' },
    },
});
for (const k of ['http', 'https', 'artifacts', 'admin', 'admin-password', 'user', 'password']) {
    if (!opt[k]) {
        console.error(`usage: wizard.mjs --http URL --https URL --artifacts DIR --admin U --admin-password PW --user U --password PW (missing --${k})`);
        process.exit(2);
    }
}
const stepMs = Number(opt.timeout) * 1000;
const origins = [new URL(opt.http).origin, new URL(opt.https).origin];
const hostRules = [];
if (opt['new-domain']) {
    // Invitation links name the new domain: the browser reaches it on loopback.
    origins.push(`https://${opt['new-domain']}:${new URL(opt.https).port || 443}`);
    hostRules.push(`--host-resolver-rules=MAP ${opt['new-domain']} 127.0.0.1`);
}
mkdirSync(opt.artifacts, { recursive: true });

let step = 'start';
const ok = (what) => console.log('ok: ' + what);
const external = [];
const scripts = [];

const { context, close } = await launch({ executablePath: opt.chromium, timeout: stepMs, extraArgs: hostRules });

let page;
let exitCode = 0;
const screenshot = screenshotter(opt.artifacts, scripts);
const shot = (name) => screenshot(page, name);

try {
    context.on('request', (req) => {
        const u = req.url();
        if (u.startsWith('data:') || u.startsWith('xmpp:')) return;
        if (!origins.includes(new URL(u).origin)) external.push(u);
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(stepMs);

    step = 'wizard step 1';
    let resp = await page.goto(opt.http + '/', { waitUntil: 'load' });
    expectStatus(resp, 200, 'GET /');
    if (new URL(page.url()).pathname !== '/setup') throw new Error('/ did not lead to the wizard but to ' + page.url());
    await page.getByLabel('Your username').fill(opt.admin);
    await page.getByLabel('Password (at least 8 characters)').fill(opt['admin-password']);
    await page.getByLabel('Password again').fill(opt['admin-password']);
    await shot('wizard-1-admin');
    await Promise.all([page.waitForURL('**/setup/domain'), page.getByRole('button', { name: 'Create my account' }).click()]);
    ok('administrator created');

    step = 'wizard step 2';
    await page.locator('main').getByText('_xmpp-client._tcp.').first().waitFor({ state: 'visible' });
    await shot('wizard-2-domain');
    await page.getByLabel('Domain name').fill('not a domain!');
    await page.getByLabel('I manage DNS myself').check();
    await page.getByRole('button', { name: 'Save and switch to this domain' }).click();
    await page.getByRole('alert').getByText('not a valid domain name').waitFor({ state: 'visible' });
    await shot('wizard-2-domain-invalid');
    ok('a bad domain name is refused on the form');
    if (opt['new-domain']) {
        step = 'wizard step 2: switching the domain';
        await page.getByLabel('Domain name').fill(opt['new-domain']);
        await page.getByLabel('I manage DNS myself').check();
        await page.getByRole('button', { name: 'Save and switch to this domain' }).click();
        await page.getByText('Hearth is switching to').waitFor({ state: 'visible' });
        await shot('wizard-2-switching');
        // The page reloads /setup/domain by itself (meta refresh) once the
        // services run under the new domain; the wizard session survives.
        const summary = page.locator('#dns-check-summary');
        await summary.waitFor({ state: 'visible' });
        await page.locator('main').getByText('Phones find Hearth through its domain, now ' + opt['new-domain']).waitFor({ state: 'visible' });
        let text = (await summary.textContent()).trim();
        console.log('DNSCHECK ' + text);
        await shot('wizard-2-dns-check');
        for (let i = 0; i < 30 && text !== 'All DNS records are in place.'; i++) {
            await page.waitForTimeout(1000);
            await page.reload({ waitUntil: 'load' });
            text = (await summary.textContent()).trim();
        }
        console.log('DNSCHECK ' + text);
        await shot('wizard-2-dns-ok');
        ok('switched to ' + opt['new-domain']);
    }
    await page.getByRole('link', { name: 'Continue' }).click();

    for (const [n, name, text] of [[3, 'certs', 'certificate'], [4, 'reach', 'router']]) {
        step = `wizard step ${n}`;
        await page.locator('main').getByText(text).first().waitFor({ state: 'visible' });
        await shot(`wizard-${n}-${name}`);
        if (name === 'reach') {
            // The reachability check (POST with the CSRF token), then its verdict.
            await Promise.all([page.waitForURL('**/setup/reach'), page.getByRole('button', { name: 'Check now' }).click()]);
            const verdict = page.locator('#reach-verdict');
            await verdict.waitFor({ state: 'visible' });
            await page.locator('main table').getByText('phones and apps (XMPP)').first().waitFor({ state: 'visible' });
            console.log('REACH ' + (await verdict.textContent()).trim());
            await shot('wizard-4-reach-checked');
        }
        await page.getByRole('link', { name: 'Continue' }).click();
    }
    step = 'wizard step 5';
    await page.waitForURL('**/setup/done');
    await shot('wizard-5-done');
    await page.getByRole('button', { name: 'Create an invitation' }).click();
    const link = (await page.locator('#first-invite ~ p code.uri, section.card code.uri').first().textContent()).trim();
    if (!/\/invite\/[A-Z2-7]{26}$/.test(link)) throw new Error('no invitation link on the last step: ' + link);
    await page.locator('svg.qr').first().waitFor({ state: 'visible' });
    await shot('wizard-5-invitation');
    console.log('INVITE ' + link);

    step = 'the wizard is gone';
    // A client without the wizard's session (cookies) gets 404 now.
    const api = await request.newContext({ ignoreHTTPSErrors: true, timeout: stepMs });
    const gone = await api.get(opt.http + '/setup', { maxRedirects: 0 });
    if (gone.status() !== 404) throw new Error('GET /setup after setup: status ' + gone.status());
    ok('the wizard is gone after setup (404)');

    step = 'CSRF';
    await api.get(opt.https + '/admin/login'); // sets the CSRF cookie, but we send no token
    const csrfLess = await api.post(opt.https + '/admin/login', {
        form: { username: opt.admin, password: opt['admin-password'] }, maxRedirects: 0,
    });
    if (csrfLess.status() !== 403) throw new Error('POST /admin/login without a CSRF token: status ' + csrfLess.status());
    ok('a POST without a CSRF token is refused (403)');
    await api.dispose();

    step = 'landing page';
    resp = await page.goto(link, { waitUntil: 'load' });
    expectStatus(resp, 200, 'GET ' + link);
    await page.getByRole('link', { name: 'Open in my chat app' }).waitFor({ state: 'visible' });
    const href = await page.getByRole('link', { name: 'Open in my chat app' }).getAttribute('href');
    if (!href.startsWith('xmpp:') || !href.includes('?register;preauth=')) throw new Error('bad xmpp: URI ' + href);
    for (const a of ['Conversations', 'Monal', 'Siskin IM', 'Gajim', 'Dino', 'Web chat']) {
        await page.getByRole('link', { name: a }).first().waitFor({ state: 'visible' });
    }
    await shot('invite-landing');
    ok('landing page with ' + href);

    step = 'web registration';
    await page.getByLabel('Username').fill(opt.user);
    await page.getByLabel('Password', { exact: true }).fill(opt.password);
    await page.getByLabel('Password again').fill(opt.password);
    await page.getByRole('button', { name: 'Create my account' }).click();
    await page.getByRole('heading', { name: 'Welcome!' }).waitFor({ state: 'visible' });
    const jid = (await page.locator('p.lead strong').textContent()).trim();
    await shot('invite-registered');
    console.log('REGISTERED ' + jid);

    step = 'used invitation';
    resp = await page.goto(link, { waitUntil: 'load' });
    expectStatus(resp, 410, 'GET ' + link + ' after use');
    await shot('invite-used');

    step = 'admin login';
    resp = await page.goto(opt.https + '/admin/login', { waitUntil: 'load' });
    expectStatus(resp, 200, 'GET /admin/login');
    await page.getByLabel('Username').fill(opt.admin);
    await page.getByLabel('Password').fill(opt['admin-password']);
    await shot('admin-login');
    await Promise.all([page.waitForURL('**/admin/invites'), page.getByRole('button', { name: 'Log in' }).click()]);
    await shot('admin-invites');
    step = 'admin creates an invitation';
    await page.getByLabel('a group (reusable)').check();
    await page.getByLabel('Circles').fill('Family');
    await page.getByRole('button', { name: 'Create invitation' }).click();
    await page.locator('#new-invite').waitFor({ state: 'visible' });
    await page.locator('section.card svg.qr').waitFor({ state: 'visible' });
    await shot('admin-invite-created');
    step = 'admin users';
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByText(jid).waitFor({ state: 'visible' });
    await shot('admin-users');
    ok('the admin pages list ' + jid);

    step = 'admin system and network pages';
    await page.getByRole('link', { name: 'System' }).click();
    await page.getByText('Running for').waitFor({ state: 'visible' });
    await page.getByRole('heading', { name: 'Active users' }).waitFor({ state: 'visible' });
    await shot('admin-system');
    await page.getByRole('link', { name: 'Network' }).click();
    await page.locator('#reach-verdict').waitFor({ state: 'visible' }); // the wizard's check, kept
    await shot('admin-network');
    ok('system and network pages');

    step = 'admin settings: terms of service';
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByLabel(/Shown at \/terms/).fill('Be kind to each other.\n\nNo spam.');
    await page.getByRole('button', { name: 'Save terms' }).click();
    await page.getByText('Saved.').waitFor({ state: 'visible' });
    await shot('admin-settings');
    resp = await page.goto(opt.https + '/terms', { waitUntil: 'load' });
    expectStatus(resp, 200, 'GET /terms');
    await page.getByText('Be kind to each other.').waitFor({ state: 'visible' });
    await shot('terms');
    ok('terms of service published');

    step = 'admin circles and announcement';
    await page.goto(opt.https + '/admin/circles', { waitUntil: 'load' });
    await page.getByLabel(/^Circle/).fill('Family');
    await page.getByLabel('Person').selectOption(opt.user);
    await page.getByRole('button', { name: 'Add to the circle' }).click();
    await page.getByText(opt.user + ' joined Family.').waitFor({ state: 'visible' });
    await shot('admin-circles');
    await page.getByRole('link', { name: 'Announce' }).click();
    await page.getByLabel('Message').fill('Welcome to our new chat server!');
    await page.getByRole('button', { name: 'Send to everybody' }).click();
    await page.getByText('The announcement went to 2 accounts.').waitFor({ state: 'visible' });
    await shot('admin-announce');
    ok('circle joined, announcement sent');

    step = 'admin backup download';
    await page.getByRole('link', { name: 'Backup' }).click();
    await shot('admin-backup');
    const [backup] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download backup' }).click()]);
    if (!/^hearth-.*\.tar\.gz$/.test(backup.suggestedFilename())) throw new Error('backup file name ' + backup.suggestedFilename());
    if (await backup.failure()) throw new Error('backup download failed: ' + (await backup.failure()));
    ok('backup downloaded: ' + backup.suggestedFilename());

    step = 'user account page';
    await page.getByRole('button', { name: /^Log out/ }).click();
    resp = await page.goto(opt.https + '/account/login', { waitUntil: 'load' });
    expectStatus(resp, 200, 'GET /account/login');
    await page.getByLabel('Username').fill(opt.user);
    await page.getByLabel('Password').fill(opt.password);
    await Promise.all([page.waitForURL('**/account'), page.getByRole('button', { name: 'Log in' }).click()]);
    await page.getByRole('heading', { name: jid }).waitFor({ state: 'visible' });
    await shot('account');
    const [exported] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download my data' }).click()]);
    if (exported.suggestedFilename() !== jid + '.xml') throw new Error('export file name ' + exported.suggestedFilename());
    if (await exported.failure()) throw new Error('export failed: ' + (await exported.failure()));
    ok('the new user downloaded their data: ' + exported.suggestedFilename());

    step = 'checks';
    if (scripts.length) throw new Error('pages with scripts:\n  ' + scripts.join('\n  '));
    if (external.length) throw new Error('requests outside Hearth:\n  ' + external.join('\n  '));
    ok('no scripts, no request outside Hearth');
    console.log('PASS');
} catch (e) {
    exitCode = 1;
    console.log(`FAIL: ${step}: ${e.message.split('\n').slice(0, 8).join('\n')}`);
    if (page) await page.screenshot({ path: join(opt.artifacts, 'failure.png'), fullPage: true }).catch(() => {});
} finally {
    await close();
}
process.exit(exitCode);
