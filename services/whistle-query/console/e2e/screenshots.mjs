// Saves screenshots of every view into WHISTLE_SCREENSHOT_DIR (default docs/screenshots):
// screen-1920x1080.png, screen-drawer-1920x1080.png, screen-en-1920x1080.png, workbench-1920x1080.png,
// report-390x844.png, report-en-390x844.png.
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

async function screen(lang, name, drawer) {
  const { context, page, errors } = await openPage(browser, env.operator, "screen", { lang });
  await page.waitForSelector('[data-testid="kpis"][data-area]:not([data-area=""])', { timeout: 20000 });
  await waitFor(() => page.locator('[data-testid="ticker-item"]').count(), { timeout: 30000, message: "ticker entries" }).catch(() => {});
  await waitFor(() => page.locator('[data-testid="streets-row"]').count(), { timeout: 20000, message: "ranking rows" }).catch(() => {});
  await sleep(1500); // let the charts finish their animation
  await shot(page, name);
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

if (env.liaison) {
  const { context, page, errors } = await openPage(browser, env.liaison, "workbench");
  await page.waitForSelector('[data-testid="task-table"]', { timeout: 20000 });
  await waitFor(() => page.locator('[data-testid="wb-task"]').count(), { timeout: 10000 }).catch(() => {});
  await sleep(800);
  await shot(page, "workbench-1920x1080.png");
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
    if (lang === "zh") await page.screenshot({ path: join(dir, "report-full-390.png"), fullPage: true });
    problems.push(...errors);
    await context.close();
  }
}
await browser.close();
if (problems.length) {
  console.error("console errors:\n" + problems.join("\n"));
  process.exitCode = 1;
}
