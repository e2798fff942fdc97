// 主办/协办 and 挂账 in the console (issue 20): an assisting department submits its part in the
// workbench while the lead's 办结 waits and says why; the dispatcher releases an assistant from the
// incident drawer; a department proposes a case for the long-term ledger, the district's operator
// enters it from the drawer, the screen's 挂账 figure counts it and lists it, and the review returns
// it to handling. What users see is checked against what the server recorded. Same environment as
// console.test.mjs, plus WHISTLE_ASSIST_LIAISON_TOKEN, WHISTLE_ASSIST_DEPARTMENT_CODE and
// WHISTLE_DISTRICT_OPERATOR_TOKEN.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, clients, launch, openPage, waitFor, whistledTask } from "./helpers.mjs";
import { IncidentStatus, LedgerReason, Level, TaskStatus } from "./gen/whistle/v1/common_pb.js";

let browser;
const op = clients(env.operator);
const li = clients(env.liaison);
const uuid = () => crypto.randomUUID();

before(async () => {
  for (const v of ["operator", "liaison", "department", "grid", "gridCode", "assistLiaison", "assistDepartment", "districtOperator"])
    assert.ok(env[v], `${v} is required (see docs/console.md)`);
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** What a person must never read: codes, ids, versions (as in workbench.test.mjs). */
const RAW = [
  /\b(ABORTED|FAILED_PRECONDITION|INVALID_ARGUMENT|PERMISSION_DENIED|NOT_FOUND|UNAVAILABLE|UNKNOWN|UNAUTHENTICATED|RESOURCE_EXHAUSTED|INTERNAL)\b/,
  /\bversion \d+|版本 ?\d+/i,
  /\b(li|gw|op|hd)-\d{6}/,
  /\b\d{6}-[a-z_]+\b/,
  /\b[a-z]+_[a-z_]+\b/,
];
async function noRawCodes(page, where) {
  const text = await page.evaluate(() => document.body.innerText);
  for (const re of RAW) assert.ok(!re.test(text), `${where}: ${re} visible in:\n${text.match(new RegExp(`.{0,60}${re.source}.{0,60}`, re.flags))?.[0]}`);
}

const accept = (who, id, taskId) => who.dispatch.accept({ commandId: uuid(), incidentId: id, expectedVersion: 0n, body: { case: "accept", value: { taskId, note: "" } } });
const taskOf = (detail, taskId) => detail.tasks.find((x) => String(x.state.taskId) === taskId);
const row = (page, id) => page.locator(`[data-testid="wb-task"][data-incident="${id}"]`);
/** A `datetime-local` value for `ms` in this machine's time zone (the browser's). */
const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 16);

async function openBench(token) {
  const s = await openPage(browser, token, "workbench");
  await s.page.waitForSelector('[data-testid="task-table"]', { timeout: 20000 });
  return s;
}

/** The command screen with `id`'s drawer open (from the ticker, after a remark on it). */
async function openDrawer(token, id) {
  const s = await openPage(browser, token, "screen");
  await s.page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 20000 });
  await clients(token).dispatch.comment({ commandId: uuid(), incidentId: id, expectedVersion: 0n, body: { case: "comment", value: { text: "e2e 查看" } } });
  const item = s.page.locator(`[data-testid="ticker-item"][data-incident="${id}"]`).first();
  await item.waitFor({ timeout: 10000 });
  await item.click();
  await s.page.waitForSelector(`[data-testid="incident"][data-incident="${id}"]`, { timeout: 10000 });
  return s;
}

