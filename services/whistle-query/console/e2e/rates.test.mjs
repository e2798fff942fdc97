// One definition per number (issue 19, item 3): the three rates and the rankings read the same on
// every panel and in the RPCs — the screen's street and department rankings equal GetScoreboard
// row by row, a street's or a department's rates do not depend on the board it is ranked on (city
// or district), and the workbench's 本部门本月三率 is its department's row of the same board.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, clients, launch, openPage, waitFor } from "./helpers.mjs";
import { ScoreboardKind } from "./gen/whistle/v1/command_center_pb.js";

let browser;
const op = clients(env.operator);
let root = "150600";

before(async () => {
  for (const v of ["operator", "liaison", "department"]) assert.ok(env[v], `${v} is required (see docs/console.md)`);
  browser = await launch();
  root = (await op.cc.getSession({})).areaCode || root;
});
after(async () => {
  await browser?.close();
});

/** A scoreboard row as the page shows it in its data attributes. */
const rowOf = (r) => ({
  code: r.code,
  rank: r.rank,
  score: r.compositeScore,
  rates: [r.rates?.responseRate ?? 0, r.rates?.resolutionRate ?? 0, r.rates?.satisfactionRate ?? 0],
  counts: [r.rates?.acceptedInTime, r.rates?.dispatched, r.rates?.resolvedInTime, r.rates?.due, r.rates?.satisfied, r.rates?.followedUp].map(Number),
  sample: Number(r.sample),
  small: r.smallSample,
});

async function pageRows(page, kind) {
  return page.$$eval(`[data-testid="${kind}-row"]`, (els) =>
    els.map((e) => ({
      code: e.dataset.code,
      rank: Number(e.dataset.rank),
      score: Number(e.dataset.score),
      rates: e.dataset.rates.split(" ").map(Number),
      counts: e.dataset.counts.split(" ").map(Number),
      sample: Number(e.dataset.sample),
      small: e.dataset.smallSample === "1",
      text: e.innerText,
      tagged: e.querySelector('[data-testid="small-sample"]') !== null,
    })),
  );
}

/** The panel's rows equal GetScoreboard(kind, area)'s first 30, fetched just before or after. */
async function expectBoard(page, kind, area) {
  const k = kind === "streets" ? ScoreboardKind.STREETS : ScoreboardKind.DEPARTMENTS;
  let detail;
  return waitFor(
    async () => {
      const before = (await op.cc.getScoreboard({ areaCode: area, kind: k })).rows.slice(0, 30).map(rowOf);
      const shown = await pageRows(page, kind);
      const after = (await op.cc.getScoreboard({ areaCode: area, kind: k })).rows.slice(0, 30).map(rowOf);
      const bare = shown.map(({ text, tagged, ...r }) => r);
      detail = { shown: bare.slice(0, 3), before: before.slice(0, 3) };
      const same = (a) => JSON.stringify(a) === JSON.stringify(bare);
      return bare.length > 0 && (same(before) || same(after)) ? { shown, rows: same(before) ? before : after } : false;
    },
    { timeout: 40000, interval: 500, message: `the ${kind} ranking equal to GetScoreboard(${area}) ${JSON.stringify(detail)}` },
  );
}

test("rankings equal GetScoreboard, and a street's or department's rates are the same on every board", async () => {
  const { context, page, errors } = await openPage(browser, env.operator, "screen");
  await page.waitForSelector(`[data-testid="panel-streets"][data-area="${root}"]`, { timeout: 20000 });
  const city = await expectBoard(page, "streets", root);
  // What the row says is what the data says: score with one decimal, rates as percentages.
  for (const r of city.shown.slice(0, 5)) {
    assert.ok(r.text.includes(r.score.toFixed(1)), `${r.code}: ${r.text}`);
    for (const rate of r.rates) assert.ok(r.text.includes(`${(rate * 100).toFixed(1)}%`), `${r.code}: ${r.text}`);
  }
  // A row whose sample is below the policy's minimum carries the mark, and only such a row.
  for (const r of city.shown) assert.equal(r.tagged, r.small, `${r.code}: sample ${r.sample}, mark ${r.tagged}`);
  const cityDepartments = await expectBoard(page, "departments", root);

  // Into the liaison's district: the district's boards list the same streets and departments with
  // the same figures (only the ranks are the district's).
  const district = env.department.slice(0, 6);
  await page.selectOption('[data-testid="area-select"]', district);
  await page.waitForSelector(`[data-testid="panel-streets"][data-area="${district}"]`, { timeout: 20000 });
  const local = await expectBoard(page, "streets", district);
  const localDepartments = await expectBoard(page, "departments", district);
  const cityAt = new Map([...city.rows, ...cityDepartments.rows].map((r) => [r.code, r]));
  const fresh = new Map(
    [
      ...(await op.cc.getScoreboard({ areaCode: root, kind: ScoreboardKind.STREETS })).rows,
      ...(await op.cc.getScoreboard({ areaCode: root, kind: ScoreboardKind.DEPARTMENTS })).rows,
    ].map((r) => [r.code, rowOf(r)]),
  );
  for (const r of [...local.rows, ...localDepartments.rows]) {
    const c = fresh.get(r.code) ?? cityAt.get(r.code);
    assert.ok(c, `${r.code} is on the city's board too`);
    assert.deepEqual([r.rates, r.counts, r.score], [c.rates, c.counts, c.score], `${r.code}: district board vs city board`);
  }
  assert.deepEqual(errors, []);
  await context.close();

  // The workbench's own figures: its department's row of the district's department board.
  const bench = await openPage(browser, env.liaison, "workbench");
  await bench.page.waitForSelector('[data-testid="dept-rates"][data-rank]:not([data-rank=""])', { timeout: 20000 });
  await waitFor(
    async () => {
      const row = (await op.cc.getScoreboard({ areaCode: district, kind: ScoreboardKind.DEPARTMENTS })).rows.find((r) => r.code === env.department);
      const shown = await bench.page.evaluate(() => {
        const box = document.querySelector('[data-testid="dept-rates"]');
        const v = (id) => Number(document.querySelector(`[data-testid="${id}"]`).dataset.value);
        return { rank: Number(box.dataset.rank), counts: box.dataset.counts.split(" ").map(Number), rates: [v("dept-response"), v("dept-resolution"), v("dept-satisfaction")], score: v("dept-composite"), small: box.dataset.smallSample === "1" };
      });
      const want = rowOf(row);
      return JSON.stringify(shown) === JSON.stringify({ rank: want.rank, counts: want.counts, rates: want.rates, score: want.score, small: want.small });
    },
    { timeout: 30000, message: "the workbench's rates equal its department's scoreboard row" },
  );
  assert.deepEqual(bench.errors, []);
  await bench.context.close();
});
