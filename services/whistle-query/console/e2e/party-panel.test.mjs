// 党建引领 on the command screen (docs/party.md, "The screen"): the panel's figures are what the
// test stack seeded (the district's registered members and teams, the day's claims, the month's
// service, the open small wishes, the endorsed incident) and what GetPartyPanel says; a member's
// claim moves the panel live; the overdue list and the map mark the endorsed incident 领导督办;
// axe-core finds no critical or serious violation on the screen with the panel, in both languages.
// Run by it::console_party_panel, which seeds the stack and passes it in WHISTLE_PARTY_*;
// skipped in a run without them (the console's whole e2e/ run).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { env, clients, launch, openPage, waitFor } from "./helpers.mjs";

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const party = {
  expect: JSON.parse(process.env.WHISTLE_PARTY_EXPECT || "null"),
  memberToken: process.env.WHISTLE_PARTY_MEMBER_TOKEN,
  offer: process.env.WHISTLE_PARTY_OFFER,
  endorsed: process.env.WHISTLE_PARTY_ENDORSED,
  endorsedGrid: process.env.WHISTLE_PARTY_ENDORSED_GRID,
};
const skip = !party.expect && "no WHISTLE_PARTY_EXPECT: run by it::console_party_panel";
let browser;

before(async () => {
  if (skip) return;
  for (const [k, v] of Object.entries({ districtOperator: env.districtOperator, ...party })) assert.ok(v, `${k} is required (it::console_party_panel passes it)`);
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The panel's figures as the page shows them (data-value of each figure). */
async function figures(page) {
  const value = async (id) => Number(await page.getAttribute(`[data-testid="${id}-value"]`, "data-value"));
  return {
    members: await value("party-members"),
    teams: await value("party-teams"),
    claims: await value("party-claims"),
    minutes: await value("party-hours"),
    wishes: await value("party-wishes"),
    endorsed: await value("party-endorsed"),
  };
}

test("the Party panel shows what was seeded, moves on a member's claim, and marks the endorsed incident", { skip }, async () => {
  const { context, page, errors } = await openPage(browser, env.districtOperator, "screen", { width: 1920, height: 1080 });
  await page.waitForSelector('[data-testid="panel-party"][data-area="150602"]', { timeout: 20000 });
  const cc = clients(env.districtOperator).cc;
  const served = await cc.getPartyPanel({});
  const shown = await figures(page);
  const want = party.expect;
  assert.deepEqual(shown, {
    members: want.members,
    teams: want.teams,
    claims: want.claims,
    minutes: want.minutes,
    wishes: want.wishes,
    endorsed: 1,
  });
  assert.deepEqual(shown, {
    members: served.total.members,
    teams: served.total.teams,
    claims: served.claimsToday,
    minutes: Number(served.serviceMinutesMonth),
    wishes: served.openWishes,
    endorsed: served.endorsedOpen,
  });
  // Hours are shown as hours.
  const hours = await page.textContent('[data-testid="party-hours-value"]');
  assert.equal(Number(hours), want.minutes / 60);
  // The district's streets, each with its members and teams, summing to the district's.
  const children = await page.$$eval('[data-testid="party-child"]', (rows) => rows.map((r) => [r.dataset.code, Number(r.dataset.members), Number(r.dataset.teams)]));
  assert.equal(children.length, served.children.length);
  assert.deepEqual(children, served.children.map((c) => [c.areaCode, c.members, c.teams]));
  assert.equal(children.reduce((n, c) => n + c[1], 0), want.members);
  assert.match(await page.textContent('[data-testid="party-newest-wish"]'), new RegExp(want.newestWish));

  // 领导督办 on the overdue list and on the map.
  const item = page.locator(`[data-testid="overdue-item"][data-incident="${party.endorsed}"]`);
  await waitFor(() => item.getAttribute("data-endorsed").then((v) => v === "1"), { timeout: 20000, message: "the endorsed mark on the overdue list" });
  assert.equal(await item.locator('[data-testid="endorsed-mark"]').textContent(), "领导督办");
  await waitFor(() => page.getAttribute('[data-testid="panel-map"]', "data-marked").then((v) => (v ?? "").split(" ").includes(`${party.endorsedGrid}:e`)), {
    timeout: 20000,
    message: "the endorsed incident pinned on the map",
  });

  // A member claims the open wish on their phone's door: the panel moves without a reload.
  const member = clients(party.memberToken).dispatch;
  const ok = await member.claimOffer({ commandId: crypto.randomUUID(), incidentId: "", expectedVersion: 0n, body: { case: "claimOffer", value: { offerId: party.offer } } });
  assert.equal(ok.offer?.status, "claimed");
  await waitFor(() => figures(page).then((f) => f.claims === want.claims + 1), { timeout: 10000, message: "the day's claims counting the new claim" });
  assert.deepEqual(errors, []);
  await context.close();
});

for (const lang of ["zh", "en"]) {
  test(`axe-core: the screen with the Party panel has no critical or serious violation (${lang})`, { skip }, async () => {
    const context = await browser.newContext({ viewport: { width: 1920, height: 1080 }, locale: "zh-CN", bypassCSP: true });
    const page = await context.newPage();
    await page.addInitScript((l) => localStorage.setItem("whistle.lang", l), lang);
    await page.goto(`${env.page}/#/screen?token=${encodeURIComponent(env.districtOperator)}`);
    await page.waitForSelector('[data-testid="panel-party"][data-area="150602"]', { timeout: 20000 });
    await page.waitForSelector('[data-testid="panel-map"][data-cells]:not([data-cells=""])', { timeout: 20000 });
    const title = await page.textContent('[data-testid="panel-party"] .panel-title');
    assert.equal(title, lang === "zh" ? "党建引领" : "Party-led service");
    await page.evaluate(axeSource);
    const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
    const bad = result.violations
      .filter((v) => v.impact === "critical" || v.impact === "serious")
      .map((v) => `${v.impact} ${v.id}: ${v.help}\n  ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("\n  ")}`);
    assert.deepEqual(bad, [], bad.join("\n"));
    await context.close();
  });
}
