// Shared by the browser tests and the screenshot script: the environment, a node gRPC-web client
// (to compare the page with the API), and a headless Chromium.
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { chromium } from "playwright-core";
import { CommandCenter } from "./gen/whistle/v1/command_center_pb.js";
import { Dispatch } from "./gen/whistle/v1/dispatch_pb.js";
import { Reporting, ReportOutcome } from "./gen/whistle/v1/reporting_pb.js";

export const env = {
  /** The query service's listener (gRPC-web), also serving the console at /. */
  api: process.env.WHISTLE_CONSOLE_URL || "http://127.0.0.1:50051",
  /** Where the page is opened; the same origin as `api` in the product (override for a dev proxy). */
  page: process.env.WHISTLE_CONSOLE_PAGE_URL || process.env.WHISTLE_CONSOLE_URL || "http://127.0.0.1:50051",
  operator: process.env.WHISTLE_OPERATOR_TOKEN,
  viewer: process.env.WHISTLE_VIEWER_TOKEN,
  liaison: process.env.WHISTLE_LIAISON_TOKEN,
  department: process.env.WHISTLE_DEPARTMENT_CODE,
  taskIncident: process.env.WHISTLE_TASK_INCIDENT_ID,
  /** A liaison of a second department of the district, and the department: an assistant (协办). */
  assistLiaison: process.env.WHISTLE_ASSIST_LIAISON_TOKEN,
  assistDepartment: process.env.WHISTLE_ASSIST_DEPARTMENT_CODE,
  /** An operator of the grid's district: the level that decides ledger cases (挂账). */
  districtOperator: process.env.WHISTLE_DISTRICT_OPERATOR_TOKEN,
  grid: process.env.WHISTLE_GRID_TOKEN,
  gridCode: process.env.WHISTLE_GRID_CODE,
  drillDistrict: process.env.WHISTLE_DRILL_DISTRICT,
  drillStreet: process.env.WHISTLE_DRILL_STREET,
  /** 人员管理: a liaison of the district who holds a task, another of the same department, the
   * department and the task's incident. */
  peopleLeaver: process.env.WHISTLE_PEOPLE_LEAVER,
  peopleSuccessor: process.env.WHISTLE_PEOPLE_SUCCESSOR,
  peopleDepartment: process.env.WHISTLE_PEOPLE_DEPARTMENT,
  peopleIncident: process.env.WHISTLE_PEOPLE_INCIDENT_ID,
  /** npm run screenshots: a Party member of the demo grid's community and a leader paired with it. */
  member: process.env.WHISTLE_MEMBER_TOKEN,
  leader: process.env.WHISTLE_LEADER_TOKEN,
  screenshots: process.env.WHISTLE_SCREENSHOT_DIR,
  chromium: process.env.CHROMIUM || "/usr/bin/chromium",
};

export function clients(token) {
  const transport = createGrpcWebTransport({
    baseUrl: env.api,
    httpVersion: "1.1",
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
  });
  return {
    cc: createClient(CommandCenter, transport),
    dispatch: createClient(Dispatch, transport),
    reporting: createClient(Reporting, transport),
  };
}

export async function launch() {
  return chromium.launch({
    executablePath: env.chromium,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A page signed in with `token` through the URL fragment, collecting console errors. */
export async function openPage(browser, token, view, { width = 1920, height = 1080, lang = "zh", mobile = false, base = env.page } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1, isMobile: mobile, hasTouch: mobile, locale: "zh-CN" });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  // Nothing may be loaded from anywhere but the console's own origin.
  const origin = new URL(base).origin;
  const foreign = [];
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith("data:") && !u.startsWith("blob:")) foreign.push(u);
  });
  await page.addInitScript((l) => localStorage.setItem("whistle.lang", l), lang);
  await page.goto(`${base}/#/${view}?token=${encodeURIComponent(token)}`);
  return { context, page, errors, foreign };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value or `timeout` ms pass; returns the last value. */
