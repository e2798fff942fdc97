// The monthly assessment report (月度考核通报) from the command screen: the operator picks the month
// and downloads the XLSX workbook and the PDF (docs/report.md); the files are what the query
// service's /reports/monthly made, with the right content type, and the download needs the token.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { env, launch, openPage } from "./helpers.mjs";

const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

let browser;
before(async () => {
  assert.ok(env.operator, "WHISTLE_OPERATOR_TOKEN is required (see docs/console.md)");
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("the command screen downloads the monthly report as XLSX and PDF", async () => {
  const { context, page, errors, foreign } = await openPage(browser, env.operator, "screen");
  try {
    const month = page.locator('[data-testid="monthly-month"]');
    await month.waitFor();
    // The last complete month by default; the operator may pick another.
    assert.match(await month.inputValue(), /^\d{4}-\d{2}$/);
    const now = new Date();
    const current = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
    await month.fill(current);
    for (const [format, type, magic] of [
      ["xlsx", XLSX, "PK\u0003\u0004"],
      ["pdf", "application/pdf", "%PDF-"],
    ]) {
      const [response, download] = await Promise.all([
        page.waitForResponse((r) => r.url().includes("/reports/monthly") && r.url().includes(`format=${format}`)),
        page.waitForEvent("download"),
        page.click(`[data-testid="monthly-${format}"]`),
      ]);
      assert.equal(response.status(), 200, `${format}: ${await response.text().catch(() => "")}`);
      assert.equal(response.headers()["content-type"], type);
      assert.ok(response.url().includes(`month=${current}`), response.url());
      assert.match(download.suggestedFilename(), new RegExp(`^whistle-monthly-\\d{6}-${current}\\.${format}$`));
      const bytes = await readFile(await download.path());
      assert.ok(bytes.length > 1000, `${format}: ${bytes.length} bytes`);
      assert.equal(bytes.subarray(0, magic.length).toString("latin1"), magic, format);
    }
    assert.equal(await page.locator('[data-testid="monthly-error"]').count(), 0);
    assert.deepEqual(errors, []);
    assert.deepEqual(foreign, []);
    // Without the token the service refuses it (the browser logs the 401; checked above already).
    const status = await page.evaluate(async () => (await fetch("/reports/monthly?format=pdf")).status);
    assert.equal(status, 401);
  } finally {
    await context.close();
  }
});
