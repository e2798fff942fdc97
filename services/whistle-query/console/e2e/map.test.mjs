// A real map (issue 19, item 6): the city's district boundaries under the incident layer, districts
// coloured on a labelled scale with a legend, and labels that never overlap — at the city and
// inside a district, on the wall and at 4K.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, clients, launch, openPage, waitFor } from "./helpers.mjs";

let browser;
const op = clients(env.operator);
let root = "150600";

before(async () => {
  assert.ok(env.operator, "WHISTLE_OPERATOR_TOKEN is required");
  browser = await launch();
  root = (await op.cc.getSession({})).areaCode || root;
});
after(async () => {
  await browser?.close();
});

/** The visible labels' boxes and texts, and the map body's box. */
function labels() {
  const body = document.querySelector('[data-testid="panel-map"] .map-stage').getBoundingClientRect();
  const shown = [...document.querySelectorAll('[data-testid="map-label"]')].filter((e) => !e.dataset.hidden);
  return {
    body: [body.left, body.top, body.right, body.bottom],
    all: document.querySelectorAll('[data-testid="map-label"]').length,
    shown: shown.map((e) => {
      const r = e.getBoundingClientRect();
      return { code: e.dataset.code, text: e.innerText, box: [r.left, r.top, r.right, r.bottom] };
    }),
  };
}

function assertApart({ body, shown }, where) {
  for (const l of shown) {
    const [x0, y0, x1, y1] = l.box;
    assert.ok(x0 >= body[0] - 1 && y0 >= body[1] - 1 && x1 <= body[2] + 1 && y1 <= body[3] + 1, `${where}: ${l.text} outside the map`);
  }
  for (let i = 0; i < shown.length; i++)
    for (let j = i + 1; j < shown.length; j++) {
      const [a, b] = [shown[i].box, shown[j].box];
      const overlap = a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
      assert.ok(!overlap, `${where}: "${shown[i].text}" overlaps "${shown[j].text}"`);
    }
}

for (const [width, height] of [
  [1920, 1080],
  [3840, 2160],
]) {
  test(`the map at ${width}×${height}: district polygons, a labelled scale, a legend, labels apart`, async () => {
    const { context, page, errors } = await openPage(browser, env.operator, "screen", { width, height });
    const districts = (await op.cc.getOrgTree({ rootCode: root, depth: 1 })).children;
    const codes = districts.map((d) => d.code).sort();
    await page.waitForSelector(`[data-testid="panel-map"][data-regions="${codes.join(" ")}"][data-cells]:not([data-cells=""])`, { timeout: 20000 });
    assert.notEqual(await page.getAttribute('[data-testid="panel-map"]', "data-map-version"), "");

    // The scale: titled, from 0 to the busiest district's open incidents (summed over its grids).
    const cells = (await op.cc.getGridMap({ areaCode: root })).cells;
    const open = (code) => cells.filter((c) => c.gridCode.startsWith(code)).reduce((n, c) => n + Number(c.openIncidents), 0);
    await waitFor(
      async () => {
        const max = Number(await page.getAttribute('[data-testid="map-scale"]', "data-max"));
        const fresh = (await op.cc.getGridMap({ areaCode: root })).cells;
        const want = Math.max(1, ...codes.map((c) => fresh.filter((x) => x.gridCode.startsWith(c)).reduce((n, x) => n + Number(x.openIncidents), 0)));
        return max === want || max === Math.max(1, ...codes.map(open));
      },
      { message: "the scale's top equals the busiest district" },
    );
    const legend = await page.locator('[data-testid="map-legend"]').innerText();
    for (const words of ["处置中事件数", "有处置中事件", "有超期事件"]) assert.ok(legend.includes(words), `legend: ${legend}`);

    // Every district is labelled with its name and open incidents; no two labels overlap.
    await waitFor(async () => (await page.evaluate(labels)).shown.length === codes.length, { message: "every district labelled" });
    const city = await page.evaluate(labels);
    assertApart(city, `city ${width}×${height}`);
    for (const d of districts) {
      const l = city.shown.find((x) => x.code === d.code);
      assert.ok(l && l.text.includes(d.name), `label of ${d.name}: ${l?.text}`);
    }

    // Inside a district: its outline, its streets as labelled bubbles, still apart.
    const district = env.drillDistrict || codes[0];
    await page.selectOption('[data-testid="area-select"]', district);
    await page.waitForSelector(`[data-testid="panel-map"][data-regions="${district}"][data-area="${district}"]`, { timeout: 20000 });
    const streets = (await op.cc.getOrgTree({ rootCode: district, depth: 1 })).children.map((s) => s.code).sort();
    await waitFor(async () => (await page.evaluate(labels)).all === streets.length, { message: "a label per street" });
    await page.waitForTimeout(500);
    const inside = await page.evaluate(labels);
    assert.ok(inside.shown.length >= Math.min(3, streets.length), `streets labelled: ${inside.shown.length} of ${streets.length}`);
    for (const l of inside.shown) assert.ok(streets.includes(l.code), `${l.code} is a street of ${district}`);
    assertApart(inside, `district ${width}×${height}`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}
