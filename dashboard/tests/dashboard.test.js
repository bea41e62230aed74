// The dashboard in a real browser (Debian's Chromium through playwright-core) against the
// real binary and the real services, Resend played by a local stub. The steps run in order
// and share one signed-in page; each checks what a person sees (roles, labels, text), and
// after each one neither the page's HTML nor any response the page received may contain a
// stored provider secret.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { callApi, screenshotDir, SERVICE_TOKEN, startStack, TENANT, waitFor } from './harness.js';

const TIMEOUT = 20_000;

let stack;
let context;
let page;
const responses = [];
const pendingBodies = [];
const cspViolations = [];
let kindFields = {};

async function shot(name) {
  await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: true });
}

/** The page's HTML and every response body it received hold none of the stored secrets. */
async function assertNoSecretLeaked(step) {
  await Promise.all(pendingBodies.splice(0));
  const html = await page.content();
  for (const [name, secret] of Object.entries(stack.resendKeys)) {
    assert.ok(!html.includes(secret), `${step}: the page HTML holds the ${name} Resend key`);
    for (const r of responses) {
      assert.ok(!r.body.includes(secret), `${step}: the response of ${r.url} holds the ${name} Resend key`);
    }
  }
}

async function openScreen(name) {
  const menu = page.getByRole('button', { name: 'Menu' });
  if (await menu.isVisible()) await menu.click();
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click();
  await page.getByRole('heading', { level: 1, name, exact: true }).waitFor();
}

function fieldLabel(kind, name) {
  const f = kindFields[kind]?.find((x) => x.name === name);
  assert.ok(f, `GET /v1/provider-kinds describes ${kind}.${name}`);
  return f.label ?? name;
}

function providerRow(name) {
  return page.getByRole('listitem', { name, exact: true });
}

async function providersByName() {
  const r = await callApi(stack, 'GET', '/v1/providers');
  assert.equal(r.status, 200);
  return Object.fromEntries(r.body.items.map((p) => [p.name, p]));
}