test("协办: the assistant submits its part in the workbench; the lead's 办结 waits for it and then resolves", async () => {
  const al = clients(env.assistLiaison);
  const a = await whistledTask(`e2e 协办 ${Date.now()}`, { assisting: [env.assistDepartment] });
  const [part] = a.assists;
  await accept(li, a.id, a.taskId);
  await accept(al, a.id, part);
  const assistName = (await al.cc.listTasks({})).departmentName;

  // The lead: 主办, its 办结 unavailable while the part is owed, saying who it waits for.
  const lead = await openBench(env.liaison);
  const leadRow = row(lead.page, a.id);
  await leadRow.waitFor({ timeout: 20000 });
  assert.equal((await leadRow.locator('[data-testid="wb-role"]').innerText()).trim(), "主办");
  const waiting = leadRow.locator('[data-testid="wb-waiting-assist"]');
  await waiting.waitFor({ timeout: 15000 });
  assert.equal((await waiting.innerText()).replace(/\s+/g, ""), "等待协办单位（已交0/1）");
  const resolve = leadRow.locator('[data-testid="wb-resolve"]');
  assert.ok(await resolve.isDisabled(), "办结 waits for the part");
  assert.match(await resolve.getAttribute("title"), new RegExp(assistName));
  assert.equal(await leadRow.locator('[data-testid="wb-submit_assist"]').count(), 0);
  // The server agrees: it offers 办结 (the verb) but refuses it while the part is owed.
  const refused = await li.dispatch
    .resolve({ commandId: uuid(), incidentId: a.id, expectedVersion: 0n, body: { case: "resolve", value: { taskId: a.taskId, note: "e2e", photoIds: [] } } })
    .then(() => null, (e) => e);
  assert.ok(refused, "dispatch refuses the lead's 办结 while a part is owed");

  // The assistant: 协办, its part's deadline, 提交协办意见 (no 办结, no 申请延期).
  const helper = await openBench(env.assistLiaison);
  const partRow = row(helper.page, a.id);
  await partRow.waitFor({ timeout: 20000 });
  assert.equal((await partRow.locator('[data-testid="wb-role"]').innerText()).trim(), "协办");
  assert.match((await partRow.locator('[data-testid="wb-countdown"]').innerText()).trim(), /^协办意见 剩余 \d+小时\d{2}分$/);
  assert.equal((await partRow.locator('[data-testid="wb-part-due"]').innerText()).trim(), "协办时限");
  assert.equal(await partRow.locator('[data-testid="wb-resolve"]').count(), 0);
  assert.equal(await partRow.locator('[data-testid="wb-request_extension"]').count(), 0);
  await partRow.locator('[data-testid="wb-submit_assist"]').click();
  const dialog = helper.page.locator('[data-testid="submit_assist-dialog"]');
  await dialog.waitFor();
  assert.ok(await dialog.locator('[data-testid="dialog-submit"]').isDisabled(), "a part needs its note");
  await dialog.locator('[data-testid="dialog-note"]').fill("已核实信访人诉求，建议由街道协调解决");
  await dialog.locator('[data-testid="dialog-submit"]').click();
  const ok = helper.page.locator('[data-testid="action-ok"]');
  await ok.waitFor({ timeout: 10000 });
  assert.match(await ok.innerText(), /已提交协办意见/);
  let detail = await op.cc.getIncident({ incidentId: a.id });
  assert.equal(taskOf(detail, part).state.status, TaskStatus.RESOLVED);
  assert.ok(detail.timeline.some((e) => e.kind === "task.assist_submitted" && e.note === "已核实信访人诉求，建议由街道协调解决"));
  await noRawCodes(helper.page, "the assistant's workbench");
  assert.deepEqual(helper.errors, []);
  await helper.context.close();

  // The lead's page follows: 办结 is available and resolves the incident.
  await waitFor(async () => !(await resolve.isDisabled()) && (await leadRow.locator('[data-testid="wb-waiting-assist"]').count()) === 0, { timeout: 20000, message: "办结 available once the part is in" });
  await resolve.click();
  const done = lead.page.locator('[data-testid="resolve-dialog"]');
  await done.waitFor();
  await done.locator('[data-testid="dialog-note"]').fill("已协调解决");
  await done.locator('[data-testid="dialog-submit"]').click();
  await lead.page.locator('[data-testid="action-ok"]').waitFor({ timeout: 10000 });
  assert.match(await lead.page.locator('[data-testid="action-ok"]').innerText(), /已办结/);
  detail = await op.cc.getIncident({ incidentId: a.id });
  assert.equal(taskOf(detail, a.taskId).state.status, TaskStatus.RESOLVED);
  assert.equal(detail.incident.status, IncidentStatus.RESOLVED);
  await noRawCodes(lead.page, "the lead's workbench");
  assert.deepEqual(lead.errors, []);
  await lead.context.close();
});

