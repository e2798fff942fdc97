// Browser tests of the console against a running stack (see docs/console.md for the environment).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import jsQR from "jsqr";
import { env, clients, launch, openPage, waitFor, expectKpisMatch, readKpis, kpisOf, cuttableProxy } from "./helpers.mjs";
import { TaskStatus } from "./gen/whistle/v1/common_pb.js";

let browser;
const op = clients(env.operator);
let root = "150600";

before(async () => {
  assert.ok(env.operator, "WHISTLE_OPERATOR_TOKEN is required");
  browser = await launch();
  root = (await op.cc.getSession({})).areaCode || root;
});
after(async () => {
  await browser?.close();
});

function noErrors(errors, foreign) {
  assert.deepEqual(errors, [], `console errors: ${errors.join("\n")}`);
  assert.deepEqual(foreign, [], `requests to other origins: ${foreign.join("\n")}`);
}

async function openScreen(token = env.operator, opts) {
  const s = await openPage(browser, token, "screen", opts);
  await s.page.waitForSelector('[data-testid="screen"]', { timeout: 20000 });
  return s;
}

test("sign-in: a pasted token opens the role's view; a bad one is refused; sign-out", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${env.page}/`);
  await page.waitForSelector('[data-testid="signin"]');
  await page.fill('[data-testid="token-input"]', "wst_not_a_real_token");
  await page.click('[data-testid="signin-submit"]');
  await page.waitForSelector('[data-testid="signin-error"]');
  // Said in words; the code only in the tooltip.
  const refusal = await page.locator('[data-testid="signin-error"]').innerText();
  assert.match(refusal, /令牌无效/);
  assert.ok(!/UNAUTHENTICATED|wst_/.test(refusal), refusal);
  assert.match(await page.getAttribute('[data-testid="signin-error"]', "title"), /UNAUTHENTICATED/);
  await page.fill('[data-testid="token-input"]', env.operator);
  await page.click('[data-testid="signin-submit"]');
  await page.waitForSelector('[data-testid="screen"]');
  assert.equal(new URL(page.url()).hash, "#/screen");
  // The nav offers only what the role may open: an operator has no workbench or report form.
  assert.equal(await page.locator('[data-testid="nav-workbench"]').count(), 0);
  await page.click('[data-testid="sign-out"]');
  await page.waitForSelector('[data-testid="signin"]');
  assert.equal(await page.evaluate(() => localStorage.getItem("whistle.token")), null);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("whistle.token")), null);
  // A token in the fragment is kept and stripped from the address bar.
  await page.goto(`${env.page}/#/screen?token=${encodeURIComponent(env.operator)}`);
  await page.waitForSelector('[data-testid="screen"]');
  assert.ok(!page.url().includes("token="), page.url());
  assert.deepEqual(errors, []);
  await context.close();
});

test("the screen's KPI tiles equal GetOverview for the token's area", async () => {
  const { context, page, errors, foreign } = await openScreen();
  const { tiles } = await expectKpisMatch(page, op.cc, root);
  assert.equal(tiles.area, root);
  // The panels fill from the API: rankings, trend and the map.
  await page.waitForSelector(`[data-testid="panel-streets"][data-area="${root}"]`, { timeout: 20000 });
  await page.waitForSelector(`[data-testid="panel-trend"][data-area="${root}"]`, { timeout: 20000 });
  const cells = (await op.cc.getGridMap({ areaCode: root })).cells.length;
  await page.waitForSelector(`[data-testid="panel-map"][data-area="${root}"][data-cells="${cells}"]`, { timeout: 20000 });
  await page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 20000 });
  noErrors(errors, foreign);
  await context.close();
});

