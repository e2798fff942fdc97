// 每月一题 / 主动治理 (issue 24, item 3): only operators see the view; the district's operator reads
// the month's topic with its evidence, adopts it in the dialog (lead, assistant, a milestone, the
// deadline), sees the case open with its 主动治理 badge and milestones, marks the milestone done,
// and the server agrees. Driven by it::console_topics, which makes the history and sets
// WHISTLE_TOPIC_* (docs/console.md); skipped in a run without them.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, clients, launch, openPage, waitFor } from "./helpers.mjs";
import { Origin } from "./gen/whistle/v1/common_pb.js";

const topic = {
  key: process.env.WHISTLE_TOPIC_KEY,
  lead: process.env.WHISTLE_TOPIC_LEAD,
  assist: process.env.WHISTLE_TOPIC_ASSIST,
};
const skip = !topic.key && "no WHISTLE_TOPIC_KEY: run by it::console_topics";

let browser;
before(async () => {
  if (skip) return;
  for (const v of ["districtOperator", "liaison"]) assert.ok(env[v], `${v} is required (see docs/console.md)`);
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("topics: only operators see the view", { skip }, async () => {
  for (const [token, sees] of [
    [env.districtOperator, true],
    [env.liaison, false],
  ]) {
    const { context, page, errors } = await openPage(browser, token, "topics");
    await page.waitForSelector('[data-testid="nav"]', { state: "attached", timeout: 20000 });
    assert.equal(await page.locator('[data-testid="nav-topics"]').count(), sees ? 1 : 0);
    assert.equal(await page.locator('[data-testid="topics"]').count(), sees ? 1 : 0);
    assert.deepEqual(errors, []);
    await context.close();
  }
});

test("topics: an operator adopts the month's topic and marks its milestone done", { skip }, async () => {
  const { context, page, errors, foreign } = await openPage(browser, env.districtOperator, "topics", { width: 1366, height: 768 });
  const row = page.locator(`[data-testid="topic"][data-key="${topic.key}"]`);
  await row.waitFor({ timeout: 20000 });
  // The evidence: the group, the sentence, the months.
  assert.equal(await row.locator('[data-testid="topic-group"]').innerText(), "物业管理");
  assert.match(await row.locator('[data-testid="topic-summary"]').innerText(), /常发/);
  assert.match(await row.locator('[data-testid="topic-months"]').innerText(), /近12个月逐月上报/);
  assert.equal(await row.getAttribute("data-adopted"), "");

  await row.locator('[data-testid="topic-adopt"]').click();
  const dialog = page.locator('[data-testid="adopt-dialog"]');
  await dialog.waitFor();
  // Nothing is sent without a lead department.
  assert.ok(await dialog.locator('[data-testid="adopt-submit"]').isDisabled());
  await waitFor(() => dialog.locator(`[data-testid="adopt-lead"] option[value="${topic.lead}"]`).count(), { message: "the district's departments" });
  await dialog.locator('[data-testid="adopt-lead"]').selectOption(topic.lead);
  await dialog.locator(`[data-testid="adopt-assist"][value="${topic.assist}"]`).check();
  await dialog.locator('[data-testid="milestone-title"]').first().fill("排查物业服务问题");
  // A milestone after the deadline is refused in the dialog, in words.
  const deadline = await dialog.locator('[data-testid="adopt-deadline"]').inputValue();
  await dialog.locator('[data-testid="milestone-due"]').first().fill("2099-01-01");
  await dialog.locator('[data-testid="adopt-milestone-hint"]').waitFor();
  assert.ok(await dialog.locator('[data-testid="adopt-submit"]').isDisabled());
  const due = new Date(Date.now() + 7 * 86400000);
  const dueText = `${due.getFullYear()}-${String(due.getMonth() + 1).padStart(2, "0")}-${String(due.getDate()).padStart(2, "0")}`;
  await dialog.locator('[data-testid="milestone-due"]').first().fill(dueText);
  assert.ok(dueText < deadline, `${dueText} before ${deadline}`);
  await dialog.locator('[data-testid="adopt-note"]').fill("本月主动治理");
  await dialog.locator('[data-testid="adopt-submit"]').click();

  // The case opens in the drawer with its badge and milestone; the topic names its case.
  const drawer = page.locator('[data-testid="incident"]');
  await drawer.waitFor({ timeout: 20000 });
  await drawer.locator('[data-testid="incident-proactive"]').waitFor();
  assert.equal(await drawer.locator('[data-testid="incident-proactive"]').innerText(), "主动治理");
  const incidentId = await drawer.getAttribute("data-incident");
  const milestone = drawer.locator('[data-testid="milestone"]');
  assert.equal(await milestone.count(), 1);
  assert.equal(await milestone.getAttribute("data-done"), "");
  assert.match(await drawer.locator('[data-testid="proactive-change"]').innerText(), /立项前月均/);
  await waitFor(async () => (await row.getAttribute("data-adopted")) === incidentId, { message: "the topic naming its case" });

  // The server agrees: a proactive case with the lead and the assistant, listed by origin.
  const op = clients(env.districtOperator);
  const detail = await op.cc.getIncident({ incidentId });
  assert.equal(detail.incident.origin, Origin.PROACTIVE);
  assert.equal(detail.incident.topicKey, topic.key);
  assert.deepEqual(
    detail.tasks.map((x) => x.state.departmentCode),
    [topic.lead, topic.assist],
  );
  const listed = await op.cc.listIncidents({ origins: [Origin.PROACTIVE] });
  assert.deepEqual(listed.incidents.map((i) => i.incidentId), [incidentId]);

  // The milestone marked done from the drawer.
  await milestone.locator('[data-testid="milestone-complete"]').click();
  await waitFor(async () => (await milestone.getAttribute("data-done")) === "1", { message: "the milestone done" });
  const after = await op.cc.getIncident({ incidentId });
  assert.ok(after.proactive.milestones[0].doneAt);
  assert.ok(after.timeline.some((e) => e.kind === "incident.milestone_done"));

  assert.deepEqual(errors, []);
  assert.deepEqual(foreign, []);
  await context.close();
});
