// The Party-building pages (issue 21, item 6; docs/party.md, docs/leaders.md). 党员接单: two members
// of one community on phone-sized pages (360×640 and 414×896); the city's operator offers a small
// wish; the first claims it, the second — whose list still shows it — is told in words it is
// taken and their list no longer offers it; the first completes it with a note and a photo and,
// once the community confirms, sees the hours and points the service ledger gained. 结对联系: a
// paired leader reads the overdue incidents of their areas first, endorses one (领导督办) in the
// drawer, which reaches the timeline. axe-core finds no critical or serious violation on either
// page. Driven by it::console_party, which sets the WHISTLE_MEMBER_* and WHISTLE_LEADER_* tokens;
// skipped in a run without them.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { env, clients, launch, waitFor, pngOf, cuttableProxy } from "./helpers.mjs";
import { ServiceBoardKind } from "./gen/whistle/v1/command_center_pb.js";

const party = {
  member: process.env.WHISTLE_MEMBER_TOKEN,
  memberId: process.env.WHISTLE_MEMBER_ID,
  second: process.env.WHISTLE_SECOND_MEMBER_TOKEN,
  community: process.env.WHISTLE_MEMBER_COMMUNITY,
  leader: process.env.WHISTLE_LEADER_TOKEN,
  leaderId: process.env.WHISTLE_LEADER_ID,
  overdue: process.env.WHISTLE_OVERDUE_INCIDENT_ID,
  fresh: process.env.WHISTLE_FRESH_INCIDENT_ID,
};
const skip = !party.member && "no WHISTLE_MEMBER_TOKEN: run by it::console_party";
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

let browser;
before(async () => {
  if (skip) return;
  for (const k of ["memberId", "second", "community", "leader", "leaderId", "overdue", "fresh"]) assert.ok(party[k], `${k} is required (see docs/console.md)`);
  assert.ok(env.operator, "operator is required");
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** A page signed in with `token` at `view`, collecting console errors; axe may run in it (the
 * console's CSP allows no inline script: security.test.mjs checks the page's own policy). */
async function open(token, view, { width, height, lang = "zh", mobile = false, base = env.page }) {
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1, isMobile: mobile, hasTouch: mobile, locale: "zh-CN", bypassCSP: true });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  await page.addInitScript((l) => localStorage.setItem("whistle.lang", l), lang);
  await page.goto(`${base}/#/${view}?token=${encodeURIComponent(token)}`);
  return { context, page, errors };
}

async function expectAxeClean(page, where) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations
    .filter((v) => v.impact === "critical" || v.impact === "serious")
    .map((v) => `${v.impact} ${v.id}: ${v.help}\n  ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("\n  ")}`);
  assert.deepEqual(bad, [], `${where}:\n${bad.join("\n")}`);
}

/** Nothing wider than the phone: no sideways scrolling. */
async function fitsTheWidth(page, width) {
  const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(scroll <= width, `the page is ${scroll}px wide on a ${width}px phone`);
}

