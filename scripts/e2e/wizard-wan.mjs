#!/usr/bin/env node
// Checks in Debian's Chromium (playwright-core, never `playwright install`)
// who may open Hearth's setup wizard before an administrator exists.
//
// Usage:
//   node scripts/e2e/wizard-wan.mjs --from wan --url http://198.51.100.1:5280 [--url https://...] \
//       --artifacts DIR [--csrf-cookie C --csrf-token T] [--admin U --admin-password PW]
//   node scripts/e2e/wizard-wan.mjs --from local --url http://127.0.0.1:5280 --artifacts DIR
//
// --from wan (run it from an address outside the local network, e.g. in a
// network namespace): for each --url, GET / must answer 503 "Hearth is being
// set up", GET /setup and GET /setup/domain 403 "Not available from here",
// each a plain page without a form, and no CSRF cookie is handed out. Then
// a POST /setup from the browser (a form put into the refusal page, same
// origin) with the administrator's username and password, and with
// --csrf-cookie/--csrf-token a CSRF pair the caller obtained from the local
// side, must be refused with the same 403 page; afterwards GET / still
// answers 503 (no administrator was created). Prints "REFUSED <method>
// <url> <status> <title>" for each refusal.
//
// --from local: GET / leads to /setup (200) with step 1's form (username,
// both passwords, "Create my account"); prints "WIZARD <url> 200 form".
//
// Both modes check that no page had a script and that nothing outside the
// given origins was asked for, take screenshots into DIR (named by mode,
// origin scheme and page) and print "PASS", or "FAIL: ..." and exit 1.
// Every wait is bounded (--timeout seconds per step, default 30).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { expectStatus, launch, screenshotter } from './browser.mjs';

const { values: opt } = parseArgs({
    options: {
        from: { type: 'string' },
        url: { type: 'string', multiple: true },
        artifacts: { type: 'string' },
        'csrf-cookie': { type: 'string', default: '' },
        'csrf-token': { type: 'string', default: '' },
        admin: { type: 'string', default: 'intruder' },
        'admin-password': { type: 'string', default: 'correct horse battery staple' },
        timeout: { type: 'string', default: '30' },
        chromium: { type: 'string', default: '/usr/bin/chromium' },
    },
});
if (!['wan', 'local'].includes(opt.from) || !opt.url || !opt.url.length || !opt.artifacts) {
    console.error('usage: wizard-wan.mjs --from wan|local --url URL [--url URL] --artifacts DIR [--csrf-cookie C --csrf-token T]');
    process.exit(2);
}
const stepMs = Number(opt.timeout) * 1000;
const origins = opt.url.map((u) => new URL(u).origin);
mkdirSync(opt.artifacts, { recursive: true });

let step = 'start';
const ok = (what) => console.log('ok: ' + what);
const external = [];
const scripts = [];

const { context, close } = await launch({ executablePath: opt.chromium, timeout: stepMs });

let page;
let exitCode = 0;
const screenshot = screenshotter(opt.artifacts, scripts);
const shot = (name) => screenshot(page, name);

// refused checks that the page just loaded is the plain message page with
// status and heading title: no form, no password field, no CSRF token.
const refused = async (resp, method, url, status, title, name) => {
    expectStatus(resp, status, method + ' ' + url);
    await page.getByRole('heading', { name: title }).waitFor({ state: 'visible' });
    const forms = await page.locator('form, input, textarea, button').count();
    if (forms) throw new Error(`${method} ${url}: the refusal page has ${forms} form element(s)`);
    await shot(name);
    console.log(`REFUSED ${method} ${url} ${status} ${title}`);
};

