// The command screen at the resolutions it meets: a 1920×1080 wall read from across the room, a
// 3840×2160 wall (the same design, twice the pixels) and a 1366×768 laptop (a layout that scrolls).
// Text is measured over every visible character of every text node; panels are measured as boxes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, launch, openPage, waitFor } from "./helpers.mjs";

let browser;

before(async () => {
  assert.ok(env.operator, "WHISTLE_OPERATOR_TOKEN is required");
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The screen at `width`×`height`, with its panels filled. */
async function wall(width, height) {
  const s = await openPage(browser, env.operator, "screen", { width, height });
  await s.page.waitForSelector('[data-testid="kpis"][data-area]:not([data-area=""])', { timeout: 20000 });
  await s.page.waitForSelector('[data-testid="panel-streets"][data-area]:not([data-area=""])', { timeout: 20000 });
  await s.page.waitForSelector('[data-testid="panel-map"][data-cells]:not([data-cells=""])', { timeout: 20000 });
  await s.page.waitForSelector('[data-testid="panel-overdue"][data-area]:not([data-area=""])', { timeout: 20000 });
  await waitFor(() => s.page.locator('[data-testid="ticker-item"], [data-testid="panel-ticker"] .empty').count(), { message: "the ticker" });
  return s;
}

/**
 * Every visible character on the page with its font size: a character counts when its box lies
 * inside the window and inside every ancestor that clips (an ellipsis or a scrolled-off row hides
 * characters), and its element is rendered and not transparent.
 */
function visibleCharacters() {
  const clipOf = (el) => {
    let box = { l: 0, t: 0, r: innerWidth, b: innerHeight };
    for (let a = el; a && a !== document.documentElement; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.overflowX !== "visible" || s.overflowY !== "visible") {
        const r = a.getBoundingClientRect();
        box = { l: Math.max(box.l, r.left), t: Math.max(box.t, r.top), r: Math.min(box.r, r.right), b: Math.min(box.b, r.bottom) };
      }
    }
    return box;
  };
  const sizes = new Map();
  const samples = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!el || !node.data.trim()) continue;
    if (!el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    const clip = clipOf(el);
    let count = 0;
    for (let i = 0; i < node.data.length; i++) {
      if (/\s/.test(node.data[i])) continue;
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const r = range.getBoundingClientRect();
      const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
      if (r.width > 0 && cx > clip.l && cx < clip.r && cy > clip.t && cy < clip.b) count++;
    }
    if (!count) continue;
    sizes.set(size, (sizes.get(size) ?? 0) + count);
    samples.push({ size, count, text: node.data.trim().slice(0, 30), cls: el.className });
  }
  return { sizes: [...sizes.entries()].sort((a, b) => a[0] - b[0]), samples };
}

/** Share of characters at or above `px`, the smallest size, and the smallest texts (for messages). */
function summarize({ sizes, samples }, px) {
  const total = sizes.reduce((n, [, c]) => n + c, 0);
  const big = sizes.filter(([s]) => s >= px - 0.01).reduce((n, [, c]) => n + c, 0);
  const smallest = sizes.length ? sizes[0][0] : 0;
  const small = samples.filter((x) => x.size < px - 0.01).sort((a, b) => a.size - b.size).slice(0, 12);
  return { total, share: total ? big / total : 0, smallest, small, sizes };
}

/** Panel and tile boxes: [testid or class, width, height]. */
function panelBoxes() {
  return [...document.querySelectorAll('[data-testid^="panel-"], .kpi')].map((el) => {
    const r = el.getBoundingClientRect();
    return [el.dataset.testid || el.className, Math.round(r.width), Math.round(r.height)];
  });
}

for (const [width, height, scale] of [
  [1920, 1080, 1],
  [3840, 2160, 2],
]) {
  test(`the wall at ${width}×${height}: 90 % of the characters at ${24 * scale} px or more, none under ${16 * scale} px, no panel under its minimum`, async () => {
    const { context, page, errors } = await wall(width, height);
    assert.equal(await page.getAttribute('[data-testid="screen"]', "data-layout"), "wall");
    const text = summarize(await page.evaluate(visibleCharacters), 24 * scale);
    const detail = JSON.stringify({ share: text.share, smallest: text.smallest, sizes: text.sizes, small: text.small });
    assert.ok(text.total > 300, `too little text to judge (${text.total} characters): ${detail}`);
    assert.ok(text.share >= 0.9, `only ${(text.share * 100).toFixed(1)} % of ${text.total} characters at ${24 * scale} px or more: ${detail}`);
    assert.ok(text.smallest >= 16 * scale - 0.01, `characters at ${text.smallest} px: ${detail}`);

    // The wall fills the window without scrolling, and every panel keeps a readable size.
    const fit = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, sh: document.documentElement.scrollHeight }));
    assert.ok(fit.sw <= width && fit.sh <= height, `the wall overflows the window: ${JSON.stringify(fit)}`);
    for (const [name, w, h] of await page.evaluate(panelBoxes)) {
      const min = name.startsWith("panel-") ? [380, 200] : [170, 110];
      assert.ok(w >= min[0] * scale && h >= min[1] * scale, `${name} is ${w}×${h}, under ${min[0] * scale}×${min[1] * scale}`);
    }
    // The map's chart fills its panel (at 4K as at 1080p, not a small picture in a big frame).
    const map = await page.evaluate(() => {
      const body = document.querySelector('[data-testid="panel-map"] .panel-body').getBoundingClientRect();
      const canvas = document.querySelector('[data-testid="chart-map"] canvas').getBoundingClientRect();
      return { body: [body.width, body.height], canvas: [canvas.width, canvas.height] };
    });
    assert.ok(map.canvas[0] >= map.body[0] * 0.9 && map.canvas[1] >= map.body[1] * 0.6, `map canvas ${JSON.stringify(map)}`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}

test("the laptop at 1366×768: its own layout, the page scrolls, no panel collapses", async () => {
  const { context, page, errors } = await wall(1366, 768);
  assert.equal(await page.getAttribute('[data-testid="screen"]', "data-layout"), "laptop");
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  assert.ok(height > 768 * 1.5, `the laptop page is ${height} px tall: it should lay the panels out and scroll`);
  await page.mouse.move(683, 400);
  await page.mouse.wheel(0, 1200);
  await waitFor(() => page.evaluate(() => scrollY > 600), { message: "the page scrolls" });
  const fit = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(fit <= 1366, `the laptop page is ${fit} px wide: no sideways scrolling`);
  for (const [name, w, h] of await page.evaluate(panelBoxes)) {
    const min = name.startsWith("panel-") ? [400, 240] : [150, 90];
    assert.ok(w >= min[0] && h >= min[1], `${name} is ${w}×${h}, under ${min[0]}×${min[1]}`);
  }
  // Nothing smaller than a laptop reads comfortably.
  const text = summarize(await page.evaluate(visibleCharacters), 16);
  assert.ok(text.smallest >= 14 - 0.01, `characters at ${text.smallest} px: ${JSON.stringify(text.small)}`);
  // The overdue list, once at the bottom of a squeezed column, has room for its rows.
  const overdue = await page.evaluate(() => document.querySelector('[data-testid="panel-overdue"]').getBoundingClientRect().height);
  assert.ok(overdue >= 300, `the overdue panel is ${overdue} px tall`);
  assert.deepEqual(errors, []);
  await context.close();
});