test("党员接单: one member wins the claim, the other is told, the work is done and confirmed", { skip }, async () => {
  const op = clients(env.operator);
  const title = `帮独居老人代购药品 ${Date.now()}`;
  const offered = await op.dispatch.offerToVolunteers({
    commandId: crypto.randomUUID(),
    body: { case: "offerToVolunteers", value: { communityCode: party.community, title, detail: "王奶奶腿脚不便，需要代购降压药", teamId: "", offerIncidentId: "" } },
  });
  const offerId = offered.offer?.offerId;
  assert.ok(offerId, "the operator's offer");

  const first = await open(party.member, "offers", { width: 360, height: 640, mobile: true });
  const second = await open(party.second, "offers", { width: 414, height: 896, mobile: true });
  for (const m of [first, second]) {
    await m.page.locator(`[data-testid="open-offer"][data-offer="${offerId}"]`).waitFor({ timeout: 20000 });
    // Only the member's page: no other view to open, no notifications bell.
    assert.equal(await m.page.locator('[data-testid="nav"] a').count(), 0);
    assert.equal(await m.page.locator('[data-testid="bell"]').count(), 0);
    // A member's own name is masked on their page too.
    assert.match(await m.page.locator('[data-testid="who"]').textContent(), /党\*\*/);
  }
  const facts = await first.page.locator(`[data-testid="open-offer"][data-offer="${offerId}"] [data-testid="offer-facts"]`).innerText();
  assert.match(facts, /微心愿/);
  await fitsTheWidth(first.page, 360);
  await fitsTheWidth(second.page, 414);

  // The second member's list is held as it is (as on a slow network) while the first claims.
  let release;
  let held = null;
  await second.page.route("**/whistle.v1.CommandCenter/ListOffers", async (route) => {
    if (held) await held;
    // A request the page gave up on meanwhile is gone: nothing to continue.
    await route.continue().catch(() => {});
  });
  held = new Promise((r) => (release = r));

  await first.page.locator(`[data-testid="open-offer"][data-offer="${offerId}"] [data-testid="offer-claim"]`).click();
  await first.page.locator('[data-testid="offers-ok"]').waitFor();
  const mine = first.page.locator(`[data-testid="my-claim"][data-offer="${offerId}"]`);
  await mine.waitFor({ timeout: 15000 });
  assert.equal(await mine.getAttribute("data-status"), "claimed");
  assert.match(await mine.locator('[data-testid="claim-countdown"]').innerText(), /剩余/);
  assert.equal(await first.page.locator(`[data-testid="open-offer"][data-offer="${offerId}"]`).count(), 0);

  // One winner: the second member's claim is refused, said in words, and the list read again.
  const claim = second.page.locator(`[data-testid="open-offer"][data-offer="${offerId}"] [data-testid="offer-claim"]`);
  await claim.click();
  held = null;
  release();
  const lost = second.page.locator('[data-testid="claim-lost"]');
  await lost.waitFor({ timeout: 15000 });
  assert.match(await lost.innerText(), /已被其他党员认领/);
  await waitFor(async () => (await second.page.locator(`[data-testid="open-offer"][data-offer="${offerId}"]`).count()) === 0, { message: "the taken offer gone from the second member's list" });
  assert.equal(await second.page.locator(`[data-testid="my-claim"][data-offer="${offerId}"]`).count(), 0);
  await second.page.unroute("**/whistle.v1.CommandCenter/ListOffers");

  // 完成: a note, the time and a photo; nothing is sent without a note.
  await mine.locator('[data-testid="offer-complete"]').click();
  const dialog = first.page.locator('[data-testid="complete-dialog"]');
  await dialog.waitFor();
  assert.ok(await dialog.locator('[data-testid="complete-submit"]').isDisabled());
  await dialog.locator('[data-testid="complete-note"]').fill("已代购降压药两盒，送到家中");
  await dialog.locator('[data-testid="complete-hours"]').fill("1.5");
  await first.page.setInputFiles('[data-testid="complete-photos-input"]', { name: "work.png", mimeType: "image/png", buffer: await pngOf(1600, 1200, 3) });
  await waitFor(async () => (await dialog.locator('[data-testid="photo-thumb"]').count()) === 1, { message: "the photo's thumbnail" });
  await fitsTheWidth(first.page, 360);
  await dialog.locator('[data-testid="complete-submit"]').click();
  await waitFor(
    async () => {
      const refused = dialog.locator('[data-testid="complete-error"]');
      if (await refused.count()) throw new Error(`completing was refused: ${await refused.innerText()} (${await refused.getAttribute("title")})`);
      return (await dialog.count()) === 0;
    },
    { timeout: 20000, message: "the complete dialog closed" },
  ).catch(async (e) => assert.fail(`${e.message}; the dialog: ${await dialog.innerText().catch(() => "")}; disabled: ${await dialog.locator('[data-testid="complete-submit"]').isDisabled().catch(() => "")}; errors: ${first.errors.join(" | ")}`));
  await waitFor(async () => (await mine.getAttribute("data-status")) === "done", { message: "the claim marked done" });
  assert.match(await mine.locator('[data-testid="my-claim-status"]').innerText(), /待社区确认/);

  // The community confirms (its operator, over the API): the ledger gains the hours and points.
  await op.dispatch.confirmOffer({ commandId: crypto.randomUUID(), body: { case: "confirmOffer", value: { offerId, minutes: 0, note: "已回访，老人满意" } } });
  const me = clients(party.member).cc;
  const month = new Date(Date.now() + 8 * 3600_000).getUTCMonth() + 1;
  const [yearRow, monthRow] = await Promise.all(
    [0, month].map(async (m) => (await me.getServiceBoard({ kind: ServiceBoardKind.MEMBERS, month: m, pageSize: 200 })).rows.find((r) => r.key === party.memberId)),
  );
  assert.ok(yearRow && monthRow, "the member on this year's and this month's boards");
  assert.equal(yearRow.hours, 1.5);
  await first.page.locator('[data-testid="offers-refresh"]').click();
  await waitFor(async () => (await mine.getAttribute("data-status")) === "confirmed", { message: "the claim confirmed" });
  assert.match(await mine.locator('[data-testid="my-claim-credit"]').innerText(), new RegExp(`1\\.5 小时，${yearRow.points} 积分`));
  for (const [key, row] of [
    ["month", monthRow],
    ["year", yearRow],
  ]) {
    const cell = first.page.locator(`[data-testid="my-service-${key}"]`);
    await waitFor(async () => (await cell.getAttribute("data-hours")) === "1.50", { message: `this ${key}'s hours` });
    assert.equal(await cell.getAttribute("data-points"), String(row.points));
  }

  assert.deepEqual(first.errors, []);
  assert.deepEqual(second.errors, []);
  await first.context.close();
  await second.context.close();
});