test("a report from the grid form appears in the screen's ticker within 2 s of the answer", async () => {
  assert.ok(env.grid, "WHISTLE_GRID_TOKEN is required");
  const screen = await openScreen();
  await screen.page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 20000 });
  const form = await openPage(browser, env.grid, "report", { width: 390, height: 844, mobile: true });
  const { page } = form;
  await page.waitForSelector('[data-testid="report-form"]', { timeout: 20000 });
  await page.click('[data-testid="group-environment"], [data-testid^="group-"] >> nth=0');
  await page.locator('[data-testid^="category-"]').first().click();
  const title = `e2e 路灯不亮 ${Date.now()}`;
  await page.fill('[data-testid="report-title"]', title);
  await page.fill('[data-testid="report-desc"]', "浏览器测试上报");
  await page.click('[data-testid="report-submit"]');
  const outcome = await page.waitForSelector('[data-testid="report-outcome"]', { timeout: 15000 });
  const answeredAt = Date.now();
  const kind = await outcome.getAttribute("data-outcome");
  assert.ok(["INCIDENT", "ATTACHED", "PENDING"].includes(kind), `outcome ${kind}: ${await outcome.textContent()}`);
  await screen.page.waitForSelector(`[data-testid="ticker-item"]:has-text("${title}")`, { timeout: 2000 });
  const took = Date.now() - answeredAt;
  assert.ok(took <= 2000, `ticker after ${took} ms`);
  // The worker's own list shows it.
  await page.waitForSelector(`[data-testid="my-report"]:has-text("${title}")`, { timeout: 10000 });
  // With its tracking code, whose QR code the resident scans off the phone: it opens the page.
  const tracking = page.locator(`[data-testid="my-report"]:has-text("${title}") [data-testid="tracking-code"]`);
  await tracking.waitFor({ timeout: 10000 });
  const code = await tracking.getAttribute("data-code");
  await tracking.locator('[data-testid="tracking-qr-toggle"]').click();
  const pixels = await tracking.locator('[data-testid="tracking-qr"]').evaluate(async (img) => {
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const { width, height, data } = context.getImageData(0, 0, canvas.width, canvas.height);
    return { width, height, data: Array.from(data) };
  });
  const scanned = jsQR(Uint8ClampedArray.from(pixels.data), pixels.width, pixels.height);
  assert.equal(scanned?.data, `${new URL(env.page).origin}/track#${code}`);
  noErrors(screen.errors, screen.foreign);
  noErrors(form.errors, form.foreign);
  await screen.context.close();
  await form.context.close();
});

test("a liaison accepts a task in the workbench and the screen's counters follow", async () => {
  assert.ok(env.liaison, "WHISTLE_LIAISON_TOKEN is required");
  const li = clients(env.liaison);
  const screen = await openScreen();
  await expectKpisMatch(screen.page, op.cc, root);
  const bench = await openPage(browser, env.liaison, "workbench");
  await bench.page.waitForSelector('[data-testid="task-table"]', { timeout: 20000 });
  let incidentId = env.taskIncident;
  if (!incidentId) {
    // No task named: the dispatched one of the list with the latest report-in deadline.
    await bench.page.locator('[data-testid="wb-task"] [data-testid="wb-accept"]').first().waitFor({ timeout: 20000 });
    incidentId = await bench.page.locator('[data-testid="wb-task"]:has([data-testid="wb-accept"])').last().getAttribute("data-incident");
  }
  const before = await op.cc.getOverview({ areaCode: root });
  const row = bench.page.locator(`[data-testid="wb-task"][data-incident="${incidentId}"]`).first();
  await row.waitFor({ timeout: 20000 });
  await row.locator('[data-testid="wb-accept"]').click();
  // 签收 confirms in a dialog (a click on the wrong row is not an accept yet).
  await bench.page.locator('[data-testid="accept-dialog"] [data-testid="dialog-submit"]').click();
  const answer = await bench.page.waitForSelector('[data-testid="action-ok"], [data-testid="dialog-error"]', { timeout: 10000 });
  assert.equal(await answer.getAttribute("data-testid"), "action-ok", await answer.textContent());
  await waitFor(async () => (await li.cc.getIncident({ incidentId })).tasks.some((t) => t.state.status === TaskStatus.ACCEPTED && t.state.departmentCode === (env.department || t.state.departmentCode)), {
    message: "the task accepted",
  });
  // The overview moved (accepted count or statuses), and the screen shows the new figures.
  const moved = await waitFor(
    async () => {
      const now = await op.cc.getOverview({ areaCode: root });
      const a = kpisOf(before), b = kpisOf(now);
      const statuses = (o) => JSON.stringify(o.byStatus.map((c) => [c.key, Number(c.count)]));
      return JSON.stringify(a.responseCounts) !== JSON.stringify(b.responseCounts) || statuses(before) !== statuses(now) ? now : false;
    },
    { timeout: 10000, message: "GetOverview to change after the accept" },
  );
  const { tiles } = await expectKpisMatch(screen.page, op.cc, root);
  assert.ok(tiles.responseCounts[1] >= kpisOf(before).responseCounts[1]);
  assert.ok(moved);
  // The row is now accepted in the workbench (or gone from the open list).
  await waitFor(async () => (await bench.page.locator(`[data-testid="wb-task"][data-incident="${incidentId}"] [data-testid="wb-accept"]`).count()) === 0, { message: "accept button gone" });
  noErrors(screen.errors, screen.foreign);
  noErrors(bench.errors, bench.foreign);
  await screen.context.close();
  await bench.context.close();
});

