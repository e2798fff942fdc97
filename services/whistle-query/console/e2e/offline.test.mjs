// Offline field work (issue 19, item 8): the report form is an installable app that reloads without
// a network, queues reports in IndexedDB per grid worker as 待发送, and sends each exactly once when
// the network returns — after the worker signs in again if the session ended. The network is cut
// for real (the page talks through a TCP proxy the test cuts) and the browser is told it is offline.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, clients, launch, openPage, waitFor, cuttableProxy, pngOf } from "./helpers.mjs";

let browser;

before(async () => {
  for (const v of ["grid", "gridCode"]) assert.ok(env[v], `${v} is required (see docs/console.md)`);
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The app's manifest and worker are served as such, under the page's CSP. */
test("the report form is an installable app: manifest, icons and service worker with their headers", async () => {
  const page = await fetch(`${env.api}/`);
  const html = await page.text();
  assert.match(html, /<link rel="manifest" href="manifest.webmanifest">/);
  const manifest = await fetch(`${env.api}/manifest.webmanifest`);
  assert.equal(manifest.status, 200);
  assert.match(manifest.headers.get("content-type"), /application\/manifest\+json/);
  const m = await manifest.json();
  assert.equal(m.display, "standalone");
  assert.match(m.start_url, /#\/report$/);
  assert.ok(m.icons.some((i) => i.sizes === "192x192") && m.icons.some((i) => i.sizes === "512x512"), "192 and 512 px icons");
  for (const icon of m.icons) assert.equal((await fetch(`${env.api}/${icon.src}`)).status, 200, icon.src);
  const sw = await fetch(`${env.api}/sw.js`);
  assert.equal(sw.status, 200);
  assert.match(sw.headers.get("content-type"), /javascript/);
  // Revalidated on every load, so a release reaches the phones; under the same policy as the page.
  assert.equal(sw.headers.get("cache-control"), "no-cache");
  assert.match(sw.headers.get("content-security-policy"), /script-src 'self'/);
  assert.match(manifest.headers.get("content-security-policy"), /default-src 'self'/);
});

test("offline: the form reloads, two reports (one with a photo) wait as 待发送 and are sent once each on reconnect, after signing in again", async () => {
  const proxy = await cuttableProxy(env.api);
  const { context, page, errors } = await openPage(browser, env.grid, "report", { width: 390, height: 844, mobile: true, base: proxy.url });
  const sends = [];
  const uploads = [];
  page.on("requestfinished", (r) => r.url().endsWith("/whistle.v1.Reporting/SubmitReport") && sends.push(r.url()));
  page.on("requestfinished", (r) => r.url().endsWith("/whistle.v1.Reporting/UploadPhoto") && uploads.push(r.url()));
  await page.waitForSelector('[data-testid="groups"] [data-testid^="group-"]', { timeout: 20000 });
  // Installed: the worker controls the page (and has the release's files).
  await waitFor(() => page.evaluate(() => navigator.serviceWorker?.controller?.state === "activated"), { timeout: 20000, message: "the service worker controls the page" });

  // The network goes away; the page reloads from the device.
  proxy.cut();
  await context.setOffline(true);
  await page.reload();
  await page.waitForSelector('[data-testid="report-form"]', { timeout: 15000 });
  assert.ok(await page.locator('[data-testid="groups"] [data-testid^="group-"]').count(), "the categories are there offline");

  const titles = [`离线上报一 ${Date.now()}`, `离线上报二 ${Date.now()}`];
  const photo = await pngOf(800, 600, 3);
  for (const title of titles) {
    await page.locator('[data-testid^="group-"]').first().click();
    await page.locator('[data-testid^="category-"]').first().click();
    await page.fill('[data-testid="report-title"]', title);
    if (title === titles[0]) {
      // The photo is compressed and kept on the device with the report.
      await page.setInputFiles('[data-testid="report-photos-input"]', { name: "offline.png", mimeType: "image/png", buffer: photo });
      await page.waitForSelector('[data-testid="photo-thumb"]');
    }
    await page.click('[data-testid="report-submit"]');
    await page.waitForSelector('[data-testid="report-queued"]');
    await waitFor(async () => (await page.locator('[data-testid="outbox-item"]').allInnerTexts()).some((x) => x.includes(title)), { message: `${title} waiting` });
  }
  const ids = await page.$$eval('[data-testid="outbox-item"]', (els) => els.map((e) => e.dataset.report));
  assert.equal(ids.length, 2);
  assert.match(await page.locator('[data-testid="outbox"]').innerText(), /待发送/);
  assert.deepEqual(sends, [], "nothing was sent offline");
  assert.deepEqual(uploads, [], "no photo was sent offline");
  assert.match(await page.locator(`[data-testid="outbox-item"][data-report="${ids[0]}"]`).innerText(), /照片 1 张/);

  // The session ends (the tab's token is gone) while offline: the reports stay on the device.
  await page.evaluate(() => sessionStorage.clear());
  await page.reload();
  await page.waitForSelector('[data-testid="signin"]', { timeout: 15000 });

  // The network returns; the worker signs in again and the outbox goes out, each report once.
  proxy.restore();
  await context.setOffline(false);
  await page.fill('[data-testid="token-input"]', env.grid);
  await page.click('[data-testid="signin-submit"]');
  await page.waitForSelector('[data-testid="report-form"]', { timeout: 15000 });
  await waitFor(async () => (await page.locator('[data-testid="outbox-item"]').count()) === 0, { timeout: 30000, message: "the outbox emptied" });
  await waitFor(
    async () => {
      const mine = await clients(env.grid).cc.listMyReports({ pageSize: 50 });
      return ids.every((id) => mine.reports.filter((r) => r.reportId === id).length === 1);
    },
    { timeout: 20000, message: "both reports filed once (ListMyReports)" },
  );
  // Give a second flush (timer, online event) the time to run: still one send each.
  await page.waitForTimeout(11000);
  assert.equal(sends.length, 2, `SubmitReport calls: ${sends.length}`);
  assert.equal(uploads.length, 1, `UploadPhoto calls: ${uploads.length}`);
  // The queued photo arrived with its report: the worker sees it on the incident.
  const grid = clients(env.grid).cc;
  const mine = (await grid.listMyReports({ pageSize: 50 })).reports;
  const withPhoto = mine.find((r) => r.reportId === ids[0]);
  const incident = await grid.getIncident({ incidentId: withPhoto.incident.incidentId });
  const photos = incident.photos.filter((p) => p.reportId === ids[0]);
  assert.equal(photos.length, 1, "the queued report's photo is on its incident");
  const stored = await grid.getPhoto({ incidentId: withPhoto.incident.incidentId, photoId: photos[0].photoId });
  assert.equal(stored.mediaType, "image/jpeg");
  for (const id of ids) await page.waitForSelector(`[data-testid="my-report"][data-report="${id}"]`, { timeout: 15000 });
  assert.deepEqual(errors.filter((e) => !/Failed to load resource|ERR_INTERNET_DISCONNECTED|ERR_CONNECTION|net::/.test(e)), []);
  await context.close();
  proxy.close();
});