export async function waitFor(fn, { timeout = 15000, interval = 200, message = "condition" } = {}) {
  const start = Date.now();
  let last, lastErr;
  while (Date.now() - start < timeout) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      lastErr = e;
    }
    await sleep(interval);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${message}${lastErr ? `: ${lastErr.message}` : ""}; last: ${JSON.stringify(last, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`);
}

/** The KPI tiles as numbers, with the area and as_of they show. */
export async function readKpis(page) {
  return page.evaluate(() => {
    const box = document.querySelector('[data-testid="kpis"]');
    const v = (id) => {
      const el = document.querySelector(`[data-testid="${id}-value"]`);
      return el && el.dataset.value !== "" ? Number(el.dataset.value) : null;
    };
    const c = (id) => {
      const el = document.querySelector(`[data-testid="${id}-counts"]`);
      return el && el.dataset.a !== "" ? [Number(el.dataset.a), Number(el.dataset.b)] : null;
    };
    return {
      area: box?.dataset.area ?? "",
      asOf: Number(box?.dataset.asOf || 0),
      reported: v("kpi-reported"),
      open: v("kpi-open"),
      resolved: v("kpi-resolved"),
      overdue: v("kpi-overdue"),
      whistles: v("kpi-whistles"),
      response: v("kpi-response"),
      resolution: v("kpi-resolution"),
      satisfaction: v("kpi-satisfaction"),
      responseCounts: c("kpi-response"),
      resolutionCounts: c("kpi-resolution"),
      satisfactionCounts: c("kpi-satisfaction"),
    };
  });
}

/** GetOverview in the same shape as readKpis. */
export function kpisOf(o) {
  const r = o.rates;
  return {
    area: o.areaCode,
    reported: Number(o.reportedToday),
    open: Number(o.openIncidents),
    resolved: Number(o.resolvedToday),
    overdue: Number(o.overdue),
    whistles: Number(o.whistlesToday),
    response: r?.responseRate ?? 0,
    resolution: r?.resolutionRate ?? 0,
    satisfaction: r?.satisfactionRate ?? 0,
    responseCounts: [Number(r?.acceptedInTime ?? 0), Number(r?.dispatched ?? 0)],
    resolutionCounts: [Number(r?.resolvedInTime ?? 0), Number(r?.due ?? 0)],
    satisfactionCounts: [Number(r?.satisfied ?? 0), Number(r?.followedUp ?? 0)],
  };
}

const FIELDS = ["reported", "open", "resolved", "overdue", "whistles", "response", "resolution", "satisfaction", "responseCounts", "resolutionCounts", "satisfactionCounts"];
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * The tiles agree with GetOverview for `area`: equal to the answer fetched just before or just
 * after reading them (the figures may move between the two on a live stack). Retries until the
 * page has refreshed; returns the tiles and the answers it compared.
 */
export async function expectKpisMatch(page, cc, area, timeout = 20000) {
  let detail;
  return waitFor(
    async () => {
      const before = kpisOf(await cc.getOverview({ areaCode: area }));
      const tiles = await readKpis(page);
      const after = kpisOf(await cc.getOverview({ areaCode: area }));
      if (tiles.area !== area) return (detail = { why: "tiles show another area", tiles }), false;
      const bad = FIELDS.filter((f) => !same(tiles[f], before[f]) && !same(tiles[f], after[f]));
      detail = { bad, tiles, before, after };
      return bad.length === 0 ? { tiles, before, after } : false;
    },
    { timeout, interval: 300, message: `KPI tiles equal to GetOverview(${area}) ${JSON.stringify(detail ?? {})}` },
  );
}

/**
 * A TCP proxy in front of the console's origin whose connections the test can cut, as a network
 * drop would: `cut()` ends every open connection and refuses new ones until `restore()`.
 */
export async function cuttableProxy(target) {
  const net = await import("node:net");
  const { hostname, port } = new URL(target);
  const open = new Set();
  let down = false;
  const server = net.createServer((client) => {
    if (down) return client.destroy();
    const upstream = net.connect(Number(port), hostname);
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      a.pipe(b);
      a.on("error", () => b.destroy());
      a.on("close", () => b.destroy());
    }
    open.add(client).add(upstream);
    client.on("close", () => {
      open.delete(client);
      open.delete(upstream);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  server.unref();
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() {
      down = true;
      for (const s of open) s.destroy();
      open.clear();
    },
    restore() {
      down = false;
    },
    close() {
      this.cut();
      server.close();
    },
  };
}

let seq = 0;
/**
 * A new incident whose task waits on the liaison's department: a petition filed by the grid worker
 * (each at its own place, so none joins another as a duplicate), whistled by the city operator —
 * with `assisting` departments (协办) beside the liaison's, the lead (主办), if given.
 */
export async function whistledTask(title, { assisting = [] } = {}) {
  const op = clients(env.operator);
  const uuid = () => crypto.randomUUID();
  seq += 1;
  const grid = clients(env.grid);
  const answer = await grid.reporting.submitReport({
    report: {
      reportId: `e2e-wb-${Date.now()}-${seq}`,
      category: "petition.letters",
      title,
      description: "e2e",
      urgency: 1,
      // Random over ~20 km, as several test files file reports (each with its own seq).
      location: { lat: 39.6 + seq * 0.02 + Math.random() * 0.2, lon: 109.9 + seq * 0.02 + Math.random() * 0.2, address: "" },
      contactPhone: "13800138000",
    },
  });
  const id = answer.incident?.incidentId;
  if (!id || answer.outcome !== ReportOutcome.INCIDENT) throw new Error(`no new incident for ${title}: outcome ${answer.outcome}`);
  const detail = await op.cc.getIncident({ incidentId: id });
  await op.dispatch.escalate({
    commandId: uuid(),
    incidentId: id,
    expectedVersion: detail.incident.version,
    body: { case: "escalate", value: { note: "e2e", departmentCodes: [env.department], assistingDepartmentCodes: assisting } },
  });
  const tasks = (await op.cc.getIncident({ incidentId: id })).tasks;
  const taskOf = (code) => {
    const task = tasks.find((t) => t.state.departmentCode === code);
    if (!task) throw new Error(`no task for ${code}`);
    return String(task.state.taskId);
  };
  return { id, taskId: taskOf(env.department), assists: assisting.map(taskOf) };
}


/**
 * A PNG of `width`×`height` (a gradient with a block in the middle) as a camera would hand the
 * form a file: the form compresses it on the device before it is uploaded.
 */
export async function pngOf(width, height, seed = 0) {
  const { deflateSync } = await import("node:zlib");
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      const block = Math.abs(x - width / 2) < width / 6 && Math.abs(y - height / 2) < height / 6;
      raw[row + 1 + x * 3] = block ? 230 : (x * 255) / width;
      raw[row + 2 + x * 3] = block ? 60 : (y * 255) / height;
      raw[row + 3 + x * 3] = (seed * 40 + 90) % 256;
    }
  }
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** The width and height a JPEG's frame header (SOF0–SOF2) gives, or null. */
export function jpegSize(bytes) {
  const b = Buffer.from(bytes);
  if (b[0] !== 0xff || b[1] !== 0xd8) return null;
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1];
    const len = b.readUInt16BE(i + 2);
    if (marker >= 0xc0 && marker <= 0xc2) return { height: b.readUInt16BE(i + 5), width: b.readUInt16BE(i + 7) };
    i += 2 + len;
  }
  return null;
}
