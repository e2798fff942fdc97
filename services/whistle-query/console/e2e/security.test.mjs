// Browser tests of the console's security: the headers on its page and assets, the token kept in
// sessionStorage only, and a link's token never silently replacing a signed-in session.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, launch, openPage } from "./helpers.mjs";

let browser;

before(async () => {
  assert.ok(env.operator && env.liaison, "WHISTLE_OPERATOR_TOKEN and WHISTLE_LIAISON_TOKEN are required");
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Collects every Content-Security-Policy violation of the page, from before its first script. */
async function watchCsp(page) {
  await page.addInitScript(() => {
    window.__csp = [];
    addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
}

test("the console's page and assets carry the security headers; the page breaks none of its policy", async () => {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const page = await context.newPage();
  await watchCsp(page);
  const responses = [];
  page.on("response", (r) => responses.push(r));
  const main = await page.goto(`${env.page}/#/screen?token=${encodeURIComponent(env.operator)}`);
  await page.waitForSelector('[data-testid="screen"]', { timeout: 20000 });
  const h = await main.allHeaders();
  const csp = h["content-security-policy"] ?? "";
  const directives = Object.fromEntries(csp.split(";").map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v.join(" ")]));
  assert.equal(directives["script-src"], "'self'", csp);
  assert.equal(directives["connect-src"], "'self'", csp);
  assert.equal(directives["frame-ancestors"], "'none'", csp);
  assert.equal(directives["object-src"], "'none'", csp);
  assert.equal(h["x-frame-options"], "DENY");
  assert.equal(h["x-content-type-options"], "nosniff");
  assert.equal(h["referrer-policy"], "no-referrer");
  // The test stack is plaintext: HSTS is sent only by a listener that speaks TLS.
  assert.equal(h["strict-transport-security"], undefined);
  // The page is revalidated on every load; the script and stylesheet it names are content-named
  // (app-3F2A9C1B.js) and cached for a year.
  assert.equal(h["cache-control"], "no-cache");
  const html = await (await context.request.get(`${env.page}/`)).text();
  const assets = [...html.matchAll(/(?:src|href)="(app-[A-Z0-9]{8,}\.(?:js|css))"/g)].map((m) => `/${m[1]}`);
  assert.equal(assets.length, 2, html);
  // The script and the stylesheet too (a path that is no file gets index.html as a 404, with the headers).
  for (const path of [...assets, "/no/such/page", "/favicon.svg"]) {
    const r = await context.request.get(`${env.page}${path}`);
    assert.equal(r.status(), path.startsWith("/no/") ? 404 : 200, path);
    assert.equal(r.headers()["x-content-type-options"], "nosniff", path);
    assert.equal(r.headers()["content-security-policy"], csp, path);
    assert.equal(r.headers()["cache-control"], path.startsWith("/app-") ? "public, max-age=31536000, immutable" : "no-cache", path);
  }
  // gRPC-web answers were not broken by the headers: the screen loaded its data.
  assert.ok(responses.some((r) => r.url().includes("/whistle.v1.CommandCenter/") && r.status() === 200));
  // The running screen (charts, map, ticker) breaks nothing of the policy.
  await page.waitForTimeout(1500);
  assert.deepEqual(await page.evaluate(() => window.__csp), []);
  // Framed by another page, the console does not load.
  const framer = await context.newPage();
  await framer.setContent(`<iframe id="f" src="${env.page}/"></iframe>`);
  await framer.waitForTimeout(1000);
  const framed = framer.frames().find((f) => f !== framer.mainFrame());
  const body = framed ? await framed.evaluate(() => document.getElementById("app")?.childElementCount ?? -1).catch(() => -1) : -1;
  assert.ok(body <= 0, "the console rendered inside a frame");
  await context.close();
});

test("the token is kept in sessionStorage, never in localStorage", async () => {
  const { context, page } = await openPage(browser, env.operator, "screen");
  await page.waitForSelector('[data-testid="screen"]', { timeout: 20000 });
  assert.equal(await page.evaluate(() => sessionStorage.getItem("whistle.token")), env.operator);
  assert.equal(await page.evaluate(() => localStorage.getItem("whistle.token")), null);
  assert.ok(!page.url().includes("token="), page.url());
  // A token an earlier version left in localStorage is removed, not used.
  await page.evaluate(() => localStorage.setItem("whistle.token", "wst_left_over"));
  await page.reload();
  await page.waitForSelector('[data-testid="screen"]', { timeout: 20000 });
  assert.equal(await page.evaluate(() => localStorage.getItem("whistle.token")), null);
  // Another tab (a new session) is not signed in.
  const other = await context.newPage();
  await other.goto(`${env.page}/`);
  await other.waitForSelector('[data-testid="signin"]');
  await context.close();
});

test("a link with another token while signed in asks first; declining keeps the session, accepting switches", async () => {
  const { context, page, errors } = await openPage(browser, env.operator, "screen");
  await page.waitForSelector('[data-testid="screen"]', { timeout: 20000 });
  const role = () => page.getAttribute('[data-testid="who"]', "data-role");
  assert.equal(await role(), "operator");

  // The link is followed inside the running page (a hash change)...
  await page.evaluate((t) => (location.hash = `#/workbench?token=${encodeURIComponent(t)}`), env.liaison);
  await page.waitForSelector('[data-testid="switch-account-dialog"]');
  assert.ok(!page.url().includes("token="), `the token is stripped while asking: ${page.url()}`);
  assert.match(await page.textContent('[data-testid="switch-account-dialog"]'), /切换账号/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("whistle.token")), env.operator);
  await page.click('[data-testid="switch-account-keep"]');
  await page.waitForSelector('[data-testid="screen"]');
  assert.equal(await role(), "operator");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("whistle.token")), env.operator);
  assert.ok(!page.url().includes("token="), page.url());

  // ...and opened as a new page load in the same tab: asked again; this time accepted.
  await page.goto(`${env.page}/index.html#/workbench?token=${encodeURIComponent(env.liaison)}`);
  await page.waitForSelector('[data-testid="switch-account-dialog"]');
  assert.ok(!page.url().includes("token="), page.url());
  await page.click('[data-testid="switch-account-switch"]');
  await page.waitForSelector('[data-testid="workbench"]', { timeout: 20000 });
  assert.equal(await role(), "liaison");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("whistle.token")), env.liaison);

  // The same token again is no question: it is already the session.
  await page.evaluate((t) => (location.hash = `#/workbench?token=${encodeURIComponent(t)}`), env.liaison);
  await page.waitForSelector('[data-testid="workbench"]');
  await page.waitForTimeout(300);
  assert.equal(await page.locator('[data-testid="switch-account-dialog"]').count(), 0);
  assert.ok(!page.url().includes("token="), page.url());
  assert.deepEqual(errors, []);
  await context.close();
});