test("解除协办: an operator releases an assistant in the incident drawer; the lead no longer waits", async () => {
  const a = await whistledTask(`e2e 解除协办 ${Date.now()}`, { assisting: [env.assistDepartment] });
  const [part] = a.assists;
  await accept(li, a.id, a.taskId);
  const { context, page, errors } = await openDrawer(env.operator, a.id);
  const leadRow = page.locator(`[data-testid="task-row"][data-task="${a.taskId}"]`);
  const partRow = page.locator(`[data-testid="task-row"][data-task="${part}"]`);
  assert.equal((await leadRow.locator('[data-testid="task-role"]').innerText()).trim(), "主办");
  assert.equal((await partRow.locator('[data-testid="task-role"]').innerText()).trim(), "协办");
  assert.equal((await partRow.locator('[data-testid="task-part"]').innerText()).trim(), "协办意见待提交");
  assert.equal(await leadRow.locator('[data-testid="release-assist"]').count(), 0, "a lead is never released");
  await partRow.locator('[data-testid="release-assist"]').click();
  const dialog = page.locator('[data-testid="release-assist-dialog"]');
  await dialog.waitFor();
  assert.ok(await dialog.locator('[data-testid="dialog-submit"]').isDisabled(), "a release needs its reason");
  await dialog.locator('[data-testid="dialog-note"]').fill("经核实无需该部门协办");
  await dialog.locator('[data-testid="dialog-submit"]').click();
  const ok = page.locator('[data-testid="action-ok"]');
  await ok.waitFor({ timeout: 10000 });
  assert.match(await ok.innerText(), /已解除协办/);
  const detail = await op.cc.getIncident({ incidentId: a.id });
  assert.equal(taskOf(detail, part).state.status, TaskStatus.RELEASED);
  assert.ok(detail.timeline.some((e) => e.kind === "task.assist_released" && e.note === "经核实无需该部门协办"));
  await waitFor(async () => (await partRow.locator('[data-testid="task-part"]').innerText()).trim() === "免于协办", { message: "the part shown released" });
  assert.equal(await partRow.locator('[data-testid="release-assist"]').count(), 0);
  await noRawCodes(page, "the drawer after a release");
  assert.deepEqual(errors, []);
  await context.close();

  // The lead's 办结 no longer waits.
  const lead = await openBench(env.liaison);
  const resolve = row(lead.page, a.id).locator('[data-testid="wb-resolve"]');
  await resolve.waitFor({ timeout: 20000 });
  await waitFor(async () => !(await resolve.isDisabled()), { message: "办结 available" });
  assert.equal(await row(lead.page, a.id).locator('[data-testid="wb-waiting-assist"]').count(), 0);
  assert.deepEqual(lead.errors, []);
  await lead.context.close();
});

