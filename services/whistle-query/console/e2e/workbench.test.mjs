// The console as its users live with it (issue 19): words instead of codes after a stale version, a
// refused transition and a network cut; countdowns read at a glance; a workbench that holds still
// and offers only what the server accepts; dialogs that are dialogs. Same environment as
// console.test.mjs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { env, clients, launch, openPage, waitFor, sleep, whistledTask } from "./helpers.mjs";
import { TaskStatus } from "./gen/whistle/v1/common_pb.js";
import { CommandSchema } from "./gen/whistle/v1/command_pb.js";

let browser;
const op = clients(env.operator);
const li = clients(env.liaison);
const uuid = () => crypto.randomUUID();

before(async () => {
  for (const v of ["operator", "liaison", "department", "grid"]) assert.ok(env[v], `${v} is required (see docs/console.md)`);
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/**
 * Codes a person must never read: gRPC code names, "version 7", person and unit ids, department
 * codes, report ids and the raw network error.
 */
const RAW = [
  /\b(ABORTED|FAILED_PRECONDITION|INVALID_ARGUMENT|PERMISSION_DENIED|NOT_FOUND|UNAVAILABLE|UNKNOWN|UNAUTHENTICATED|RESOURCE_EXHAUSTED|INTERNAL)\b/,
  /Failed to fetch/i,
  /\bversion \d+|版本 ?\d+/i,
  /\b(li|gw|op|hd)-\d{6}/,
  /\b\d{6}-[a-z_]+\b/,
  /\bsystem\b/,
  /\b[a-z]+_[a-z_]+\b/, // reason codes such as reporter_not_in_grid
  /· #\d+/,
];
async function noRawCodes(page, where) {
  const text = await page.evaluate(() => document.body.innerText);
  for (const re of RAW) assert.ok(!re.test(text), `${where}: ${re} visible in:\n${text.match(new RegExp(`.{0,60}${re.source}.{0,60}`, re.flags))?.[0]}`);
}

const newTask = (title) => whistledTask(title);

async function version(id) {
  return (await op.cc.getIncident({ incidentId: id })).incident.version;
}

async function openBench() {
  const s = await openPage(browser, env.liaison, "workbench");
  await s.page.waitForSelector('[data-testid="task-table"]', { timeout: 20000 });
  return s;
}

const row = (page, id) => page.locator(`[data-testid="wb-task"][data-incident="${id}"]`);

test("workbench: a stale version reloads and offers the action again, in words, inside the dialog", async () => {
  const a = await newTask(`e2e 过期 ${Date.now()}`);
  const { context, page, errors } = await openBench();
  await row(page, a.id).waitFor({ timeout: 20000 });
  await row(page, a.id).locator('[data-testid="wb-return"]').click();
  const dialog = page.locator('[data-testid="return-dialog"]');
  await dialog.waitFor();
  // A dialog to screen readers, with the focus inside it.
  assert.equal(await dialog.getAttribute("role"), "dialog");
  assert.equal(await dialog.getAttribute("aria-modal"), "true");
  assert.ok(await page.evaluate(() => document.activeElement?.closest('[role="dialog"]') !== null), "focus is inside the dialog");
  // Someone else changes the incident meanwhile: the dialog's version is stale.
  await op.dispatch.supervise({ commandId: uuid(), incidentId: a.id, expectedVersion: await version(a.id), body: { case: "supervise", value: { taskId: a.taskId, note: "e2e 督办" } } });
  await dialog.locator('[data-testid="dialog-note"]').fill("非本部门职责");
  await dialog.locator('[data-testid="dialog-submit"]').click();
  const problem = dialog.locator('[data-testid="dialog-error"]');
  await problem.waitFor({ timeout: 10000 });
  assert.equal(await problem.getAttribute("data-kind"), "stale");
  assert.match(await problem.innerText(), /他人更新/);
  await noRawCodes(page, "after a stale version");
  // Offered again with the incident's new version; the note is kept.
  const again = dialog.locator('[data-testid="dialog-submit"]');
  await waitFor(async () => /再次退单/.test(await again.innerText()), { message: "再次退单" });
  assert.equal(await dialog.locator('[data-testid="dialog-note"]').inputValue(), "非本部门职责");
  await again.click();
  await page.waitForSelector('[data-testid="action-ok"]', { timeout: 10000 });
  const detail = await li.cc.getIncident({ incidentId: a.id });
  assert.equal(detail.tasks.find((t) => String(t.state.taskId) === a.taskId).state.status, TaskStatus.RETURNED);
  assert.deepEqual(errors, []);
  await context.close();
});

test("workbench: a refused transition is said in words and the action is withdrawn", async () => {
  const a = await newTask(`e2e 状态已变 ${Date.now()}`);
  const { context, page, errors } = await openBench();
  await row(page, a.id).waitFor({ timeout: 20000 });
  await row(page, a.id).locator('[data-testid="wb-return"]').click();
  const dialog = page.locator('[data-testid="return-dialog"]');
  await dialog.waitFor();
  // The department accepts elsewhere (another liaison's screen); the page's request is sent with
  // the current version, so dispatch refuses the transition itself (事不完、人不撤), not the version.
  await li.dispatch.accept({ commandId: uuid(), incidentId: a.id, expectedVersion: await version(a.id), body: { case: "accept", value: { taskId: a.taskId, note: "" } } });
  const current = await version(a.id);
  await page.route("**/whistle.v1.Dispatch/Return", async (route) => {
    const body = route.request().postDataBuffer();
    const command = fromBinary(CommandSchema, body.subarray(5));
    command.expectedVersion = current;
    const bytes = toBinary(CommandSchema, command);
    const framed = Buffer.alloc(5 + bytes.length);
    framed.writeUInt32BE(bytes.length, 1);
    framed.set(bytes, 5);
    await route.continue({ postData: framed });
  });
  await dialog.locator('[data-testid="dialog-note"]').fill("信息不全");
  await dialog.locator('[data-testid="dialog-submit"]').click();
  const problem = dialog.locator('[data-testid="dialog-error"]');
  await problem.waitFor({ timeout: 10000 });
  assert.equal(await problem.getAttribute("data-kind"), "refused");
  assert.match(await problem.innerText(), /状态已变化/);
  // The reload shows the task is accepted now: no 退单 to offer.
  const gone = dialog.locator('[data-testid="dialog-gone"]');
  await gone.waitFor({ timeout: 10000 });
  assert.match(await gone.innerText(), /已签收/);
  assert.equal(await dialog.locator('[data-testid="dialog-submit"]').count(), 0);
  await noRawCodes(page, "after a refused transition");
  // Esc closes the dialog; the row, accepted now, offers 办结 and no 退单.
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  await waitFor(async () => (await row(page, a.id).locator('[data-testid="wb-resolve"]').count()) === 1, { message: "办结 offered" });
  assert.equal(await row(page, a.id).locator('[data-testid="wb-return"]').count(), 0);
  assert.equal(await row(page, a.id).locator('[data-testid="wb-accept"]').count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test("workbench: actions sit in fixed columns and only those the server sends are offered", async () => {
  const { context, page, errors } = await openBench();
  await page.locator('[data-testid="wb-task"]').first().waitFor({ timeout: 20000 });
  const columns = await page.$$eval('[data-testid="wb-task"]', (rows) =>
    rows.map((r) => Object.fromEntries(["accept", "return", "resolve"].map((v) => [v, [...r.children].findIndex((td) => td.querySelector(`[data-testid="wb-${v}"]`))]))),
  );
  for (const v of ["accept", "return", "resolve"]) {
    const at = new Set(columns.map((c) => c[v]).filter((i) => i >= 0));
    assert.ok(at.size <= 1, `${v} in one column: ${[...at]}`);
  }
  const api = await li.cc.listTasks({ departmentCode: env.department, pageSize: 200 });
  for (const item of api.tasks) {
    const r = row(page, item.incident.incidentId).and(page.locator(`[data-task="${item.task.taskId}"]`));
    if (!(await r.count())) continue;
    for (const v of ["accept", "return", "resolve"])
      assert.equal(await r.locator(`[data-testid="wb-${v}"]`).count(), item.verbs.includes(v) ? 1 : 0, `${v} on task ${item.incident.title}`);
    if (item.task.status === TaskStatus.ACCEPTED) assert.ok(!item.verbs.includes("return"), "事不完、人不撤: no 退单 once accepted");
  }
  assert.deepEqual(errors, []);
  await context.close();
});

test("workbench: the row under the pointer does not move while tasks arrive and reorder", async () => {
  const first = await newTask(`e2e 静止一 ${Date.now()}`);
  const last = await newTask(`e2e 静止二 ${Date.now()}`);
  const { context, page, errors } = await openBench();
  await row(page, last.id).waitFor({ timeout: 20000 });
  const order = () => page.$$eval('[data-testid="wb-task"]', (rows) => rows.map((r) => `${r.dataset.incident}/${r.dataset.task}`));
  await row(page, last.id).hover();
  const y0 = (await row(page, last.id).boundingBox()).y;
  const before = await order();
  // Tasks arrive, and an earlier task is accepted (the server now sorts it below the waiting ones).
  const added = [await newTask(`e2e 新到一 ${Date.now()}`), await newTask(`e2e 新到二 ${Date.now()}`)];
  await li.dispatch.accept({ commandId: uuid(), incidentId: first.id, expectedVersion: await version(first.id), body: { case: "accept", value: { taskId: first.taskId, note: "" } } });
  await page.waitForSelector('[data-testid="wb-apply"]', { timeout: 15000 });
  assert.match(await page.innerText('[data-testid="wb-announce"]'), /条新任务/);
  for (let i = 0; i < 6; i++) {
    await sleep(1000);
    assert.equal((await row(page, last.id).boundingBox()).y, y0, "the row under the pointer moved");
    assert.deepEqual(await order(), before, "the rows moved while the pointer was on the list");
  }
  // The accepted task changed in place: its 签收 is gone.
  await waitFor(async () => (await row(page, first.id).locator('[data-testid="wb-accept"]').count()) === 0, { message: "accepted in place" });
  // The pointer leaves: after a pause the new tasks come in and the order is the server's.
  await page.mouse.move(5, 5);
  for (const a of added) await row(page, a.id).waitFor({ timeout: 15000 });
  const api = await li.cc.listTasks({ departmentCode: env.department, pageSize: 200 });
  await waitFor(async () => JSON.stringify(await order()) === JSON.stringify(api.tasks.map((t) => `${t.incident.incidentId}/${t.task.taskId}`)) || (await order()).length >= before.length + added.length, {
    message: "the list settled",
  });
  assert.deepEqual(errors, []);
  await context.close();
});

test("countdowns read at a glance: 剩余 …分…秒, and 已超 …小时…分 in red once late", async () => {
  const a = await newTask(`e2e 倒计时 ${Date.now()}`);
  const { context, page, errors } = await openBench();
  const cd = row(page, a.id).locator('[data-testid="wb-countdown"]');
  await cd.waitFor({ timeout: 20000 });
  // The stack's clock stands still from the suite's start, so the deadline is under 30 minutes away.
  assert.match((await cd.innerText()).trim(), /^报到 剩余 [1-3]?\d分\d{2}秒$/);
  await context.close();
  // Two hours on (the page's clock only): the 30-minute report-in deadline is long past.
  const later = await browser.newContext({ viewport: { width: 1920, height: 1080 }, locale: "zh-CN" });
  const page2 = await later.newPage();
  await page2.clock.setFixedTime(Date.now() + 2 * 3600 * 1000);
  await page2.addInitScript(() => localStorage.setItem("whistle.lang", "zh"));
  await page2.goto(`${env.page}/#/workbench?token=${encodeURIComponent(env.liaison)}`);
  const late = row(page2, a.id).locator('[data-testid="wb-countdown"]');
  await late.waitFor({ timeout: 20000 });
  assert.match((await late.innerText()).trim(), /^报到 已超 1小时\d{2}分$/);
  assert.equal(await late.getAttribute("data-late"), "1");
  assert.equal(await late.evaluate((el) => getComputedStyle(el).color), "rgb(255, 93, 108)");
  const texts = await page2.$$eval('[data-testid="wb-countdown"]', (els) => els.map((e) => e.innerText));
  for (const s of texts) assert.ok(!/\d{2}:\d{2}/.test(s), `no clock-style countdown: ${s}`);
  await later.close();
  assert.deepEqual(errors, []);
});

test("drawer: 督办 asks for a note, confirms, survives a stale version; names instead of codes", async () => {
  const a = await newTask(`e2e 督办 ${Date.now()}`);
  const { context, page, errors } = await openPage(browser, env.operator, "screen");
  await page.waitForSelector('[data-testid="screen"]', { timeout: 20000 });
  await page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 20000 });
  // Open it from the ticker: an event about it arrives when the liaison's department is reminded.
  await op.dispatch.comment({ commandId: uuid(), incidentId: a.id, expectedVersion: await version(a.id), body: { case: "comment", value: { text: "e2e 备注" } } });
  const item = page.locator(`[data-testid="ticker-item"][data-incident="${a.id}"]`).first();
  await item.waitFor({ timeout: 10000 });
  await item.click();
  await page.waitForSelector(`[data-testid="incident"][data-incident="${a.id}"]`, { timeout: 10000 });
  await page.locator('[data-testid="supervise-task"]').first().click();
  const dialog = page.locator('[data-testid="supervise-dialog"]');
  await dialog.waitFor();
  assert.equal(await dialog.getAttribute("role"), "dialog");
  // A note is required before it can be sent.
  assert.ok(await dialog.locator('[data-testid="dialog-submit"]').isDisabled());
  await dialog.locator('[data-testid="dialog-note"]').fill("请于今日内报到");
  // Another operator supervises the task meanwhile (督办 of the incident alone changes no state).
  await op.dispatch.supervise({ commandId: uuid(), incidentId: a.id, expectedVersion: await version(a.id), body: { case: "supervise", value: { taskId: a.taskId, note: "e2e" } } });
  await dialog.locator('[data-testid="dialog-submit"]').click();
  await dialog.locator('[data-testid="dialog-error"][data-kind="stale"]').waitFor({ timeout: 10000 });
  await waitFor(async () => /再次督办/.test(await dialog.locator('[data-testid="dialog-submit"]').innerText()), { message: "再次督办" });
  await dialog.locator('[data-testid="dialog-submit"]').click();
  const ok = page.locator('[data-testid="action-ok"]');
  await ok.waitFor({ timeout: 10000 });
  assert.match(await ok.innerText(), /已督办/);
  await waitFor(async () => (await li.cc.getIncident({ incidentId: a.id })).timeline.some((e) => e.kind === "task.supervised" && e.note === "请于今日内报到"), { message: "the supervision on record" });
  // The timeline names people and units; the drawer shows no id, code or version.
  await waitFor(async () => (await page.locator('[data-testid="tl-actor"]').allInnerTexts()).some((s) => s.includes("·")), { message: "an actor named with their unit" });
  await noRawCodes(page, "the drawer");
  // Esc closes the dialog first, then the drawer.
  await page.locator('[data-testid="supervise-task"]').first().click();
  await dialog.waitFor();
  // Esc reaches the dialog once it holds the focus (set as it opens; late on a loaded machine).
  await waitFor(async () => dialog.evaluate((d) => d.contains(document.activeElement)), { message: "the focus in the dialog" });
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.equal(await page.locator('[data-testid="drawer"]').count(), 1);
  await page.keyboard.press("Escape");
  await page.locator('[data-testid="drawer"]').waitFor({ state: "detached" });
  assert.deepEqual(errors, []);
  await context.close();
});

test("workbench: search and filters narrow the list; a task opens its detail with the timeline", async () => {
  const title = `e2e 查找 ${Date.now()}`;
  const a = await newTask(title);
  const { context, page, errors } = await openBench();
  await row(page, a.id).waitFor({ timeout: 20000 });
  await page.fill('[data-testid="wb-search"]', title);
  await waitFor(async () => (await page.locator('[data-testid="wb-task"]').count()) === 1, { message: "one row for the search" });
  await page.selectOption('[data-testid="wb-filter-status"]', "accepted");
  await waitFor(async () => (await page.locator('[data-testid="wb-task"]').count()) === 0, { message: "a waiting task is not accepted" });
  await page.selectOption('[data-testid="wb-filter-status"]', "waiting");
  await page.selectOption('[data-testid="wb-filter-due"]', "soon");
  await waitFor(async () => (await page.locator('[data-testid="wb-task"]').count()) === 1, { message: "report-in due within the hour" });
  await page.selectOption('[data-testid="wb-filter-due"]', "late");
  await waitFor(async () => (await page.locator('[data-testid="wb-task"]').count()) === 0, { message: "not late yet" });
  await page.selectOption('[data-testid="wb-filter-due"]', "");
  await row(page, a.id).locator('[data-testid="wb-open"]').click();
  await page.waitForSelector(`[data-testid="incident"][data-incident="${a.id}"]`, { timeout: 10000 });
  assert.ok((await page.locator('[data-testid="timeline"] li').count()) >= 2);
  // The department holds an open task: the resident's number is shown whole, to call back.
  assert.match(await page.locator('[data-testid="report-contact"]').innerText(), /13800138000/);
  await noRawCodes(page, "the workbench's task detail");
  await page.keyboard.press("Escape");
  await page.locator('[data-testid="drawer"]').waitFor({ state: "detached" });
  assert.deepEqual(errors, []);
  await context.close();
});

test("延期申请: the workbench asks for a later deadline; the screen's drawer approves it and the deadline moves", async () => {
  const a = await newTask(`e2e 延期 ${Date.now()}`);
  await li.dispatch.accept({ commandId: uuid(), incidentId: a.id, expectedVersion: 0n, body: { case: "accept", value: { taskId: a.taskId, note: "" } } });
  const due = Number((await op.cc.getIncident({ incidentId: a.id })).incident.dueAt.seconds) * 1000;
  const bench = await openBench();
  const button = row(bench.page, a.id).locator('[data-testid="wb-request_extension"]');
  await button.waitFor({ timeout: 20000 });
  await button.click();
  const ask = bench.page.locator('[data-testid="request_extension-dialog"]');
  await ask.waitFor();
  // Neither without a reason nor with a date that is not later than the deadline.
  const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  await ask.locator('[data-testid="dialog-note"]').fill("材料到货需要时间");
  await ask.locator('[data-testid="dialog-until"]').fill(local(due - 3600_000));
  assert.ok(await ask.locator('[data-testid="dialog-submit"]').isDisabled(), "an earlier date cannot be sent");
  const until = local(due + 2 * 86400_000);
  await ask.locator('[data-testid="dialog-until"]').fill(until);
  // The reason typed first is still there (a final run once found the button disabled here: the
  // dialog focused its first field after a paint, and the reason went to the date field instead).
  assert.equal(await ask.locator('[data-testid="dialog-note"]').inputValue(), "材料到货需要时间");
  await ask.locator('[data-testid="dialog-submit"]').click();
  await bench.page.locator('[data-testid="action-ok"]').waitFor({ timeout: 10000 });
  assert.match(await bench.page.locator('[data-testid="action-ok"]').innerText(), /已申请延期/);
  assert.deepEqual(bench.errors, []);
  await bench.context.close();

  const { context, page, errors } = await openPage(browser, env.operator, "screen");
  await page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 20000 });
  await op.dispatch.comment({ commandId: uuid(), incidentId: a.id, expectedVersion: 0n, body: { case: "comment", value: { text: "e2e 延期审批" } } });
  const item = page.locator(`[data-testid="ticker-item"][data-incident="${a.id}"]`).first();
  await item.waitFor({ timeout: 10000 });
  await item.click();
  await page.locator('[data-testid="extension-pending"]').waitFor({ timeout: 10000 });
  await page.locator('[data-testid="extension-approve"]').click();
  const decide = page.locator('[data-testid="decide-extension-dialog"]');
  await decide.waitFor();
  await decide.locator('[data-testid="dialog-submit"]').click();
  await page.locator('[data-testid="action-ok"]').waitFor({ timeout: 10000 });
  assert.match(await page.locator('[data-testid="action-ok"]').innerText(), /已同意延期/);
  const after = await op.cc.getIncident({ incidentId: a.id });
  assert.equal(Number(after.incident.dueAt.seconds) * 1000, new Date(until).getTime());
  assert.equal(after.extensions, 1);
  assert.equal(after.pendingExtension, undefined);
  await page.locator('[data-testid="extension-pending"]').waitFor({ state: "detached", timeout: 10000 });
  await noRawCodes(page, "the drawer after an extension");
  assert.deepEqual(errors, []);
  await context.close();
});

test("派单异议: the workbench disputes a task before reporting in; the screen's drawer upholds it and the deadline stays", async () => {
  const a = await newTask(`e2e 异议 ${Date.now()}`);
  const due = (await op.cc.getIncident({ incidentId: a.id })).incident.dueAt.seconds;
  const bench = await openBench();
  const button = row(bench.page, a.id).locator('[data-testid="wb-dispute"]');
  await button.waitFor({ timeout: 20000 });
  await button.click();
  const ask = bench.page.locator('[data-testid="dispute-dialog"]');
  await ask.waitFor();
  // Neither without a reason nor without the department it should go to.
  await ask.locator('[data-testid="dialog-note"]').fill("经现场核实属其他部门职责");
  assert.ok(await ask.locator('[data-testid="dialog-submit"]').isDisabled(), "a dispute names a department");
  const options = await ask.locator('[data-testid="reassign-to"] option').evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
  assert.ok(options.length > 0 && !options.includes(env.department), `${options}`);
  const to = options[0];
  await ask.locator('[data-testid="reassign-to"]').selectOption(to);
  await ask.locator('[data-testid="dialog-submit"]').click();
  await bench.page.locator('[data-testid="action-ok"]').waitFor({ timeout: 10000 });
  assert.match(await bench.page.locator('[data-testid="action-ok"]').innerText(), /已提出派单异议/);
  // Once per task: the action is gone from the row.
  await row(bench.page, a.id).locator('[data-testid="wb-dispute"]').waitFor({ state: "detached", timeout: 10000 });
  await noRawCodes(bench.page, "the workbench after a dispute");
  assert.deepEqual(bench.errors, []);
  await bench.context.close();

  const { context, page, errors } = await openPage(browser, env.operator, "screen");
  await page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 20000 });
  await op.dispatch.comment({ commandId: uuid(), incidentId: a.id, expectedVersion: 0n, body: { case: "comment", value: { text: "e2e 异议裁定" } } });
  const item = page.locator(`[data-testid="ticker-item"][data-incident="${a.id}"]`).first();
  await item.waitFor({ timeout: 10000 });
  await item.click();
  await page.locator('[data-testid="dispute-pending"]').waitFor({ timeout: 10000 });
  await noRawCodes(page, "the drawer with a pending dispute");
  await page.locator('[data-testid="dispute-uphold"]').click();
  const decide = page.locator('[data-testid="decide-dispute-dialog"]');
  await decide.waitFor();
  await decide.locator('[data-testid="dialog-submit"]').click();
  await page.locator('[data-testid="action-ok"]').waitFor({ timeout: 10000 });
  assert.match(await page.locator('[data-testid="action-ok"]').innerText(), /异议成立/);
  const after = await op.cc.getIncident({ incidentId: a.id });
  assert.equal(after.incident.dueAt.seconds, due, "the citizen-facing deadline stays");
  const states = after.tasks.map((x) => [x.state.departmentCode, x.state.status]);
  assert.ok(states.some(([d, s]) => d === env.department && s === TaskStatus.CANCELLED), JSON.stringify(states));
  assert.ok(states.some(([d, s]) => d === to && s === TaskStatus.DISPATCHED), JSON.stringify(states));
  await page.locator('[data-testid="dispute-pending"]').waitFor({ state: "detached", timeout: 10000 });
  await noRawCodes(page, "the drawer after a dispute");
  assert.deepEqual(errors, []);
  await context.close();
});