async function expectPanelsFollow(page, area) {
  for (const id of ["kpis", "panel-trend", "panel-overdue", "panel-map", "panel-ticker", "panel-streets", "panel-category"])
    await page.waitForSelector(`[data-testid="${id}"][data-area="${area}"]`, { timeout: 20000 });
  await expectKpisMatch(page, op.cc, area);
  const cells = (await op.cc.getGridMap({ areaCode: area })).cells.length;
  await page.waitForSelector(`[data-testid="panel-map"][data-cells="${cells}"]`, { timeout: 20000 });
  const streets = await page.$$eval('[data-testid="streets-row"]', (rows) => rows.map((r) => r.dataset.code));
  // Streets are ranked within the district (the city at the top), the selected street marked.
  const board = await op.cc.getScoreboard({ areaCode: area.slice(0, 6), kind: 2 });
  assert.equal(streets.length, Math.min(board.rows.length, 30));
  for (const c of streets) assert.ok(c.startsWith(area.slice(0, 6)) || area === root, `street ${c} outside ${area}`);
  if (area.length === 9 && streets.includes(area)) assert.equal(await page.locator(`[data-testid="streets-row"][data-code="${area}"].marked`).count(), 1);
  const overdue = await page.$$eval('[data-testid="overdue-item"]', (rows) => rows.map((r) => r.dataset.street));
  for (const c of overdue) assert.ok(c.startsWith(area), `overdue item of ${c} outside ${area}`);
  await expectOneOverdue(page, area);
  const ticker = await page.$$eval('[data-testid="ticker-item"]', (rows) => rows.map((r) => r.dataset.grid).filter((g) => g));
  for (const g of ticker) assert.ok(g.startsWith(area), `ticker event of ${g} outside ${area}`);
  const deptArea = await page.getAttribute('[data-testid="departments-board-area"]', "data-board-area");
  assert.equal(deptArea, area.slice(0, 6));
}

/**
 * One definition of 超期: the overdue badge counts what the 超期 tile counts (GetOverview.overdue:
 * open incidents past their deadline), ListOverdue's incident items, and no incident is listed twice.
 */
async function expectOneOverdue(page, area) {
  await waitFor(
    async () => {
      const api = await op.cc.listOverdue({ areaCode: area });
      const overview = await op.cc.getOverview({ areaCode: area });
      const incidents = new Set(api.items.filter((i) => !i.taskId).map((i) => i.incidentId)).size;
      const badge = Number(await page.textContent('[data-testid="overdue-count"]'));
      const tile = (await readKpis(page)).overdue;
      // The map counts the same per grid.
      const map = (await op.cc.getGridMap({ areaCode: area })).cells.reduce((n, c) => n + Number(c.overdue), 0);
      return badge === incidents && tile === Number(overview.overdue) && badge === tile && map === tile;
    },
    { message: `the 超期 badge, the 超期 tile and the API agree in ${area}` },
  );
  const listed = await page.$$eval('[data-testid="overdue-item"]', (rows) => rows.map((r) => r.dataset.incident));
  assert.equal(new Set(listed).size, listed.length, `an incident listed twice: ${listed}`);
  const late = await op.cc.listOverdue({ areaCode: area });
  for (const id of new Set(late.items.map((i) => i.incidentId))) assert.ok(listed.includes(id) || listed.length >= 40, `${id} missing from the list`);
}