test("党员接单: a claim sent with the network down says so, goes through once on retry, and is given back", { skip }, async () => {
  const op = clients(env.operator);
  const title = `帮忙换灯泡 ${Date.now()}`;
  const offered = await op.dispatch.offerToVolunteers({
    commandId: crypto.randomUUID(),
    body: { case: "offerToVolunteers", value: { communityCode: party.community, title, detail: "", teamId: "", offerIncidentId: "" } },
  });
  const offerId = offered.offer.offerId;
  const proxy = await cuttableProxy(env.api);
  const { context, page, errors } = await open(party.member, "offers", { width: 360, height: 640, mobile: true, base: proxy.url });
  const claims = [];
  page.on("requestfinished", (r) => r.url().endsWith("/whistle.v1.Dispatch/ClaimOffer") && claims.push(r.url()));
  const row = page.locator(`[data-testid="open-offer"][data-offer="${offerId}"]`);
  await row.waitFor({ timeout: 20000 });

  proxy.cut();
  await row.locator('[data-testid="offer-claim"]').click();
  const problem = row.locator('[data-testid="claim-error"]');
  await problem.waitFor({ timeout: 15000 });
  assert.equal(await problem.getAttribute("data-kind"), "network");
  assert.match(await problem.innerText(), /网络/);
  assert.equal(await row.locator('[data-testid="offer-claim"]').innerText(), "重试");

  proxy.restore();
  await row.locator('[data-testid="offer-claim"]').click();
  const mine = page.locator(`[data-testid="my-claim"][data-offer="${offerId}"]`);
  await mine.waitFor({ timeout: 15000 });
  assert.equal(await mine.getAttribute("data-status"), "claimed");
  assert.equal(claims.length, 1, "one claim reached the server");

  // 放弃: given back with a reason, the offer is open to the community again.
  await mine.locator('[data-testid="offer-release"]').click();
  const dialog = page.locator('[data-testid="release-dialog"]');
  await dialog.waitFor();
  await dialog.locator('[data-testid="release-note"]').fill("临时有事，无法前往");
  await dialog.locator('[data-testid="release-submit"]').click();
  await dialog.waitFor({ state: "detached", timeout: 15000 });
  await row.waitFor({ timeout: 15000 });
  assert.equal(await page.locator(`[data-testid="my-claim"][data-offer="${offerId}"]`).count(), 0);
  const listed = await clients(party.member).cc.listOffers({});
  assert.equal(listed.offers.find((o) => o.offerId === offerId)?.status, "open");
  // The only errors are the browser's own lines for the requests the cut connection failed.
  assert.deepEqual(errors.filter((e) => !/Failed to load resource|net::ERR_/.test(e)), []);
  await context.close();
  proxy.close();
});

