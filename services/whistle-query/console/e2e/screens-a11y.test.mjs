// Accessibility: axe-core (a devDependency, run inside the page) finds no critical or serious
// violation on any page of the console — sign-in, command screen with the incident drawer open,
// workbench with a dialog open, report form — in Chinese and English.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { env, launch } from "./helpers.mjs";

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
let browser;

before(async () => {
  for (const v of ["operator", "liaison", "grid"]) assert.ok(env[v], `${v} is required (see docs/console.md)`);
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The page (signed in with `token` at `view`, or the sign-in page), ready to be checked. */
async function open(token, view, { width = 1920, height = 1080, lang = "zh" } = {}) {
  // The console's CSP allows no inline script; axe is injected by the test, so the test's context
  // bypasses it (the page's own policy is checked by security.test.mjs).
  const context = await browser.newContext({ viewport: { width, height }, locale: "zh-CN", bypassCSP: true });
  const page = await context.newPage();
  await page.addInitScript((l) => localStorage.setItem("whistle.lang", l), lang);
  await page.goto(token ? `${env.page}/#/${view}?token=${encodeURIComponent(token)}` : `${env.page}/`);
  return { context, page };
}

async function expectAxeClean(page, where) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations
    .filter((v) => v.impact === "critical" || v.impact === "serious")
    .map((v) => `${v.impact} ${v.id}: ${v.help}\n  ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("\n  ")}`);
  assert.deepEqual(bad, [], `${where}:\n${bad.join("\n")}`);
}

for (const lang of ["zh", "en"]) {
  test(`axe-core: no critical or serious violation on any page (${lang})`, async () => {
    const signin = await open(null, "", { lang });
    await signin.page.waitForSelector('[data-testid="signin"]');
    await expectAxeClean(signin.page, "sign-in");
    await signin.context.close();

    const screen = await open(env.operator, "screen", { lang });
    await screen.page.waitForSelector('[data-testid="panel-map"][data-cells]:not([data-cells=""])', { timeout: 20000 });
    await expectAxeClean(screen.page, "command screen");
    const item = screen.page.locator('[data-testid="overdue-item"], [data-testid="ticker-item"][data-incident]:not([data-incident=""])').first();
    if (await item.count()) {
      await item.click();
      await screen.page.waitForSelector('[data-testid="incident"]', { timeout: 10000 });
      await expectAxeClean(screen.page, "incident drawer");
    }
    await screen.context.close();

    const bench = await open(env.liaison, "workbench", { lang });
    await bench.page.waitForSelector('[data-testid="task-table"]', { timeout: 20000 });
    await expectAxeClean(bench.page, "workbench");
    const action = bench.page.locator('[data-testid="wb-resolve"], [data-testid="wb-accept"]').first();
    if (await action.count()) {
      await action.click();
      await bench.page.waitForSelector('[role="dialog"]');
      await expectAxeClean(bench.page, "workbench dialog");
    }
    await bench.context.close();

    const form = await open(env.grid, "report", { width: 390, height: 844, lang });
    await form.page.waitForSelector('[data-testid="report-form"]', { timeout: 20000 });
    await form.page.locator('[data-testid^="group-"]').first().click();
    await form.page.waitForSelector('[data-testid="categories"]');
    await expectAxeClean(form.page, "report form");
    await form.context.close();
  });
}
