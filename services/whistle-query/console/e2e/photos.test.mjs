// Photos (issue 19, item 7): a photo taken in the report form is compressed on the device, stored
// through UploadPhoto and shown in the workbench's task detail and the screen's drawer as 整改前; the
// liaison's 办结 takes an 整改后 photo shown beside it. Photos are personal data: a viewer sees none,
// and every photo shown is in the access log. Same environment as console.test.mjs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { env, clients, launch, openPage, waitFor, pngOf, jpegSize } from "./helpers.mjs";
import { PhotoKind } from "./gen/whistle/v1/command_center_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";

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

/** Every photo of the incident shown on the page has loaded (a decoded image, not a broken one). */
/** The photos the incident's detail shows once `count` of them have loaded (a detail opened again
 * may first show what it held before and then its refreshed copy). */
async function shownPhotos(page, incidentId, count = 1) {
  return waitFor(
    () =>
      page.evaluate(
        ([id, count]) => {
          const box = document.querySelector(`[data-testid="incident"][data-incident="${id}"]`);
          const imgs = [...(box?.querySelectorAll('[data-testid="incident-photo"]') ?? [])];
          if (imgs.length < count || imgs.some((i) => !i.complete || i.naturalWidth === 0)) return null;
          return imgs.map((i) => ({ kind: i.dataset.kind, photo: i.dataset.photo, width: i.naturalWidth }));
        },
        [incidentId, count],
      ),
    { timeout: 20000, message: `the incident's photos shown` },
  );
}