test("one definition of 超期: tile, badge and list agree, each incident once, late departments under it", async () => {
  const { context, page, errors, foreign } = await openScreen();
  await page.waitForSelector(`[data-testid="panel-overdue"][data-area="${root}"]`, { timeout: 20000 });
  await expectOneOverdue(page, root);
  // The stack has an incident both overdue and late under a department: listed once, the
  // department named in it, the lateness as "已超 …" in red.
  const api = await op.cc.listOverdue({ areaCode: root });
  const both = api.items.find((i) => !i.taskId && api.items.some((j) => j.taskId && j.incidentId === i.incidentId));
  assert.ok(both, "the stack has an overdue incident with a late department");
  const item = page.locator(`[data-testid="overdue-item"][data-incident="${both.incidentId}"]`);
  assert.equal(await item.count(), 1);
  assert.match(await item.innerText(), /部门超时：/);
  const late = item.locator('[data-testid="overdue-late"]');
  assert.match((await late.innerText()).trim(), /^已超 \d+(分\d{2}秒|小时\d{2}分|天\d{2}小时)$/);
  assert.equal(await late.evaluate((el) => getComputedStyle(el).color), "rgb(255, 93, 108)");
  noErrors(errors, foreign);
  await context.close();
});

test("drill-down city → district → street: every panel follows the area", async () => {
  const district = env.drillDistrict || "150602";
  const street = env.drillStreet;
  const { context, page, errors, foreign } = await openScreen();
  await page.waitForSelector(`[data-testid="kpis"][data-area="${root}"]`, { timeout: 20000 });
  if (root !== district) {
    await page.waitForSelector(`[data-testid="area-select"] option[value="${district}"]`, { state: "attached", timeout: 20000 });
    await page.selectOption('[data-testid="area-select"]', district);
  }
  await expectPanelsFollow(page, district);
  await page.waitForSelector(`[data-testid="crumb-${district}"]`);
  let streetCode = street;
  if (!streetCode) streetCode = await page.$eval('[data-testid="area-select"] option:nth-child(2)', (o) => o.value);
  await page.waitForSelector(`[data-testid="area-select"] option[value="${streetCode}"]`, { state: "attached", timeout: 20000 });
  await page.selectOption('[data-testid="area-select"]', streetCode);
  await expectPanelsFollow(page, streetCode);
  // Back up with the breadcrumb.
  await page.click(`[data-testid="crumb-${root}"]`);
  await page.waitForSelector(`[data-testid="kpis"][data-area="${root}"]`, { timeout: 20000 });
  noErrors(errors, foreign);
  await context.close();
});

test("the incident drawer shows details and the timeline; a viewer gets no action buttons", async () => {
  assert.ok(env.grid, "WHISTLE_GRID_TOKEN is needed: a fresh report gives the ticker an incident to open");
  const { context, page, errors, foreign } = await openScreen();
  const id = await openFromTicker(page);
  const detail = await op.cc.getIncident({ incidentId: id });
  assert.equal((await page.textContent('[data-testid="incident-title"]')).trim(), detail.incident.title);
  assert.ok((await page.locator('[data-testid="timeline"] li').count()) >= Math.min(detail.timeline.length, 1));
  assert.ok((await page.locator('[data-testid="supervise-task"], [data-testid="reassign-task"], [data-testid="supervise-incident"]').count()) > 0,
    "an operator gets the 督办/改派 actions");
  noErrors(errors, foreign);
  await context.close();
  if (env.viewer) {
    const v = await openScreen(env.viewer);
    await openFromTicker(v.page);
    assert.equal(await v.page.locator('[data-testid="supervise-task"], [data-testid="reassign-task"], [data-testid="supervise-incident"]').count(), 0);
    noErrors(v.errors, v.foreign);
    await v.context.close();
  }
});

