// Saves screenshots of every view at its sizes into WHISTLE_SCREENSHOT_DIR (default docs/screenshots):
// the command screen at 1920×1080 (Chinese and English, a district drilled into, the incident drawer),
// at 3840×2160 and as the laptop layout at 1366×768 (the whole scrolling page); the workbench at
// 1920×1080; 人员管理 as the city operator sees it on a laptop at 1366×768; the report form at 390×844 (Chinese and English, the whole form, and offline with two
// reports waiting as 待发送); 党员接单 (a member's phone page) at 390×844 and 领导结对联系 (a paired
// leader's view) at 1366×768.
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { env, launch, openPage, waitFor, sleep } from "./helpers.mjs";

const dir = env.screenshots || join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "docs", "screenshots");
mkdirSync(dir, { recursive: true });
const browser = await launch();
const shot = async (page, name) => {
  await page.screenshot({ path: join(dir, name) });
  console.log(join(dir, name));
};
const problems = [];

async function screen(lang, name, drawer, { width = 1920, height = 1080, fullPage = false, district = "" } = {}) {
  const { context, page, errors } = await openPage(browser, env.operator, "screen", { lang, width, height });
  await page.waitForSelector('[data-testid="kpis"][data-area]:not([data-area=""])', { timeout: 20000 });
  await waitFor(() => page.locator('[data-testid="ticker-item"]').count(), { timeout: 30000, message: "ticker entries" }).catch(() => {});
  await waitFor(() => page.locator('[data-testid="streets-row"]').count(), { timeout: 20000, message: "ranking rows" }).catch(() => {});
  await page.waitForSelector('[data-testid="map-label"]', { timeout: 20000 }).catch(() => {});
  if (district) {
    await page.selectOption('[data-testid="area-select"]', district);
    await page.waitForSelector(`[data-testid="panel-map"][data-area="${district}"]`, { timeout: 20000 });
  }
  await sleep(1500); // let the charts finish their animation
  if (fullPage) {
    await page.screenshot({ path: join(dir, name), fullPage: true });
    console.log(join(dir, name));
  } else await shot(page, name);
  if (drawer) {
    const item = page.locator('[data-testid="overdue-item"]').first();
    if (await item.count()) await item.click();
    else await page.locator('[data-testid="ticker-item"][data-incident]:not([data-incident=""])').first().click();
    await page.waitForSelector('[data-testid="incident"]', { timeout: 10000 });
    await sleep(600);
    await shot(page, drawer);
  }
  problems.push(...errors);
  await context.close();
}

await screen("zh", "screen-1920x1080.png", "screen-drawer-1920x1080.png");
await screen("en", "screen-en-1920x1080.png");
await screen("zh", "screen-district-1920x1080.png", null, { district: env.drillDistrict || "150602" });
await screen("zh", "screen-3840x2160.png", null, { width: 3840, height: 2160 });
await screen("zh", "screen-laptop-1366x768-full.png", null, { width: 1366, height: 768, fullPage: true });

if (env.liaison) {
  const { context, page, errors } = await openPage(browser, env.liaison, "workbench");
  await page.waitForSelector('[data-testid="task-table"]', { timeout: 20000 });
  await waitFor(() => page.locator('[data-testid="wb-task"]').count(), { timeout: 10000 }).catch(() => {});
  await sleep(800);
  await shot(page, "workbench-1920x1080.png");
  problems.push(...errors);
  await context.close();
}

{
  // 人员管理: the operators' own page, used at their desks' laptops.
  const { context, page, errors } = await openPage(browser, env.operator, "people", { width: 1366, height: 768 });
  await page.waitForSelector('[data-testid="person-row"]', { timeout: 20000 });
  await sleep(500);
  await shot(page, "people-1366x768.png");
  problems.push(...errors);
  await context.close();
}

if (env.grid) {
  for (const lang of ["zh", "en"]) {
    const { context, page, errors } = await openPage(browser, env.grid, "report", { width: 390, height: 844, lang, mobile: true });
    await page.waitForSelector('[data-testid="report-form"]', { timeout: 20000 });
    const first = page.locator('[data-testid^="group-"]').first();
    await first.click();
    await page.locator('[data-testid^="category-"]').first().click();
    await page.fill('[data-testid="report-title"]', lang === "zh" ? "幸福小区3号楼路灯不亮" : "Street light out at block 3");
    await sleep(800);
    await shot(page, lang === "zh" ? "report-390x844.png" : "report-en-390x844.png");
    if (lang === "zh") {
      await page.screenshot({ path: join(dir, "report-full-390.png"), fullPage: true });
      // Offline: two reports wait as 待发送 (the browser is told it is offline; nothing is sent).
      await context.setOffline(true);
      for (const title of ["幸福小区3号楼路灯不亮", "园林路井盖缺失"]) {
        await page.locator('[data-testid^="group-"]').first().click();
        await page.locator('[data-testid^="category-"]').first().click();
        await page.fill('[data-testid="report-title"]', title);
        await page.click('[data-testid="report-submit"]');
        await page.waitForSelector('[data-testid="report-queued"]');
      }
      await page.locator('[data-testid="outbox"]').scrollIntoViewIfNeeded();
      await sleep(500);
      await shot(page, "report-offline-390x844.png");
      // The two reports are never sent: they go with this browser context's IndexedDB, so the
      // platform keeps only its own data (the next screenshots must not show these).
    }
    // The offline shot's failed loads are the point of it, not problems.
    problems.push(...errors.filter((e) => !/net::ERR_INTERNET_DISCONNECTED|Failed to load resource/.test(e)));
    await context.close();
  }
}
if (env.member) {
  // 党员接单: the member's phone page (their community's open offers, what they hold, their hours).
  const { context, page, errors } = await openPage(browser, env.member, "offers", { width: 390, height: 844, mobile: true });
  await page.waitForSelector('[data-testid="open-offers"]', { timeout: 20000 });
  await page.waitForSelector('[data-testid="my-service-month"][data-hours]:not([data-hours=""])', { timeout: 20000 }).catch(() => {});
  await sleep(500);
  await shot(page, "offers-390x844.png");
  problems.push(...errors);
  await context.close();
}

if (env.leader) {
  // 领导结对联系: the leader's paired areas and their open incidents, at a laptop's size.
  const { context, page, errors } = await openPage(browser, env.leader, "paired", { width: 1366, height: 768 });
  await page.waitForSelector('[data-testid="paired-area"]', { timeout: 20000 });
  await waitFor(() => page.locator('[data-testid="paired-incident"]').count(), { timeout: 10000, message: "paired incidents" }).catch(() => {});
  await sleep(500);
  await shot(page, "paired-1366x768.png");
  problems.push(...errors);
  await context.close();
}

await browser.close();
if (problems.length) {
  console.error("console errors:\n" + problems.join("\n"));
  process.exitCode = 1;
}
