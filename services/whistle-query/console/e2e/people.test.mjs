// 人员管理 (issue 25, item 2): only operators see the entry; the district's operator, on a laptop,
// filters the people by role and post, tries to offboard a liaison who holds a task (refused in
// words, the task listed), picks the successor and sees the liaison gone from the list — and the
// server agrees. Same environment as console.test.mjs, plus WHISTLE_PEOPLE_* (docs/console.md).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { env, clients, launch, openPage, waitFor } from "./helpers.mjs";

let browser;

before(async () => {
  for (const v of ["districtOperator", "liaison", "viewer", "peopleLeaver", "peopleSuccessor", "peopleDepartment", "peopleIncident"]) assert.ok(env[v], `${v} is required (see docs/console.md)`);
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("people: only operators see the entry", async () => {
  for (const [token, sees] of [
    [env.districtOperator, true],
    [env.viewer, false],
    [env.liaison, false],
  ]) {
    const { context, page, errors } = await openPage(browser, token, "people");
    // The nav is in the page once the session is known (the wall screen may lay it out hidden).
    await page.waitForSelector('[data-testid="nav"]', { state: "attached", timeout: 20000 });
    assert.equal(await page.locator('[data-testid="nav-people"]').count(), sees ? 1 : 0);
    // The hash alone opens nothing: a non-operator stays on its own view.
    assert.equal(await page.locator('[data-testid="people"]').count(), sees ? 1 : 0);
    assert.deepEqual(errors, []);
    await context.close();
  }
});

test("people: offboarding a liaison who holds a task needs a successor; then they leave the list", async () => {
  const leaver = env.peopleLeaver;
  const successor = env.peopleSuccessor;
  // A laptop's screen: the page must stay usable there.
  const { context, page, errors } = await openPage(browser, env.districtOperator, "people", { width: 1366, height: 768 });
  const row = page.locator(`[data-testid="person-row"][data-person="${leaver}"]`);
  await row.waitFor({ timeout: 20000 });

  // Filters: the department's liaisons only.
  await page.selectOption('[data-testid="people-filter-role"]', "liaison");
  await page.selectOption('[data-testid="people-filter-post"]', env.peopleDepartment);
  const shown = await page.locator('[data-testid="person-row"]').evaluateAll((rows) => rows.map((r) => [r.dataset.person, r.dataset.role, r.dataset.post]));
  assert.ok(shown.length >= 3, JSON.stringify(shown));
  for (const [, role, post] of shown) assert.deepEqual([role, post], ["liaison", env.peopleDepartment]);
  assert.ok(shown.some(([id]) => id === successor));
  // Nothing spills out sideways at this size.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a laptop's screen`);

  // Without a successor: refused in words, the task listed, the person still there.
  await row.locator('[data-testid="person-offboard"]').click();
  const dialog = page.locator('[data-testid="people-offboard-dialog"]');
  await dialog.waitFor();
  await dialog.locator('[data-testid="people-submit"]').click();
  const refusal = dialog.locator('[data-testid="people-error"]');
  await refusal.waitFor({ timeout: 15000 });
  assert.equal(await refusal.getAttribute("data-reason"), "successor_needed");
  const text = await refusal.innerText();
  assert.match(text, /仍有以下事项需要交接/);
  assert.match(text, /请在上方选择接替人/);
  const task = refusal.locator('[data-testid="held-task"]');
  assert.equal(await task.count(), 1);
  assert.equal(await task.getAttribute("data-incident"), env.peopleIncident);
  assert.match(await task.innerText(), /^未办结任务：/);
  assert.ok(!/[A-Z_]{6,}/.test(text), `a code shows: ${text}`);
  // The submit waits for a successor now.
  assert.ok(await dialog.locator('[data-testid="people-submit"]').isDisabled());
  const op = clients(env.districtOperator);
  const still = (await op.cc.listPeople({ areaCode: "", includeLeft: false })).people;
  assert.ok(still.some((p) => p.personId === leaver), "nothing changed on the server");

  // The picker offers the department's other liaisons on duty; with the successor it is done.
  const options = await dialog.locator('[data-testid="people-successor"] option').evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
  assert.ok(options.includes(successor), JSON.stringify(options));
  assert.ok(!options.includes(leaver));
  await dialog.locator('[data-testid="people-successor"]').selectOption(successor);
  await dialog.locator('[data-testid="people-submit"]').click();
  await dialog.waitFor({ state: "detached", timeout: 15000 });
  const ok = page.locator('[data-testid="people-ok"]');
  await ok.waitFor();
  assert.match(await ok.innerText(), /已离岗/);
  await waitFor(async () => (await row.count()) === 0, { message: "the leaver gone from the list" });

  // The server agrees: left, with the successor named; the task is the successor's.
  const everyone = (await op.cc.listPeople({ areaCode: "", includeLeft: true })).people;
  const gone = everyone.find((p) => p.personId === leaver);
  assert.ok(gone?.leftAt, "left on the server");
  assert.equal(gone.successorId, successor);
  const detail = await op.cc.getIncident({ incidentId: env.peopleIncident });
  assert.ok(detail.timeline.some((e) => e.kind === "task.handover"), "the handover on the incident's timeline");

  // With those who left shown, the leaver is back, marked as left, the successor named.
  await page.check('[data-testid="people-include-left"]');
  await row.waitFor({ timeout: 15000 });
  assert.equal(await row.getAttribute("data-left"), "1");
  assert.match(await row.locator('[data-testid="person-status"]').innerText(), /已离岗[\s\S]*接替人：接替测试员/);
  assert.deepEqual(errors, []);
  await context.close();
});

test("people: the org import's templates download under their Chinese names", async () => {
  const { context, page, errors } = await openPage(browser, env.districtOperator, "people", { width: 1366, height: 768 });
  await page.waitForSelector('[data-testid="people-templates"]', { timeout: 20000 });
  for (const [id, path, name, magic] of [
    ["template-xlsx", "/templates/org.xlsx", "组织机构.xlsx", "PK\u0003\u0004"],
    ["template-geojson", "/templates/grids.geojson", "网格边界.geojson", '{"type":"FeatureCollection"'],
  ]) {
    const [response, download] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith(path)),
      page.waitForEvent("download"),
      page.click(`[data-testid="${id}"]`),
    ]);
    assert.equal(response.status(), 200, `${path}: ${await response.text().catch(() => "")}`);
    assert.equal(download.suggestedFilename(), name);
    const bytes = await readFile(await download.path());
    assert.equal(bytes.subarray(0, Buffer.byteLength(magic)).toString("utf8"), magic, path);
  }
  assert.equal(await page.locator('[data-testid="template-error"]').count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});