test("结对联系: the leader reads overdue incidents first and endorses one", { skip }, async () => {
  const { context, page, errors } = await open(party.leader, "paired", { width: 1366, height: 768 });
  const rows = page.locator('[data-testid="paired-incident"]');
  await page.locator(`[data-testid="paired-incident"][data-incident="${party.fresh}"]`).waitFor({ timeout: 20000 });
  const order = await rows.evaluateAll((els) => els.map((e) => ({ id: e.dataset.incident, overdue: e.dataset.overdue === "1" })));
  const late = order.findIndex((r) => r.id === party.overdue);
  assert.ok(late >= 0 && order[late].overdue, `the overdue incident listed as overdue: ${JSON.stringify(order)}`);
  assert.ok(!order.find((r) => r.id === party.fresh).overdue);
  // Overdue first: no overdue row after one that is not.
  assert.ok(order.findIndex((r) => !r.overdue) > order.findLastIndex((r) => r.overdue), JSON.stringify(order));
  const area = page.locator(`[data-testid="paired-area"][data-area="${party.community}"]`);
  if (await area.count()) assert.ok(Number(await area.getAttribute("data-overdue")) >= 1);
  assert.ok(Number(await page.locator('[data-testid="paired-area"]').first().getAttribute("data-open")) >= 0);
  // The notifications bell: the overdue incident was told to its paired leader.
  await page.locator('[data-testid="bell"]').waitFor();
  await page.locator('[data-testid="bell-count"]').waitFor({ timeout: 30000 });

  await page.locator(`[data-testid="paired-incident"][data-incident="${party.overdue}"] [data-testid="paired-open"]`).click();
  const drawer = page.locator('[data-testid="incident"]');
  await drawer.waitFor({ timeout: 15000 });
  assert.equal(await drawer.getAttribute("data-incident"), party.overdue);
  await expectAxeClean(page, "the leader's view with the drawer open");
  await drawer.locator('[data-testid="endorse-open"]').click();
  const dialog = page.locator('[data-testid="endorse-dialog"]');
  await dialog.waitFor();
  assert.ok(await dialog.locator('[data-testid="endorse-submit"]').isDisabled());
  await dialog.locator('[data-testid="endorse-note"]').fill("请街道今日内处置，结果报我");
  await dialog.locator('[data-testid="endorse-submit"]').click();
  await dialog.waitFor({ state: "detached", timeout: 20000 });
  await page.locator('[data-testid="incident"] [data-testid="incident-endorsed"]').waitFor({ timeout: 15000 });
  const timeline = page.locator('[data-testid="incident"] [data-testid="timeline"] li[data-kind="incident.endorsed"]');
  await timeline.waitFor();
  assert.match(await timeline.innerText(), /领导督办[\s\S]*请街道今日内处置，结果报我/);

  // The API agrees: on the incident's timeline, by the leader.
  const detail = await clients(env.operator).cc.getIncident({ incidentId: party.overdue });
  const endorsed = detail.timeline.filter((e) => e.kind === "incident.endorsed");
  assert.equal(endorsed.length, 1);
  assert.equal(endorsed[0].actorId, party.leaderId);
  assert.deepEqual(errors, []);
  await context.close();
});

for (const lang of ["zh", "en"]) {
  test(`axe-core: the member's page and the leader's view (${lang})`, { skip }, async () => {
    const member = await open(party.member, "offers", { width: 360, height: 640, mobile: true, lang });
    await member.page.locator('[data-testid="my-claim"]').first().waitFor({ timeout: 20000 });
    await expectAxeClean(member.page, `the member's page (${lang})`);
    await member.context.close();
    const leader = await open(party.leader, "paired", { width: 1366, height: 768, lang });
    await leader.page.locator('[data-testid="paired-incident"]').first().waitFor({ timeout: 20000 });
    await expectAxeClean(leader.page, `the leader's view (${lang})`);
    await leader.context.close();
  });
}