async function addResendProvider({ name, apiKey, from }) {
  await page.getByRole('button', { name: '+ Add provider' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('button', { name: /Resend/ }).click();
  await dialog.getByLabel('Name').fill(name);
  await dialog.getByLabel(fieldLabel('resend', 'api_key'), { exact: false }).first().fill(apiKey);
  await dialog.getByLabel(fieldLabel('resend', 'from'), { exact: false }).fill(from);
  await dialog.getByRole('button', { name: 'Save and test' }).click();
  await dialog.waitFor({ state: 'detached' });
}

describe('the tenant dashboard', { timeout: 10 * 60_000 }, () => {
  before(async () => {
    stack = await startStack();
    const kinds = await callApi(stack, 'GET', '/v1/provider-kinds');
    assert.equal(kinds.status, 200, 'GET /v1/provider-kinds answers');
    kindFields = Object.fromEntries(kinds.body.items.map((k) => [k.kind, k.fields]));
    context = await stack.browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('response', (r) => {
      if (!r.url().startsWith(stack.baseUrl)) return;
      pendingBodies.push(
        r.text().then(
          (body) => responses.push({ url: r.url(), body }),
          () => {},
        ),
      );
    });
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
    });
    page.on('pageerror', (e) => cspViolations.push(`page error: ${e.message}`));
  });

  after(async () => {
    if (stack) await stack.stop();
  });

  test('signing in: a wrong key says so, the right one opens the overview', async () => {
    const first = await page.goto(stack.dashboardUrl);
    assert.equal(first.status(), 200);
    const csp = first.headers()['content-security-policy'] ?? '';
    assert.match(csp, /script-src 'self'/, 'the page is served with a strict Content-Security-Policy');
    assert.match(csp, /style-src 'self'/);
    assert.ok(!(await page.content()).includes('not built'), 'the binary serves the built dashboard');
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await shot('sign-in');
    await page.getByLabel('API key').fill('lsc_this_key_does_not_exist_0000000000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('That key was not accepted').waitFor();
    await page.getByLabel('API key').fill(stack.apiKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.getByText('No messages in the last 7 days').waitFor();
    await shot('overview-empty');
    await assertNoSecretLeaked('sign in');
  });

  test('adding a Resend provider, then testing it, says connected', async () => {
    await openScreen('Providers');
    await page.getByText('No Email provider of your own yet').waitFor();
    // The API's field errors sit under their inputs.
    await page.getByRole('button', { name: '+ Add provider' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('button', { name: /Resend/ }).click();
    await dialog.getByLabel('Name').fill('resend-main');
    await dialog.getByRole('button', { name: 'Save', exact: true }).click();
    const from = dialog.getByLabel(fieldLabel('resend', 'from'), { exact: false });
    await waitFor('the from field to be marked invalid', async () => (await from.getAttribute('aria-invalid')) === 'true', TIMEOUT);
    await shot('provider-form');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    // Focus returns to the opener (within a frame of the dialog closing).
    await waitFor(
      'focus to return to "+ Add provider"',
      async () => (await page.evaluate(() => document.activeElement?.textContent)) === '+ Add provider',
      2000,
    );

    await addResendProvider({ name: 'resend-main', apiKey: stack.resendKeys.good, from: `Shop <hello@${stack.senderDomain}>` });
    const row = providerRow('resend-main');
    await row.getByText('Connected').waitFor();
    assert.ok(
      stack.resend.requests.some((r) => r.url.startsWith('/domains') && r.key === stack.resendKeys.good),
      'the check called Resend with the key typed in',
    );
    // A real test message, followed live until it is sent.
    await row.getByLabel(/Send a test message to/).fill('owner@example.com');
    await row.getByRole('button', { name: 'Send test message' }).click();
    await row.getByText('Sent', { exact: true }).waitFor({ timeout: 30_000 });
    await row.getByRole('link', { name: 'Open its timeline' }).waitFor();
    assert.ok(
      stack.resend.requests.some((r) => r.url.startsWith('/emails') && r.body.includes('owner@example.com')),
      'the test message went out through Resend',
    );
    await shot('providers-test-ok');
    await assertNoSecretLeaked('add provider');
  });

  test('a wrong key makes the test say the credentials were rejected', async () => {
    await addResendProvider({ name: 'resend-backup', apiKey: stack.resendKeys.bad, from: `Shop <backup@${stack.senderDomain}>` });
    const row = providerRow('resend-backup');
    await row.getByText('Credentials rejected').first().waitFor();
    await row.getByText(/The provider said: .*API key is invalid/).waitFor();
    await shot('providers-test-failed');
    await assertNoSecretLeaked('wrong key');
  });

  test('editing without retyping a secret keeps it', async () => {
    await page.getByRole('button', { name: 'Edit resend-main' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText(/leave blank to keep/i).first().waitFor();
    const from = dialog.getByLabel(fieldLabel('resend', 'from'), { exact: false });
    await from.fill(`Shop Team <team@${stack.senderDomain}>`);
    const before = stack.resend.requests.length;
    await dialog.getByRole('button', { name: 'Save and test' }).click();
    await dialog.waitFor({ state: 'detached' });
    await providerRow('resend-main').getByText('Connected').waitFor();
    await waitFor('a new check at Resend', async () => stack.resend.requests.length > before, TIMEOUT);
    const last = stack.resend.requests.filter((r) => r.url.startsWith('/domains')).pop();
    assert.equal(last.key, stack.resendKeys.good, 'the stored key is still the one typed at creation');
    const providers = await providersByName();
    assert.equal(providers['resend-main'].config.from, `Shop Team <team@${stack.senderDomain}>`);
    await assertNoSecretLeaked('edit');
  });

  test('reordering and disabling providers', async () => {
    const list = page.getByRole('list', { name: 'Email providers' });
    await page.getByRole('button', { name: 'Move resend-backup up' }).click();
    await waitFor('resend-backup to be tried first', async () => (await list.getByRole('listitem').first().getAttribute('aria-label')) === 'resend-backup', TIMEOUT);
    let providers = await providersByName();
    assert.ok(providers['resend-backup'].priority < providers['resend-main'].priority, 'the API has the new order');

    await page.getByRole('switch', { name: 'resend-backup enabled' }).click();
    await providerRow('resend-backup').getByText('Disabled — not tried').waitFor();
    providers = await providersByName();
    assert.equal(providers['resend-backup'].enabled, false);
    await shot('providers');
    await assertNoSecretLeaked('reorder and disable');
  });

  test('a message sent through the API appears in the log, and its timeline shows the attempt', async () => {
    const sends = [];
    for (const to of ['ada@example.com', 'bob@example.com']) {
      const r = await callApi(stack, 'POST', '/v1/send', {
        body: {
          channel: 'email',
          to,
          content: { subject: 'Your order', text: 'It ships today.' },
          metadata: { order: '<b>A-1</b>', note: '<img src=x onerror=alert(1)>' },
        },
      });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      sends.push(r.body.id);
    }
    for (const id of sends) {
      await waitFor(`message ${id} to be sent`, async () => {
        const m = await callApi(stack, 'GET', `/v1/messages/${id}`);
        return m.body?.status === 'sent';
      }, 30_000);
    }
    await openScreen('Messages');
    const table = page.getByRole('table', { name: 'Messages, newest first' });
    await table.getByRole('cell', { name: 'ada@example.com', exact: true }).waitFor();
    await table.getByRole('cell', { name: 'bob@example.com', exact: true }).waitFor();
    await shot('messages');
    await page.getByRole('link', { name: /Open the message to ada@example.com/ }).click();
    await page.getByRole('heading', { level: 1, name: 'Message' }).waitFor();
    const timeline = page.getByRole('list').filter({ hasText: 'accepted' });
    await timeline.getByText('attempt 1 · resend-main').waitFor();
    await timeline.getByText(/✓ sent · resend-main/).waitFor();
    // Metadata from outside is text, never HTML.
    await page.getByText('"order": "<b>A-1</b>"').waitFor();
    assert.equal(await page.locator('main b, main img').count(), 0, 'no element was made from the metadata');
    await shot('message');
    // An API error shows the problem's detail and a way to retry, never a blank page.
    await page.goto(`${stack.dashboardUrl}#/messages/00000000-0000-4000-8000-000000000000`);
    await page.getByRole('alert').getByText('message not found').waitFor();
    await page.getByRole('alert').getByRole('button', { name: 'Retry' }).waitFor();
    await assertNoSecretLeaked('message log');
  });

  test('filters narrow the message list', async () => {
    await openScreen('Messages');
    const table = page.getByRole('table', { name: 'Messages, newest first' });
    await table.getByRole('cell', { name: 'ada@example.com', exact: true }).waitFor();
    await page.getByLabel('Recipient (exact)').fill('bob@example.com');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await waitFor('only bob to be listed', async () => (await table.getByRole('cell', { name: 'ada@example.com', exact: true }).count()) === 0, TIMEOUT);
    await table.getByRole('cell', { name: 'bob@example.com', exact: true }).waitFor();

    await page.getByRole('button', { name: 'Clear' }).click();
    await page.getByLabel('Status').selectOption('failed');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('No message matches these filters').waitFor();

    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Channel').selectOption('sms');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('No message matches these filters').waitFor();

    await page.getByLabel('Channel').selectOption('email');
    await page.getByLabel('Provider').selectOption({ label: 'resend-main' });
    await page.getByLabel('Time range').selectOption('1h');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await table.getByRole('cell', { name: 'ada@example.com', exact: true }).waitFor();
    await table.getByRole('cell', { name: 'bob@example.com', exact: true }).waitFor();
    await assertNoSecretLeaked('filters');
  });

  test('the overview counts what was sent', async () => {
    await openScreen('Overview');
    await waitFor('the overview to count the 3 messages sent (2 sends and the test message)', async () => {
      const tile = page.getByText('Messages, last 7 days').locator('..');
      if ((await tile.count()) && (await tile.innerText()).includes('3')) return true;
      await page.getByRole('button', { name: '30 days' }).click();
      await page.getByRole('button', { name: '7 days' }).click();
      return false;
    }, 30_000);
    await page.getByRole('heading', { name: 'Sends per day by outcome' }).waitFor();
    const providerTable = page.getByRole('table', { name: 'Delivery per provider' });
    await providerTable.getByRole('cell', { name: 'resend-main' }).waitFor();
    await shot('overview');
    await assertNoSecretLeaked('overview');
  });

  test('creating and revoking an API key', async () => {
    await openScreen('API keys');
    await page.getByRole('button', { name: 'Create key' }).click();
    let dialog = page.getByRole('dialog');
    await dialog.getByLabel('Name').fill('ci-test');
    await dialog.getByRole('button', { name: 'Create key' }).click();
    await dialog.getByText('you will not see it again').waitFor();
    const key = await dialog.getByLabel(/API key/).inputValue();
    assert.match(key, /^lsc_/);
    await dialog.getByRole('button', { name: 'Copy' }).waitFor();
    await shot('api-key-created');
    await dialog.getByRole('button', { name: 'Done' }).click();
    assert.equal((await callApi(stack, 'GET', '/v1/messages?limit=1', { key })).status, 200, 'the new key works');

    await page.getByRole('button', { name: 'Revoke ci-test' }).click();
    dialog = page.getByRole('alertdialog');
    await dialog.getByText(/“ci-test” \(lsc_/).first().waitFor();
    await dialog.getByRole('button', { name: 'Revoke key' }).click();
    await dialog.waitFor({ state: 'detached' });
    await waitFor('the revoked key to be gone from the list', async () => (await page.getByRole('cell', { name: 'ci-test', exact: true }).count()) === 0, TIMEOUT);
    assert.equal((await callApi(stack, 'GET', '/v1/messages?limit=1', { key })).status, 401, 'the revoked key gets 401');
    await shot('api-keys');
    await assertNoSecretLeaked('api keys');
  });

  test('at phone width the navigation is a menu button', async () => {
    await page.setViewportSize({ width: 390, height: 800 });
    const nav = page.getByRole('navigation', { name: 'Main' });
    await page.getByRole('button', { name: 'Menu' }).waitFor();
    assert.equal(await nav.getByRole('link', { name: 'Providers' }).isVisible(), false);
    await page.getByRole('button', { name: 'Menu' }).click();
    await nav.getByRole('link', { name: 'Providers' }).waitFor();
    await shot('phone-menu');
    await nav.getByRole('link', { name: 'Providers' }).click();
    await page.getByRole('heading', { level: 1, name: 'Providers' }).waitFor();
    await shot('phone-providers');
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  test('a key revoked while signed in returns to sign-in saying so', async () => {
    const created = await callApi(stack, 'POST', '/v1/api-keys', {
      key: SERVICE_TOKEN,
      body: { tenant_id: TENANT, name: 'short-lived' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const other = await stack.browser.newContext();
    try {
      const p = await other.newPage();
      p.setDefaultTimeout(TIMEOUT);
      await p.goto(stack.dashboardUrl);
      await p.getByLabel('API key').fill(created.body.key);
      await p.getByRole('button', { name: 'Sign in' }).click();
      await p.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
      const revoked = await callApi(stack, 'DELETE', `/v1/api-keys/${created.body.id}`, { key: SERVICE_TOKEN, headers: { 'X-Tenant-Id': TENANT } });
      assert.equal(revoked.status, 204);
      // The overview's own requests may still be on their way when the key is revoked: the
      // first of them to arrive after it already sends the page back to sign-in, and then
      // there is no Messages link left to click.
      await p.getByRole('link', { name: 'Messages' }).click({ timeout: 5_000 }).catch(() => {});
      await p.getByText('Your key was revoked or is wrong').waitFor();
      await p.getByRole('heading', { name: 'Sign in' }).waitFor();
      assert.equal(await p.evaluate(() => sessionStorage.length), 0, 'the key is forgotten');
    } finally {
      await other.close();
    }
  });

  test('signing out forgets the key, and the page broke no Content-Security-Policy rule', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.deepEqual(cspViolations, []);
    await assertNoSecretLeaked('sign out');
  });
});
