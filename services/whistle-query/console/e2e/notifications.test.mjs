// 消息 (issue 20, item 0): a dispatch rings the liaison's bell while the workbench is open, the list
// says what came and by when to report in, and reading it clears the count. Same environment as
// console.test.mjs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, clients, launch, openPage, waitFor, whistledTask } from "./helpers.mjs";

let browser;
const li = clients(env.liaison);

before(async () => {
  for (const v of ["operator", "liaison", "department", "grid"]) assert.ok(env[v], `${v} is required (see docs/console.md)`);
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("bell: a new dispatch rings and is listed; opening it marks it read", async () => {
  // Start from nothing unread, so the count below is this dispatch's alone.
  await li.cc.markNotificationsRead({ notificationIds: [] });
  const { context, page, errors } = await openPage(browser, env.liaison, "workbench");
  await page.waitForSelector('[data-testid="bell"]', { timeout: 20000 });
  // Count the chimes the page plays.
  await page.evaluate(() => {
    window.__chimes = 0;
    const Real = window.AudioContext;
    window.AudioContext = class extends Real {
      constructor(...a) {
        super(...a);
        window.__chimes += 1;
      }
    };
  });
  assert.equal(await page.locator('[data-testid="bell-count"]').count(), 0, "nothing unread yet");

  const title = `e2e 消息 ${Date.now()}`;
  const { id } = await whistledTask(title);
  const count = page.locator('[data-testid="bell-count"]');
  await waitFor(async () => (await count.count()) > 0 && (await count.innerText()) === "1", { timeout: 25000, message: "the bell's count" });
  assert.ok((await page.evaluate(() => window.__chimes)) >= 1, "a chime played");

  await page.click('[data-testid="bell"]');
  const item = page.locator('[data-testid="bell-item"]').first();
  const text = await item.innerText();
  assert.ok(text.includes(`派单｜${title}`), text);
  assert.match(text, /请于 \d\d-\d\d \d\d:\d\d 前报到/);
  assert.equal(await item.getAttribute("class"), "unread");

  await item.locator("button").click();
  await waitFor(async () => (await count.count()) === 0, { message: "the count cleared" });
  const listed = await li.cc.listNotifications({});
  const mine = listed.notifications.find((n) => n.incidentId === id);
  assert.ok(mine?.readAt, "read on the server too");
  assert.deepEqual(errors, []);
  await context.close();
});