test("挂账: a department proposes, the district's operator enters it, the screen's figure counts it, the review returns it", async () => {
  const district = env.gridCode.slice(0, 6);
  const dop = clients(env.districtOperator);
  const a = await whistledTask(`e2e 挂账 ${Date.now()}`);
  await accept(li, a.id, a.taskId);
  const dueBefore = Number((await op.cc.getIncident({ incidentId: a.id })).incident.dueAt.seconds);
  const departmentName = (await li.cc.listTasks({})).departmentName;

  // The department proposes it from the workbench: a reason, a note, a review date.
  const bench = await openBench(env.liaison);
  const button = row(bench.page, a.id).locator('[data-testid="wb-propose_ledger"]');
  await button.waitFor({ timeout: 20000 });
  await button.click();
  const ask = bench.page.locator('[data-testid="propose_ledger-dialog"]');
  await ask.waitFor();
  const submit = ask.locator('[data-testid="dialog-submit"]');
  assert.ok(await submit.isDisabled());
  const reasons = await ask.locator('[data-testid="return-reason"] option').allInnerTexts();
  assert.deepEqual(reasons, ["规划", "资金", "法律", "其他"]);
  await ask.locator('[data-testid="return-reason"]').selectOption(String(LedgerReason.FUNDING));
  await ask.locator('[data-testid="dialog-note"]').fill("管网改造需列入明年财政预算");
  assert.ok(await submit.isDisabled(), "a proposal needs its review date");
  const review = local(Date.now() + 30 * 86400_000);
  await ask.locator('[data-testid="dialog-until"]').fill(review);
  await submit.click();
  await bench.page.locator('[data-testid="action-ok"]').waitFor({ timeout: 10000 });
  assert.match(await bench.page.locator('[data-testid="action-ok"]').innerText(), /已申请挂账/);
  let detail = await op.cc.getIncident({ incidentId: a.id });
  assert.ok(detail.ledger && !detail.ledger.entered, "proposed, not entered");
  assert.equal(detail.ledger.reason, LedgerReason.FUNDING);
  assert.equal(detail.ledger.responsible, env.department);
  assert.equal(detail.ledger.approver, Level.DISTRICT);
  assert.equal(Number(detail.ledger.reviewAt.seconds) * 1000, new Date(review).getTime());
  // Proposed once: the row says it waits and offers it no more.
  await row(bench.page, a.id).locator('[data-testid="wb-ledger-pending"]').waitFor({ timeout: 15000 });
  await row(bench.page, a.id).locator('[data-testid="wb-propose_ledger"]').waitFor({ state: "detached", timeout: 15000 });
  // The department reads the proposal in its detail but does not decide it.
  await row(bench.page, a.id).locator('[data-testid="wb-open"]').click();
  await bench.page.locator('[data-testid="ledger"]').waitFor({ timeout: 10000 });
  assert.equal(await bench.page.locator('[data-testid="ledger-approve"]').count(), 0);
  await noRawCodes(bench.page, "the workbench after a proposal");
  assert.deepEqual(bench.errors, []);
  await bench.context.close();

  // The district's screen: the figure before, the proposal in the drawer, 同意挂账.
  const ledgerCount = async () => Number((await dop.cc.getOverview({ areaCode: district })).ledger?.count ?? 0);
  const before = await ledgerCount();
  const { context, page, errors } = await openDrawer(env.districtOperator, a.id);
  const figure = page.locator('[data-testid="kpi-ledger-value"]');
  const shown = async () => Number(await figure.getAttribute("data-value"));
  await waitFor(async () => (await shown()) === (await ledgerCount()), { message: "the 挂账 figure equals GetOverview" });
  const note = page.locator('[data-testid="ledger"]');
  assert.equal(await note.getAttribute("data-entered"), "");
  const proposalText = new RegExp(`^挂账申请：资金，责任单位 ${departmentName}，复核日期 .*，旗区审批$`);
  await waitFor(async () => proposalText.test(await note.locator('[data-testid="ledger-text"]').innerText()), { message: "the proposal in words" });
  assert.match(await note.locator('[data-testid="ledger-by"]').innerText(), /申请$/);
  await noRawCodes(page, "the drawer with a ledger proposal");
  await page.locator('[data-testid="ledger-approve"]').click();
  const decide = page.locator('[data-testid="ledger-dialog"]');
  await decide.waitFor();
  await decide.locator('[data-testid="dialog-submit"]').click();
  await page.locator('[data-testid="action-ok"]').waitFor({ timeout: 10000 });
  assert.match(await page.locator('[data-testid="action-ok"]').innerText(), /已同意挂账/);
  detail = await op.cc.getIncident({ incidentId: a.id });
  assert.ok(detail.ledger?.entered && detail.incident.ledgered && !detail.incident.overdue);
  await page.locator('[data-testid="incident-ledgered"]').waitFor({ timeout: 10000 });
  await page.locator('[data-testid="ledger"][data-entered="1"]').waitFor({ timeout: 10000 });
  assert.equal(await page.locator('[data-testid="incident-countdown"]').count(), 0, "a ledger case's deadline stops");

  // The figure counts it, with its age.
  await waitFor(async () => (await shown()) === before + 1 && (await ledgerCount()) === before + 1, { timeout: 15000, message: "the 挂账 figure up by one" });
  assert.match((await page.locator('[data-testid="kpi-ledger-age"]').innerText()).replace(/\s+/g, " "), /最久 \d+(分钟|小时|天) 中位 \d+(分钟|小时|天)/);
  // The figure opens the area's ledger; the case opens from it.
  await page.keyboard.press("Escape");
  await page.locator('[data-testid="drawer"]').waitFor({ state: "detached" });
  await page.locator('[data-testid="kpi-ledger"]').click();
  const item = page.locator(`[data-testid="ledger-item"][data-incident="${a.id}"]`);
  await item.waitFor({ timeout: 10000 });
  assert.equal(await item.getAttribute("data-entered"), "1");
  const listed = (await dop.cc.listLedger({ areaCode: district })).items.map((x) => x.incident.incidentId);
  assert.equal(await page.locator('[data-testid="ledger-item"]').count(), listed.length);
  assert.match(await item.innerText(), /资金/);
  await item.click();
  await page.waitForSelector(`[data-testid="incident"][data-incident="${a.id}"]`, { timeout: 10000 });

  // The review returns it to handling: a fresh deadline, never earlier; the figure goes back.
  await page.locator('[data-testid="ledger-return"]').click();
  const back = page.locator('[data-testid="ledger-dialog"]');
  await back.waitFor();
  await back.locator('[data-testid="dialog-note"]').fill("资金已落实，恢复办理");
  await back.locator('[data-testid="dialog-submit"]').click();
  await page.locator('[data-testid="action-ok"]').waitFor({ timeout: 10000 });
  assert.match(await page.locator('[data-testid="action-ok"]').innerText(), /已出账/);
  detail = await op.cc.getIncident({ incidentId: a.id });
  assert.equal(detail.ledger, undefined);
  assert.ok(!detail.incident.ledgered);
  assert.ok(Number(detail.incident.dueAt.seconds) >= dueBefore);
  assert.ok(detail.timeline.some((e) => e.kind === "incident.ledger_returned"));
  await page.locator('[data-testid="ledger"]').waitFor({ state: "detached", timeout: 10000 });
  await page.locator('[data-testid="incident-countdown"]').waitFor({ timeout: 10000 });
  await waitFor(async () => (await shown()) === before && (await ledgerCount()) === before, { timeout: 15000, message: "the 挂账 figure back" });
  await noRawCodes(page, "the drawer after the review");
  assert.deepEqual(errors, []);
  await context.close();
});
