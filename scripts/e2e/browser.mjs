// Shared by Hearth's Chromium scripts: launching Debian's Chromium through
// playwright-core (never `playwright install`) with a fresh profile, and
// closing it again.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// Arguments every run gets: headless, no sandbox (containers), nothing that
// talks to Google or the network on its own, no QUIC, and Hearth's
// self-signed certificate accepted.
export const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--ignore-certificate-errors'];

// launch starts Chromium (executablePath, default /usr/bin/chromium) on a
// new profile directory with chromiumArgs plus extraArgs, a viewport
// (default a phone's: the pages must work there), a locale and timeout ms
// for every step. It returns { context, close }; close() ends the browser
// and removes the profile.
export async function launch({ executablePath = '/usr/bin/chromium', extraArgs = [], viewport = { width: 412, height: 915 },
    locale = 'en-US', timeout = 30000 } = {}) {
    const profile = mkdtempSync(join(tmpdir(), 'hearth-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
        executablePath,
        headless: true,
        ignoreHTTPSErrors: true, // Hearth's certificate is self-signed
        args: [...chromiumArgs, ...extraArgs],
        viewport,
        locale,
        timeout,
    });
    const close = async () => {
        await context.close().catch(() => {});
        rmSync(profile, { recursive: true, force: true });
    };
    return { context, close };
}

// screenshotter returns shot(page, name): a full-page screenshot
// DIR/name.png, recording in scripts (an array) each page that has a
// script element (Hearth's own pages must have none).
export function screenshotter(dir, scripts) {
    return async (page, name) => {
        // Chromium sometimes cannot capture a page that is mid-way through a
        // navigation or a reload (the switching page refreshes itself): try
        // again, a few times.
        for (let i = 0; ; i++) {
            try {
                await page.screenshot({ path: join(dir, name + '.png'), fullPage: true });
                break;
            } catch (e) {
                if (i >= 4 || !String(e.message).includes('Unable to capture screenshot')) throw e;
                await new Promise((r) => setTimeout(r, 250));
            }
        }
        const n = await page.locator('script').count();
        if (n) scripts.push(`${page.url()}: ${n} script element(s)`);
    };
}

// expectStatus throws unless resp (a playwright Response) has status want.
export function expectStatus(resp, want, what) {
    if (!resp || resp.status() !== want) throw new Error(`${what}: status ${resp && resp.status()}, want ${want}`);
}
