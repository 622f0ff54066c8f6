/**
 * The chat page in Debian's chromium, driven by playwright-core (headless): sign in through
 * the development identity provider, stream a reply, stop one midway, reload and stay signed
 * in, sign out; then a reply that survives the server closing the socket while the network
 * is down for two seconds, without a visible gap or repeated text. Screenshots go to
 * test-results/browser/ for review.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PageGateway } from './helpers.js';
import { CHROMIUM, CHROMIUM_ARGS, SHOTS, browserAvailable, buildAssets, slowPrompt, startPageGateway } from './helpers.js';

const run = browserAvailable();

async function signIn(page: Page, url: string, name: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.locator('input[name="login"]').fill(name);
  await page.locator('input[name="password"]').fill('anything');
  await page.locator('button[type="submit"]').click();
  // oidc-provider's development consent step, when it shows.
  for (let i = 0; i < 4 && page.url() !== `${url}/`; i++) {
    await page.waitForLoadState();
    if (page.url() === `${url}/`) break;
    const next = page.locator('button[type="submit"]');
    if (await next.count()) await next.first().click();
    await page.waitForTimeout(200);
  }
  await page.waitForURL(`${url}/`);
  await expect.poll(() => page.locator('#who-name').textContent()).toContain(name);
  await expect.poll(() => page.locator('#conn').getAttribute('data-state')).toBe('open');
}

async function sendAndWait(page: Page, prompt: string, state: string): Promise<string> {
  await page.locator('#prompt').fill(prompt);
  await page.keyboard.press('Enter');
  const reply = page.locator('.msg.assistant').last();
  try {
    await expect.poll(() => reply.getAttribute('data-state'), { timeout: 15_000 }).toBe(state);
  } catch (err) {
    await page.screenshot({ path: join(SHOTS, 'failure.png'), fullPage: true });
    throw new Error(`reply ended ${await reply.getAttribute('data-state')}: ${await reply.innerText()}`, { cause: err });
  }
  return (await reply.locator('.body').innerText()).trim();
}

describe.runIf(run)('the chat page in chromium', () => {
  let gw: PageGateway;
  let assets: string;
  let browser: Browser;

  beforeAll(async () => {
    assets = buildAssets();
    gw = await startPageGateway(assets, { RATE_LIMIT_TIERS: '{"three":{"rpm":3}}' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await gw?.close();
    if (assets) rmSync(assets, { recursive: true, force: true });
  });

  it('signs in through the dev provider, streams a reply, stops one, survives a reload, signs out', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${gw.url}/`);
    await expect.poll(() => page.locator('#signin').isVisible()).toBe(true);
    expect(await page.locator('#demo-banner').isVisible()).toBe(true);
    await page.screenshot({ path: join(SHOTS, '1-signed-out.png'), fullPage: true });

    const alice = await gw.app.services.users.create({ issuer: `${gw.url}/dev-idp`, subject: 'alice.crypto', roles: ['member'] });
    await gw.app.services.users.setLimits(alice.id, { rateTier: 'three' });
    await signIn(page, gw.url, 'alice');
    expect(await page.locator('#model option').count()).toBeGreaterThan(0);

    const first = slowPrompt('a', 10, 20);
    expect(await sendAndWait(page, first.prompt, 'complete')).toBe(first.reply);
    await page.screenshot({ path: join(SHOTS, '2-reply-complete.png'), fullPage: true });

    const second = slowPrompt('b', 80, 50);
    await page.locator('#prompt').fill(second.prompt);
    await page.locator('#send').click();
    const reply = page.locator('.msg.assistant').last();
    await expect.poll(async () => (await reply.locator('.body').innerText()).length, { timeout: 10_000 }).toBeGreaterThan(20);
    await page.screenshot({ path: join(SHOTS, '3-streaming.png'), fullPage: true });
    await page.locator('#stop').click();
    await expect.poll(() => reply.getAttribute('data-state')).toBe('cancelled');
    const partial = (await reply.locator('.body').innerText()).trim();
    expect(partial.length).toBeLessThan(second.reply.length);
    expect(second.reply.startsWith(partial)).toBe(true);
    expect(await reply.locator('.status').innerText()).toContain('Stopped');
    await page.screenshot({ path: join(SHOTS, '4-stopped.png'), fullPage: true });

    // Markdown is rendered as elements, and markup in a reply stays text.
    const markdown = 'Intro with `code` and **bold**.\n\n```js\nconst x = \'<b>not bold</b>\';\n```\n\n- one\n- two\n\n<img src=x onerror=alert(1)>';
    await page.locator('#prompt').fill(`show markdown <<sim:${JSON.stringify({ text: markdown })}>>`);
    await page.keyboard.press('Enter');
    const md = page.locator('.msg.assistant').last();
    await expect.poll(() => md.getAttribute('data-state')).toBe('complete');
    expect(await md.locator('pre code').innerText()).toBe("const x = '<b>not bold</b>';");
    expect(await md.locator('li').count()).toBe(2);
    expect(await md.locator('p code').innerText()).toBe('code');
    expect(await md.locator('strong').innerText()).toBe('bold');
    expect(await md.locator('img, b').count()).toBe(0);
    expect(await md.locator('.body').innerText()).toContain('<img src=x onerror=alert(1)>');
    await page.screenshot({ path: join(SHOTS, '4b-markdown.png'), fullPage: true });
    // A fourth request within the minute: the rate-limit message says when to try again.
    await page.locator('#prompt').fill('one too many');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('.msg.assistant').last().getAttribute('data-state')).toBe('error');
    expect(await page.locator('#notice').getAttribute('data-kind')).toBe('rate-limit');
    expect(await page.locator('#notice').innerText()).toMatch(/Rate limit reached: you can send again in \d+ s\./);
    await page.screenshot({ path: join(SHOTS, '4c-rate-limited.png'), fullPage: true });
    // Phone-sized: nothing scrolls sideways.
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);

    await page.reload();
    await expect.poll(() => page.locator('#who-name').textContent()).toContain('alice');
    await expect.poll(() => page.locator('#conn').getAttribute('data-state')).toBe('open');

    await page.locator('#signout').click();
    await expect.poll(() => page.locator('#signin').isVisible()).toBe(true);
    const me = await page.evaluate(async () => (await fetch('/auth/me')).status);
    expect(me).toBe(401);
    await page.screenshot({ path: join(SHOTS, '5-signed-out-again.png'), fullPage: true });
    expect(errors).toEqual([]);
    await context.close();
  }, 60_000);

  it('completes a reply without gap or repeat when the socket is closed and the network is down for two seconds', async () => {
    await gw.app.services.users.create({ issuer: `${gw.url}/dev-idp`, subject: 'root.crypto', roles: ['admin'] });
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    await signIn(page, gw.url, 'root');
    await expect.poll(() => page.locator('#admin').isVisible()).toBe(true);

    const { prompt, reply: expected } = slowPrompt('n', 80, 50);
    await page.locator('#prompt').fill(prompt);
    await page.keyboard.press('Enter');
    const reply = page.locator('.msg.assistant').last();
    await expect.poll(async () => (await reply.locator('.body').innerText()).length, { timeout: 10_000 }).toBeGreaterThan(20);
    // The server closes the socket (internal error: reconnect) and the network goes away.
    await gw.app.realtime.fanout.kick({}, { code: 1011, reason: 'test: network dropped', cause: 'error' });
    await context.setOffline(true);
    await expect.poll(() => page.locator('#conn').getAttribute('data-state')).not.toBe('open');
    await page.waitForTimeout(2_000);
    await page.screenshot({ path: join(SHOTS, '6-network-down.png'), fullPage: true });
    await context.setOffline(false);
    await expect.poll(() => reply.getAttribute('data-state'), { timeout: 15_000 }).toBe('complete');
    expect((await reply.locator('.body').innerText()).trim()).toBe(expected);
    expect(await page.locator('#conn').getAttribute('data-state')).toBe('open');
    await page.locator('#admin-refresh').click();
    await expect.poll(() => page.locator('#admin-users').innerText()).toContain('root.crypto');
    await page.screenshot({ path: join(SHOTS, '7-after-reconnect-admin.png'), fullPage: true });
    await context.close();
  }, 60_000);
});
