// One catalogue, served (issue 19, item 10): the report form offers the running policy's groups and
// categories (CommandCenter.GetCatalogue, nothing compiled in), and 改派 chooses from the
// departments that serve the incident (ListDepartments), not from those that happen to be on the board.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, clients, launch, openPage, whistledTask } from "./helpers.mjs";
import { TaskStatus } from "./gen/whistle/v1/common_pb.js";

let browser;
const op = clients(env.operator);

before(async () => {
  for (const v of ["operator", "liaison", "department", "grid"]) assert.ok(env[v], `${v} is required (see docs/console.md)`);
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("the report form's categories are GetCatalogue's, in its order, by name", async () => {
  const catalogue = await clients(env.grid).cc.getCatalogue({});
  assert.ok(catalogue.groups.length > 3, "the policy has groups");
  const { context, page, errors } = await openPage(browser, env.grid, "report", { width: 390, height: 844, mobile: true });
  await page.waitForSelector(`[data-testid="groups"][data-policy="${catalogue.policyVersion}"]`, { timeout: 20000 });
  const groups = await page.$$eval('[data-testid="groups"] [data-testid^="group-"]', (els) => els.map((e) => [e.dataset.testid.slice(6), e.textContent.trim()]));
  assert.deepEqual(groups, catalogue.groups.map((g) => [g.code, g.nameZh]));
  for (const g of [catalogue.groups[0], catalogue.groups.at(-1)]) {
    await page.click(`[data-testid="group-${g.code}"]`);
    const cats = await page.$$eval('[data-testid="categories"] [data-testid^="category-"]', (els) => els.map((e) => [e.dataset.testid.slice(9), e.textContent.trim()]));
    assert.deepEqual(cats, g.categories.map((c) => [c.code, c.nameZh]));
  }
  // Choosing a category suggests it as the title, until the worker writes their own.
  const last = catalogue.groups.at(-1).categories;
  await page.click(`[data-testid="category-${last[0].code}"]`);
  assert.equal(await page.inputValue('[data-testid="report-title"]'), last[0].nameZh);
  if (last[1]) {
    await page.click(`[data-testid="category-${last[1].code}"]`);
    assert.equal(await page.inputValue('[data-testid="report-title"]'), last[1].nameZh);
  }
  await page.fill('[data-testid="report-title"]', "自己写的标题");
  await page.click(`[data-testid="category-${last[0].code}"]`);
  assert.equal(await page.inputValue('[data-testid="report-title"]'), "自己写的标题");
  assert.deepEqual(errors, []);
  await context.close();
});

test("改派 offers exactly the departments serving the incident, by name", async () => {
  const { id, taskId } = await whistledTask("改派目录测试");
  const detail = await op.cc.getIncident({ incidentId: id });
  const serving = (await op.cc.listDepartments({ areaCode: detail.incident.gridCode })).departments;
  // The district's and the city's, nothing else.
  assert.ok(serving.length > 5, `departments serving ${detail.incident.gridCode}: ${serving.length}`);
  for (const d of serving) assert.ok([detail.incident.districtCode, "150600"].includes(d.areaCode), `${d.code} serves ${d.areaCode}`);
  const busy = new Set(detail.tasks.filter((t) => ![TaskStatus.RETURNED, TaskStatus.CANCELLED].includes(t.state.status)).map((t) => t.state.departmentCode));
  const expected = serving.filter((d) => !busy.has(d.code)).map((d) => [d.code, d.name]);

  const { context, page, errors } = await openPage(browser, env.operator, "screen");
  await page.waitForSelector('[data-testid="live-status"][data-status="live"]', { timeout: 20000 });
  // A comment puts the incident in the live ticker, from which the operator opens it.
  const version = (await op.cc.getIncident({ incidentId: id })).incident.version;
  await op.dispatch.comment({ commandId: crypto.randomUUID(), incidentId: id, expectedVersion: version, body: { case: "comment", value: { text: "e2e" } } });
  await page.locator(`[data-testid="ticker-item"][data-incident="${id}"]`).first().click({ timeout: 15000 });
  await page.waitForSelector(`[data-testid="incident"][data-incident="${id}"]`, { timeout: 15000 });
  await page.click(`[data-testid="task-row"][data-task="${taskId}"] [data-testid="reassign-task"]`);
  const dialog = page.locator('[data-testid="reassign-dialog"]');
  await dialog.waitFor();
  const options = await dialog.locator("select option").evaluateAll((els) => els.filter((e) => e.value).map((e) => [e.value, e.textContent.trim()]));
  assert.deepEqual(options, expected);
  assert.ok(options.some(([code]) => code.startsWith("150600-")), "the city's departments are offered");
  assert.deepEqual(errors, []);
  await context.close();
});