/** Files a report from the grid worker's token once the screen is live, and opens its incident from the ticker. */
async function openFromTicker(page) {
  await page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 20000 });
  const answer = await clients(env.grid).reporting.submitReport({
    report: { reportId: `e2e-drawer-${Date.now()}`, category: "municipal.manhole", title: "井盖缺失", description: "e2e", urgency: 2 },
  });
  const id = answer.incident?.incidentId;
  assert.ok(id, `the report opened or joined an incident: ${JSON.stringify(answer.outcome)}`);
  const item = page.locator(`[data-testid="ticker-item"][data-incident="${id}"]`).first();
  await item.waitFor({ timeout: 10000 });
  await item.click();
  await page.waitForSelector(`[data-testid="incident"][data-incident="${id}"]`, { timeout: 10000 });
  return id;
}

// Longer than the suite's 180 s: the indicator must stay red for 15 s, and on a loaded machine every
// wait of the cut and the reconnect takes its time.
test("the ticker reconnects after the network drops and shows what happened meanwhile, once", { timeout: 360000 }, async () => {
  assert.ok(env.grid, "WHISTLE_GRID_TOKEN is required");
  const grid = clients(env.grid);
  const file = async (title) => {
    const answer = await grid.reporting.submitReport({
      report: { reportId: `e2e-offline-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, category: "municipal.manhole", title, description: "e2e", urgency: 1 },
    });
    assert.ok(answer.incident?.incidentId, `filed: ${JSON.stringify(answer.outcome)}`);
  };
  const shown = (page, title) => page.locator(`[data-testid="ticker-item"]:has-text("${title}")`).count();
  // The page reaches the query service through a proxy the test can cut.
  const proxy = await cuttableProxy(env.page);
  const { context, page, errors, foreign } = await openScreen(env.operator, { base: proxy.url });
  await page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 20000 });
  const stamp = Date.now();
  const before = `e2e 断网前 ${stamp}`, during = [`e2e 断网中一 ${stamp}`, `e2e 断网中二 ${stamp}`];
  await file(before);
  await page.waitForSelector(`[data-testid="ticker-item"]:has-text("${before}")`, { timeout: 5000 });

  proxy.cut();
  await page.waitForSelector('[data-testid="live-status"]:not([data-status="live"])', { timeout: 20000 });
  for (const title of during) await file(title);
  // Honest: amber at once, red once nothing has got through for 15 s; the panels keep their data
  // with the time it is from, and nowhere does a code or "Failed to fetch" show.
  const dot = page.locator('[data-testid="live-status"]').first();
  assert.ok(["reconnecting", "degraded", "offline", "connecting"].includes(await dot.getAttribute("data-status")));
  assert.notEqual(await dot.evaluate((el) => getComputedStyle(el).color), "rgb(62, 230, 165)", "the indicator is not green");
  await page.waitForSelector('[data-testid="live-status"][data-status="offline"]', { timeout: 30000 });
  assert.match(await dot.innerText(), /连接中断/);
  assert.equal(await dot.evaluate((el) => getComputedStyle(el).color), "rgb(255, 93, 108)");
  const stale = page.locator('[data-testid="kpis-stale"]');
  await stale.waitFor({ timeout: 15000 });
  assert.match(await stale.innerText(), /^数据更新于 \d{2}:\d{2}:\d{2}$/);
  assert.equal(await page.locator('[data-testid$="-error"]').count(), 0, "no panel shows an error in place of its data");
  const shownText = await page.evaluate(() => document.body.innerText);
  assert.ok(!/Failed to fetch|UNKNOWN|UNAVAILABLE|[A-Z]{4,}_[A-Z]{4,}/.test(shownText), shownText.slice(0, 400));
  assert.ok((await readKpis(page)).open !== null, "the KPI tiles keep their last figures");
  proxy.restore();
  await page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 30000 });
  for (const title of during) await page.waitForSelector(`[data-testid="ticker-item"]:has-text("${title}")`, { timeout: 10000 });
  // Back to green once calls succeed again, and the stale notes go.
  await page.waitForSelector('[data-testid="kpis-stale"]', { state: "detached", timeout: 15000 });
  // Resumed after the last sequence seen: nothing twice.
  for (const title of [before, ...during]) assert.equal(await shown(page, title), 1, `${title} shown once`);
  // Requests that failed while offline are expected; nothing else may log an error.
  noErrors(errors.filter((e) => !/Failed to load resource|Failed to fetch|network|ERR_/i.test(e)), foreign);
  await context.close();
  proxy.close();
});