try {
    context.on('request', (req) => {
        const u = req.url();
        if (u.startsWith('data:') || u.startsWith('about:')) return;
        if (!origins.includes(new URL(u).origin)) external.push(u);
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(stepMs);

    for (const base of opt.url) {
        const scheme = new URL(base).protocol.replace(':', '');
        const origin = new URL(base).origin;
        if (opt.from === 'local') {
            step = `${base}: the wizard's first step`;
            const resp = await page.goto(base + '/', { waitUntil: 'load' });
            expectStatus(resp, 200, 'GET ' + base + '/');
            if (new URL(page.url()).pathname !== '/setup') throw new Error('/ did not lead to the wizard but to ' + page.url());
            await page.getByLabel('Your username').waitFor({ state: 'visible' });
            await page.getByLabel('Password (at least 8 characters)').waitFor({ state: 'visible' });
            await page.getByLabel('Password again').waitFor({ state: 'visible' });
            await page.getByRole('button', { name: 'Create my account' }).waitFor({ state: 'visible' });
            await shot(`local-${scheme}-setup`);
            console.log(`WIZARD ${base}/setup 200 form`);
            continue;
        }

        step = `${base}: GET /`;
        let resp = await page.goto(base + '/', { waitUntil: 'load' });
        await refused(resp, 'GET', base + '/', 503, 'Hearth is being set up', `wan-${scheme}-home`);
        step = `${base}: GET /setup`;
        resp = await page.goto(base + '/setup', { waitUntil: 'load' });
        await refused(resp, 'GET', base + '/setup', 403, 'Not available from here', `wan-${scheme}-setup`);
        step = `${base}: GET /setup/domain`;
        resp = await page.goto(base + '/setup/domain', { waitUntil: 'load' });
        await refused(resp, 'GET', base + '/setup/domain', 403, 'Not available from here', `wan-${scheme}-setup-domain`);
        const handed = (await context.cookies(origin)).map((c) => c.name);
        if (handed.length) throw new Error(`${base}: cookies handed out to a non-local address: ${handed.join(', ')}`);
        ok(`${base}: no cookie handed out`);

        step = `${base}: POST /setup`;
        // The CSRF pair comes from the local side (the refusal pages hand
        // out none): with it only the address can make Hearth refuse.
        if (opt['csrf-cookie']) {
            await context.addCookies([{ name: 'hearth_csrf', value: opt['csrf-cookie'], url: origin, httpOnly: true, sameSite: 'Strict' }]);
        }
        resp = await page.goto(base + '/setup', { waitUntil: 'load' });
        expectStatus(resp, 403, 'GET ' + base + '/setup');
        // A form in the refusal page itself (same origin: the SameSite=Strict
        // cookie goes along, form-action 'self' allows it), submitted like a
        // person would; the page's CSP does not apply to the test's DOM calls.
        await page.evaluate((f) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = '/setup';
            for (const [name, value] of Object.entries(f)) {
                const input = document.createElement('input');
                input.type = 'hidden';
                input.name = name;
                input.value = value;
                form.appendChild(input);
            }
            const button = document.createElement('button');
            button.type = 'submit';
            button.textContent = 'Create my account';
            form.appendChild(button);
            document.body.appendChild(form);
        }, { csrf: opt['csrf-token'], username: opt.admin, password: opt['admin-password'], password2: opt['admin-password'] });
        const [posted] = await Promise.all([
            page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/setup'),
            page.getByRole('button', { name: 'Create my account' }).click(),
        ]);
        await page.waitForLoadState('load');
        await refused(posted, 'POST', base + '/setup', 403, 'Not available from here', `wan-${scheme}-setup-post`);
        const sent = (await posted.request().allHeaders()).cookie || '';
        if (opt['csrf-cookie'] && !sent.includes('hearth_csrf=' + opt['csrf-cookie'])) {
            throw new Error(`${base}: the POST did not carry the CSRF cookie (Cookie: ${sent})`);
        }

        step = `${base}: GET / after the POST`;
        resp = await page.goto(base + '/', { waitUntil: 'load' });
        await refused(resp, 'GET', base + '/', 503, 'Hearth is being set up', `wan-${scheme}-home-after`);
        ok(`${base}: still not set up after the POST`);
        await context.clearCookies();
    }

    step = 'checks';
    if (scripts.length) throw new Error('pages with scripts:\n  ' + scripts.join('\n  '));
    if (external.length) throw new Error('requests outside Hearth:\n  ' + external.join('\n  '));
    ok('no scripts, no request outside Hearth');
    console.log('PASS');
} catch (e) {
    exitCode = 1;
    console.log(`FAIL: ${step}: ${e.message.split('\n').slice(0, 8).join('\n')}`);
    if (page) await page.screenshot({ path: join(opt.artifacts, `failure-${opt.from}.png`), fullPage: true }).catch(() => {});
} finally {
    await close();
}
process.exit(exitCode);