test("photos: taken in the form, compressed on the device, shown before/after in the workbench and the drawer", async () => {
  // The grid worker photographs the problem: a 2400×1800 camera image.
  const form = await openPage(browser, env.grid, "report", { width: 390, height: 844, mobile: true });
  const page = form.page;
  await page.waitForSelector('[data-testid="group-petition"]', { timeout: 20000 });
  await page.click('[data-testid="group-petition"]');
  await page.click('[data-testid="category-petition.letters"]');
  const title = `照片上报 ${Date.now()}`;
  await page.fill('[data-testid="report-title"]', title);
  await page.setInputFiles('[data-testid="report-photos-input"]', { name: "problem.png", mimeType: "image/png", buffer: await pngOf(2400, 1800, 1) });
  await waitFor(() => page.evaluate(() => document.querySelector('[data-testid="photo-thumb"]')?.naturalWidth > 0), { message: "the thumbnail" });
  await page.click('[data-testid="report-submit"]');
  const outcome = await page.waitForSelector('[data-testid="report-outcome"][data-incident]:not([data-incident=""])', { timeout: 20000 });
  const incidentId = await outcome.getAttribute("data-incident");
  assert.equal(await page.locator('[data-testid="photo-thumb"]').count(), 0, "the form is cleared for the next report");

  // What was stored is the device's JPEG, its longest side at most 1,600 px.
  let detail = await op.cc.getIncident({ incidentId });
  const before = detail.photos.filter((p) => p.kind === PhotoKind.BEFORE);
  assert.equal(before.length, 1, "one photo before");
  const stored = await op.cc.getPhoto({ incidentId, photoId: before[0].photoId });
  assert.equal(stored.mediaType, "image/jpeg");
  const size = jpegSize(stored.data);
  assert.ok(size && Math.max(size.width, size.height) === 1600 && size.width > size.height, `compressed to 1600 px: ${JSON.stringify(size)}`);
  assert.ok(form.errors.length === 0, form.errors.join("\n"));
  await form.context.close();

  // The street whistles it to the liaison's department, which reports in.
  await op.dispatch.escalate({
    commandId: uuid(),
    incidentId,
    expectedVersion: detail.incident.version,
    body: { case: "escalate", value: { note: "e2e", departmentCodes: [env.department] } },
  });
  detail = await op.cc.getIncident({ incidentId });
  const task = detail.tasks.find((t) => t.state.departmentCode === env.department);
  await li.dispatch.accept({ commandId: uuid(), incidentId, expectedVersion: detail.incident.version, body: { case: "accept", value: { taskId: String(task.state.taskId), note: "" } } });

  // The command screen is watching (its live feed will carry the resolution).
  const screen = await openPage(browser, env.operator, "screen");
  await screen.page.waitForSelector('[data-testid="kpis"][data-area]:not([data-area=""])', { timeout: 20000 });

  // The liaison resolves in the workbench with an after photo.
  const wb = await openPage(browser, env.liaison, "workbench");
  const row = wb.page.locator(`[data-testid="wb-task"][data-incident="${incidentId}"]`);
  await row.locator('[data-testid="wb-resolve"]').waitFor({ timeout: 20000 });
  await row.locator('[data-testid="wb-open"]').click();
  const beforeShown = await shownPhotos(wb.page, incidentId);
  assert.deepEqual(beforeShown.map((p) => [p.kind, p.photo]), [["BEFORE", before[0].photoId]], "the task detail shows the report's photo");
  await wb.page.click('[data-testid="drawer-close"]');
  await row.locator('[data-testid="wb-resolve"]').click();
  const dialog = wb.page.locator('[data-testid="resolve-dialog"]');
  await dialog.locator('[data-testid="dialog-note"]').fill("已修复，见整改后照片");
  await wb.page.setInputFiles('[data-testid="dialog-photos-input"]', { name: "after.png", mimeType: "image/png", buffer: await pngOf(1200, 900, 2) });
  await waitFor(() => wb.page.evaluate(() => document.querySelector('[data-testid="resolve-dialog"] [data-testid="photo-thumb"]')?.naturalWidth > 0), { message: "the after photo's thumbnail" });
  await dialog.locator('[data-testid="dialog-submit"]').click();
  await dialog.waitFor({ state: "detached", timeout: 20000 });
  await row.hover();

  detail = await op.cc.getIncident({ incidentId });
  const after = detail.photos.filter((p) => p.kind === PhotoKind.AFTER);
  assert.equal(after.length, 1, "one photo after");
  assert.equal(after[0].taskId, String(task.state.taskId));

  // The workbench's task detail and the command screen's drawer show both, before and after. The
  // resolved task leaves the liaison's list, but not from under the pointer (the list holds still).
  const shownIn = async (page) => {
    const shown = await shownPhotos(page, incidentId, 2);
    assert.deepEqual(
      shown.map((p) => [p.kind, p.photo]),
      [
        ["BEFORE", before[0].photoId],
        ["AFTER", after[0].photoId],
      ],
    );
  };
  await row.locator('[data-testid="wb-open"]').click();
  await shownIn(wb.page);
  assert.deepEqual(wb.errors, []);
  await wb.context.close();

  const tick = screen.page.locator(`[data-testid="ticker-item"][data-incident="${incidentId}"]`).first();
  await tick.waitFor({ timeout: 30000 });
  await tick.click();
  await screen.page.waitForSelector(`[data-testid="incident"][data-incident="${incidentId}"]`);
  await shownIn(screen.page);
  assert.deepEqual(screen.errors, []);
  await screen.context.close();

  // Personal data: every photo shown is in the access log, and a viewer sees none.
  const log = await op.cc.listContactAccess({ incidentId, pageSize: 100 });
  const reads = log.accesses.filter((a) => a.door === "GetPhoto");
  const seenBy = reads.map((a) => `${a.role} ${a.photoId === before[0].photoId ? "before" : a.photoId === after[0].photoId ? "after" : a.photoId}`).sort();
  for (const who of ["liaison before", "liaison after", "operator before", "operator after"]) assert.ok(seenBy.includes(who), `${who} logged: ${seenBy} of ${JSON.stringify(log.accesses.map((a) => [a.door, a.role, a.incidentId]))}`);
  if (env.viewer) {
    const viewer = clients(env.viewer);
    const seen = await viewer.cc.getIncident({ incidentId }).catch(() => null);
    if (seen) {
      assert.equal(seen.photos.length, 0, "a viewer sees no photos");
      await assert.rejects(viewer.cc.getPhoto({ incidentId, photoId: before[0].photoId }), (e) => ConnectError.from(e).code === Code.PermissionDenied);
    }
  }
});
