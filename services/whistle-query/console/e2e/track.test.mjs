// Browser tests of the resident's page (/track, served by the query service, no account): at a
// phone's size in Chinese, a case counting down live to its deadline, an overdue and supervised
// one (已超期 N 小时，已督办), the resident's 已解决 + 满意 reaching dispatch (the Rust side of
// it/tracking.rs checks the incident closed and the satisfaction rate), and a wrong code showing
// nothing. Run by `the_residents_page_works_in_a_real_browser`, which files the cases and passes
// their codes; skipped in a run without them.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, launch, waitFor } from "./helpers.mjs";

const codes = {
  open: process.env.WHISTLE_TRACK_OPEN,
  late: process.env.WHISTLE_TRACK_LATE,
  resolved: process.env.WHISTLE_TRACK_RESOLVED,
};
const skip = codes.open ? false : "run by it/tracking.rs (WHISTLE_TRACK_OPEN and the others unset)";

let browser;

before(async () => {
  if (skip) return;
  assert.ok(codes.late && codes.resolved, "WHISTLE_TRACK_LATE and WHISTLE_TRACK_RESOLVED are required");
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The page for `code` on a phone (390×844, touch, zh-CN), collecting errors and foreign requests. */
async function phone(code) {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: "zh-CN",
    timezoneId: "Asia/Shanghai",
  });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  const origin = new URL(env.page).origin;
  const foreign = [];
  page.on("request", (r) => !r.url().startsWith(origin) && foreign.push(r.url()));
  const response = await page.goto(`${env.page}/track${code ? `#${code}` : ""}`);
  return { context, page, errors, foreign, response };
}

const text = (page, id) => page.locator(`#${id}`).innerText();

/** Nothing wider than the phone: no sideways scrolling. */
async function fitsThePhone(page) {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.scrollingElement.scrollWidth,
    width: window.innerWidth,
  }));
  assert.ok(scroll <= width, `the page is ${scroll} px wide on a ${width} px phone`);
}

test("an open case counts down live to its deadline, in Chinese, with no personal data", { skip }, async () => {
  const { context, page, errors, foreign, response } = await phone(codes.open);
  assert.equal(response.headers()["content-security-policy"]?.includes("script-src 'self'"), true);
  assert.equal(await page.getAttribute("html", "lang"), "zh-CN");
  await page.waitForSelector("#case:not([hidden])");
  assert.equal(await text(page, "status"), "处理中");
  assert.equal(await text(page, "category"), "室内温度不达标/停暖");
  assert.match(await text(page, "handlers"), /社区|居委会|网格/);
  const first = await text(page, "countdown");
  assert.match(first, /^距办理期限还有 (\d+ 天 )?\d+ 小时 \d+ 分 \d+ 秒$/);
  // Live: the seconds move without a reload.
  await waitFor(async () => (await text(page, "countdown")) !== first, { message: "the countdown to tick" });
  const steps = await page.locator("#steps li").allInnerTexts();
  assert.ok(steps[0].endsWith("已受理"), steps.join(" | "));
  assert.equal(await page.locator("#answer").isHidden(), true, "nothing to answer before the resolution");
  const body = await page.locator("body").innerText();
  for (const personal of ["3号楼", "居民反映", "138", "gw-"]) assert.ok(!body.includes(personal), `${personal} on the page`);
  await fitsThePhone(page);
  assert.deepEqual(errors, []);
  assert.deepEqual(foreign, []);
  await context.close();
});

test("an overdue case says 已超期 N 小时，已督办 with N from its deadline", { skip }, async () => {
  const { context, page, errors } = await phone(codes.late);
  await page.waitForSelector("#countdown.late");
  const api = await (await context.request.post(`${env.page}/track/api/case`, { data: { code: codes.late } })).json();
  assert.equal(api.supervised, true);
  const late = await text(page, "countdown");
  const match = late.match(/^已超期 (\d+) 小时，已督办$/);
  assert.ok(match, late);
  const hours = (new Date(api.now) - new Date(api.due_at)) / 3600000;
  assert.ok(Math.abs(Number(match[1]) - Math.floor(hours)) <= 1, `${late} for ${hours} h late`);
  assert.ok(Number(match[1]) >= 5, late);
  const steps = await page.locator("#steps li").allInnerTexts();
  assert.ok(steps.some((s) => s.endsWith("已督办")), steps.join(" | "));
  await fitsThePhone(page);
  assert.deepEqual(errors, []);
  await context.close();
});

test("the resident answers 已解决 and 满意 on a resolved case; the page says it was recorded", { skip }, async () => {
  const { context, page, errors } = await phone(codes.resolved);
  await page.waitForSelector("#answer:not([hidden])");
  assert.equal(await text(page, "status"), "已办结，待回访");
  assert.equal(await text(page, "countdown"), "已办结");
  await page.getByRole("button", { name: "已解决" }).tap();
  await page.getByRole("button", { name: "满意", exact: true }).tap();
  await page.waitForSelector("#answered:not([hidden])");
  assert.equal(await text(page, "answered"), "您的评价：已解决，满意。感谢您的反馈！");
  assert.equal(await text(page, "status"), "已结案");
  assert.equal(await page.locator("#answer").isHidden(), true);
  const steps = await page.locator("#steps li").allInnerTexts();
  assert.ok(steps.some((s) => s.endsWith("已回访")), steps.join(" | "));
  assert.deepEqual(errors, []);
  await context.close();
});

test("a wrong code shows nothing but that it is unknown", { skip }, async () => {
  const { context, page } = await phone("");
  await page.fill("#code", "ZZZZ-ZZZZ-ZZZZ");
  await page.getByRole("button", { name: "查询" }).tap();
  await page.waitForSelector("#message:not([hidden])");
  assert.equal(await text(page, "message"), "查询码不存在或已过期，请核对后重试");
  assert.equal(await page.locator("#case").isHidden(), true);
  await fitsThePhone(page);
  await context.close();
});
