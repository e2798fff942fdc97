// 指挥大屏: the command screen. Every panel follows the selected area (`area`).
import { useContext, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { cc } from "./api";
import { t, getLang, eventKindLabel, levelLabel } from "./i18n";
import { ScoreboardKind, type Overview, type OverdueItem, type SequencedEvent } from "./gen/whistle/v1/command_center_pb.js";
import { useLoad, useNow, tsMs, fmtTime, fmtCountdown, pct, num, categoryName, throttle, type Loaded } from "./util";
import { Chart } from "./chart";
import { EventFeed, type FeedStatus } from "./events";
import { orgs, orgName, loadOrg, loadDepartments, areaChain, departments, deptName, isCity, placeName, onOrgNames, withNames } from "./org";
import { useHealth } from "./connection";
import { rejectedText } from "./errors";
import { LoadNote } from "./notes";
import { Panel } from "./panel";
import { MapPanel } from "./map";
import { Drawer, type DrawerTarget } from "./drawer";
import { NavLinks, type Chrome } from "./main";
import { ScaleContext, useScale } from "./scale";
import { useCatalogue } from "./catalogue";
import { MonthlyReport } from "./monthly";
import { PartyPanel, MarkTags, marksOf, movesParty } from "./party";
import type { PartyMarkedIncident } from "./gen/whistle/v1/command_center_pb.js";

const C = {
  cyan: "#39c5ff",
  blue: "#2f7bff",
  gold: "#ffd166",
  red: "#ff5d6c",
  green: "#3ee6a5",
  text: "#cfe6ff",
  dim: "#7fa6c9",
  line: "rgba(57,197,255,0.15)",
};

const NO_MARKS: PartyMarkedIncident[] = [];

export function Screen(p: Chrome) {
  const root = p.session.areaCode || "150600";
  const [area, setArea] = useState(root);
  const [orgVersion, setOrgVersion] = useState(0);
  const [bump, setBump] = useState(0);
  const [drawer, setDrawer] = useState<DrawerTarget | null>(null);
  const [events, setEvents] = useState<SequencedEvent[]>([]);
  const [feedStatus, setFeedStatus] = useState<FeedStatus>("connecting");
  const [feedArea, setFeedArea] = useState("");
  const [partyBump, setPartyBump] = useState(0);

  // Names: the tree two levels below the token's area, then the children of each area visited.
  useEffect(() => {
    loadOrg(root, 2).then(() => setOrgVersion((v) => v + 1), () => {});
  }, [root]);
  useEffect(() => {
    loadDepartments(root);
    return onOrgNames(() => setOrgVersion((v) => v + 1));
  }, []);
  useEffect(() => {
    for (const c of areaChain(root, area))
      loadOrg(c, 1).then(() => setOrgVersion((v) => v + 1), () => {});
  }, [area]);

  // The live feed for the selected area; relevant events refresh the panels promptly.
  useEffect(() => {
    setEvents([]);
    const refresh = throttle(() => setBump((b) => b + 1), 800);
    // The Party panel moves on offers and endorsements only; trailing, so the last one counts.
    const refreshParty = throttle(() => setPartyBump((b) => b + 1), 800);
    const feed = new EventFeed(area, {
      onEvent: (e) => {
        setEvents((list) => [e, ...list].slice(0, 60));
        refresh();
        if (movesParty(e.event?.kind ?? "")) refreshParty();
      },
      onGap: () => setBump((b) => b + 1),
      onStatus: (s) => setFeedStatus(s),
    }).start();
    setFeedArea(area);
    return () => feed.stop();
  }, [area]);

  const overview = useLoad((signal) => cc.getOverview({ areaCode: area }, { signal }), area, 5000);
  useEffect(() => {
    if (bump) overview.reload();
  }, [bump]);
  const party = useLoad((signal) => cc.getPartyPanel({ areaCode: area }, { signal }), area, 15000);
  useEffect(() => {
    if (partyBump) party.reload();
  }, [partyBump]);
  // Only the selected area's answer marks anything (a reload for the previous area may land late).
  const partyHere = party.data && party.data.areaCode === area ? party.data : undefined;
  const marks = useMemo(() => marksOf(partyHere), [partyHere]);

  const drill = (code: string) => {
    if (!code || code.length > 12) return;
    setArea(code);
  };

  const scale = useScale();
  // Set through the DOM (the page's CSP allows no inline style attribute in HTML).
  const scaleVars = { "--px": `${scale.px}px`, "--zoom": String(Math.max(1, scale.px * 1.3)) };

  return (
    <ScaleContext.Provider value={scale}>
    <div class="screen" data-testid="screen" data-area={area} data-layout={scale.layout} data-px={scale.px} style={scaleVars}>
      <header class="titlebar">
        <AreaNav root={root} area={area} onArea={drill} orgVersion={orgVersion} />
        <div class="title">
          <span class="title-city">{orgName(root) || t("city")}</span>
          <span class="title-main">{t("appTitle")}</span>
        </div>
        <div class="titlebar-right">
          <MonthlyReport area={area} />
          <Clock />
          <LiveDot status={feedStatus} />
          <NavLinks {...p} />
        </div>
      </header>
      <Kpis overview={overview} area={area} onLedger={() => setDrawer({ kind: "ledger", area, name: orgName(area) || (isCity(area) ? t("allCity") : "") })} />
      <main class="grid3">
        <section class="col">
          <CategoryPanel overview={overview} area={area} />
          <TrendPanel area={area} bump={bump} />
          <OverduePanel area={area} bump={bump} overdue={overview.data?.overdue} marks={marks} onOpen={(id) => setDrawer({ kind: "incident", id })} />
        </section>
        <section class="col col-mid">
          <MapPanel
            area={area}
            bump={bump}
            overview={overview}
            marked={partyHere?.marked ?? NO_MARKS}
            orgVersion={orgVersion}
            onDrill={drill}
            onGrid={(code, name) => setDrawer({ kind: "grid", code, name })}
            onOpen={(id) => setDrawer({ kind: "incident", id })}
          />
          <Ticker events={events} status={feedStatus} area={feedArea} onOpen={(id) => setDrawer({ kind: "incident", id })} />
        </section>
        <section class="col">
          <PartyPanel party={party} area={area} />
          <RankingPanel kind="streets" area={area} bump={bump} onDrill={drill} />
          <RankingPanel kind="departments" area={area} bump={bump} onDrill={drill} />
        </section>
      </main>
      {drawer && (
        <Drawer
          target={drawer}
          session={p.session}
          onClose={() => setDrawer(null)}
          onOpen={(id) => setDrawer({ kind: "incident", id })}
          onChanged={() => setBump((b) => b + 1)}
        />
      )}
    </div>
    </ScaleContext.Provider>
  );
}

function Clock() {
  const now = useNow(1000);
  const d = new Date(now);
  const date = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  const wk = ["日", "一", "二", "三", "四", "五", "六"][d.getDay()];
  return (
    <div class="clock" data-testid="clock">
      <span class="clock-time">{fmtTime(now)}</span>
      <span class="clock-date">
        {date} {getLang() === "zh" ? `星期${wk}` : d.toLocaleDateString("en", { weekday: "short" })}
      </span>
    </div>
  );
}

/**
 * The connection as it is: 实时 (green) only while the live feed runs and calls succeed; amber when
 * either fails; red once nothing has got through for a while. The tooltip says when data last came.
 */
export function LiveDot({ status }: { status: FeedStatus }) {
  const { health, since } = useHealth(status);
  const label = t(`health_${health}`);
  return (
    <span class={`live live-${health}`} data-testid="live-status" data-status={health} title={since ? t("updatedAt", { time: fmtTime(since) }) : label} role="status">
      <i />
      {label}
    </span>
  );
}

function AreaNav(p: { root: string; area: string; onArea: (c: string) => void; orgVersion: number }) {
  const chain = areaChain(p.root, p.area);
  const node = orgs.get(p.area);
  const children = p.area.length < 12 ? node?.children ?? [] : [];
  return (
    <div class="areanav" data-testid="area-nav">
      {chain.map((c, i) => (
        <span class="crumb-wrap">
          {i > 0 && <span class="sep">›</span>}
          <button class={`crumb ${c === p.area ? "current" : ""}`} data-testid={`crumb-${c}`} onClick={() => p.onArea(c)}>
            {orgName(c) || (isCity(c) ? t("allCity") : "…")}
          </button>
        </span>
      ))}
      {children.length > 0 && (
        <select
          data-testid="area-select"
          aria-label={t("chooseSub")}
          value=""
          onChange={(e) => {
            const v = (e.target as HTMLSelectElement).value;
            if (v) p.onArea(v);
          }}
        >
          <option value="">{t("chooseSub")} ▾</option>
          {children.map((c) => (
            <option value={c}>{orgName(c)}</option>
          ))}
        </select>
      )}
    </div>
  );
}

/** A ledger case's age at a glance: hours under a day, whole days after. */
/** A ledger age in whole days, hours under a day, minutes under an hour (the demo policy runs its
 * review dates 60× faster, so its cases are minutes old). */
function age(days: number): string {
  if (days >= 1) return t("ageDays", { n: Math.floor(days) });
  const hours = days * 24;
  return hours >= 1 ? t("ageHours", { n: Math.floor(hours) }) : t("ageMinutes", { n: Math.floor(hours * 60) });
}

function Kpis({ overview, area, onLedger }: { overview: Loaded<Overview>; area: string; onLedger: () => void }) {
  const o = overview.data;
  const r = o?.rates;
  const tiles: { id: string; label: string; value: number | undefined; cls?: string }[] = [
    { id: "kpi-reported", label: t("kpiReported"), value: o && num(o.reportedToday) },
    { id: "kpi-open", label: t("kpiOpen"), value: o && num(o.openIncidents) },
    { id: "kpi-resolved", label: t("kpiResolved"), value: o && num(o.resolvedToday), cls: "good" },
    { id: "kpi-overdue", label: t("kpiOverdue"), value: o && num(o.overdue), cls: "bad" },
    { id: "kpi-whistles", label: t("kpiWhistles"), value: o && num(o.whistlesToday), cls: "warn" },
  ];
  const rates: { id: string; label: string; rate?: number; a?: number; b?: number; sub: "rateResponseSub" | "rateResolutionSub" | "rateSatisfactionSub" }[] = [
    { id: "kpi-response", label: t("responseRate"), rate: r?.responseRate, a: num(r?.acceptedInTime), b: num(r?.dispatched), sub: "rateResponseSub" },
    { id: "kpi-resolution", label: t("resolutionRate"), rate: r?.resolutionRate, a: num(r?.resolvedInTime), b: num(r?.due), sub: "rateResolutionSub" },
    { id: "kpi-satisfaction", label: t("satisfactionRate"), rate: r?.satisfactionRate, a: num(r?.satisfied), b: num(r?.followedUp), sub: "rateSatisfactionSub" },
  ];
  const ok = o && o.areaCode === area ? area : overview.key;
  // 挂账: the cases the area shelved (out of 超期), with how long they have waited; opens the list.
  const ledger = o?.ledger;
  const ledgerCount = o ? num(ledger?.count) : undefined;
  const ledgerTitle = o ? t("ledgerAgeTitle", { n: ledgerCount ?? 0, oldest: age(ledger?.oldestDays ?? 0), median: age(ledger?.medianDays ?? 0) }) : t("kpiLedger");
  return (
    <section class="kpis" data-testid="kpis" data-area={o ? ok : ""} data-as-of={o ? tsMs(o.asOf) : ""}>
      {tiles.map((k) => (
        <div class={`kpi ${k.cls ?? ""}`} data-testid={k.id}>
          <div class="kpi-label">{k.label}</div>
          <div class="kpi-value" data-testid={`${k.id}-value`} data-value={k.value ?? ""}>
            {k.value === undefined ? "—" : k.value.toLocaleString()}
          </div>
        </div>
      ))}
      {/* A button holds phrasing content only: spans laid out as the other tiles' divs. */}
      <button class="kpi kpi-ledger" data-testid="kpi-ledger" title={ledgerTitle} onClick={onLedger}>
        <span class="kpi-label">{t("kpiLedger")}</span>
        <span class="ledger-row">
          <span class="kpi-value" data-testid="kpi-ledger-value" data-value={ledgerCount ?? ""}>
            {ledgerCount === undefined ? "—" : ledgerCount.toLocaleString()}
          </span>
          {o && ledgerCount! > 0 && (
            <span class="ledger-age" data-testid="kpi-ledger-age" data-oldest={ledger?.oldestDays} data-median={ledger?.medianDays}>
              <span>{t("ledgerOldest", { d: age(ledger?.oldestDays ?? 0) })}</span>
              <span>{t("ledgerMedian", { d: age(ledger?.medianDays ?? 0) })}</span>
            </span>
          )}
        </span>
      </button>
      {rates.map((k) => (
        <div class="kpi rate" data-testid={k.id} title={t(k.sub, { a: k.a ?? 0, b: k.b ?? 0 })}>
          <div class="kpi-label">
            {k.label} <small>{t("last30days")}</small>
          </div>
          <div class="kpi-value" data-testid={`${k.id}-value`} data-value={k.rate ?? ""}>
            {k.rate === undefined || !o ? "—" : pct(k.rate)}
          </div>
          <div class="kpi-sub" data-testid={`${k.id}-counts`} data-a={o ? k.a : ""} data-b={o ? k.b : ""}>
            {o ? t(k.sub, { a: k.a ?? 0, b: k.b ?? 0 }) : ""}
          </div>
          <div class="bar">
            <i style={{ width: `${Math.min(100, (k.rate ?? 0) * 100)}%` }} />
          </div>
        </div>
      ))}
      <div class="kpi-note">
        <LoadNote l={overview} testid="kpis" />
      </div>
    </section>
  );
}

function CategoryPanel({ overview, area }: { overview: Loaded<Overview>; area: string }) {
  const o = overview.data;
  const { px } = useContext(ScaleContext);
  const catalogue = useCatalogue();
  const option = useMemo(() => {
    const rows = [...(o?.byCategory ?? [])].sort((a, b) => num(b.count) - num(a.count)).slice(0, 10).reverse();
    return {
      grid: { left: 8 * px, right: 48 * px, top: 6 * px, bottom: 6 * px, containLabel: true },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, textStyle: { fontSize: 20 * px } },
      xAxis: { type: "value", splitLine: { lineStyle: { color: C.line } }, axisLabel: { color: C.dim, fontSize: 18 * px } },
      yAxis: {
        type: "category",
        data: rows.map((r) => categoryName(r.key)),
        axisLabel: { color: C.text, fontSize: 20 * px, width: 170 * px, overflow: "truncate" },
        axisLine: { lineStyle: { color: C.line } },
      },
      series: [
        {
          type: "bar",
          data: rows.map((r) => num(r.count)),
          barWidth: 14 * px,
          itemStyle: { borderRadius: [0, 6, 6, 0], color: { type: "linear", x: 0, y: 0, x2: 1, y2: 0, colorStops: [{ offset: 0, color: "#1b4f9c" }, { offset: 1, color: C.cyan }] } },
          label: { show: true, position: "right", color: C.text, fontSize: 20 * px },
        },
      ],
    };
  }, [o, px, catalogue]);
  return (
    <Panel title={t("pCategory")} testid="panel-category" area={o ? overview.key : ""} load={overview} class="h-category" extra={<span class="muted small">{t("open")}</span>}>
      {o && o.byCategory.length === 0 ? <div class="empty">{t("noData")}</div> : <Chart option={option} testid="chart-category" />}
    </Panel>
  );
}

function TrendPanel({ area, bump }: { area: string; bump: number }) {
  const trend = useLoad((signal) => cc.getTrend({ areaCode: area, hours: 24 }, { signal }), area, 30000);
  const { px } = useContext(ScaleContext);
  const last = useRef(0);
  useEffect(() => {
    // Events arrive several a second: the hourly trend needs no more than one load per 5 s.
    if (bump && Date.now() - last.current > 5000) {
      last.current = Date.now();
      trend.reload();
    }
  }, [bump]);
  const option = useMemo(() => {
    const b = trend.data?.buckets ?? [];
    const hours = b.map((x) => {
      const d = new Date(tsMs(x.start));
      return `${String(d.getHours()).padStart(2, "0")}:00`;
    });
    const area = (c: string) => ({ type: "linear", x: 0, y: 0, x2: 0, y2: 1, colorStops: [{ offset: 0, color: c + "66" }, { offset: 1, color: c + "00" }] });
    return {
      grid: { left: 8 * px, right: 12 * px, top: 34 * px, bottom: 4 * px, containLabel: true },
      tooltip: { trigger: "axis", textStyle: { fontSize: 20 * px } },
      legend: { top: 0, right: 0, itemWidth: 24 * px, itemHeight: 14 * px, textStyle: { color: C.text, fontSize: 20 * px }, data: [t("reported"), t("resolved")] },
      xAxis: { type: "category", data: hours, boundaryGap: false, axisLabel: { color: C.dim, interval: 5, fontSize: 18 * px }, axisLine: { lineStyle: { color: C.line } } },
      yAxis: { type: "value", splitLine: { lineStyle: { color: C.line } }, axisLabel: { color: C.dim, fontSize: 18 * px } },
      series: [
        { name: t("reported"), type: "line", smooth: true, symbol: "none", data: b.map((x) => num(x.reported)), lineStyle: { color: C.cyan, width: 3 * px }, itemStyle: { color: C.cyan }, areaStyle: { color: area(C.cyan) } },
        { name: t("resolved"), type: "line", smooth: true, symbol: "none", data: b.map((x) => num(x.resolved)), lineStyle: { color: C.green, width: 3 * px }, itemStyle: { color: C.green }, areaStyle: { color: area(C.green) } },
      ],
    };
  }, [trend.data, px]);
  return (
    <Panel title={t("pTrend")} testid="panel-trend" area={trend.data ? trend.key : ""} load={trend} class="h-trend">
      <Chart option={option} testid="chart-trend" />
    </Panel>
  );
}

/** The late items the panel reads: the 40 of each kind it shows, with room for the tasks of each. */
const OVERDUE_PAGE = 500;

/**
 * 超期督办. One definition of 超期 on the whole screen: an open incident past its resolve deadline
 * (SLA) — what the 超期 tile counts (`GetOverview.overdue`). The badge shows that figure, so it
 * stays right where the list is cut (ListOverdue returns the OVERDUE_PAGE longest late); each incident
 * once; a department late to report in or to resolve is named under its incident, and incidents
 * whose only lateness is a department's are listed after them under 部门超时, with their own count.
 */
function OverduePanel({ area, bump, overdue, marks, onOpen }: { area: string; bump: number; overdue?: bigint; marks: Map<string, PartyMarkedIncident>; onOpen: (id: string) => void }) {
  const list = useLoad((signal) => cc.listOverdue({ areaCode: area, pageSize: OVERDUE_PAGE }, { signal }), area, 10000);
  const last = useRef(0);
  useEffect(() => {
    if (bump && Date.now() - last.current > 3000) {
      last.current = Date.now();
      list.reload();
    }
  }, [bump]);
  const now = useNow(1000);
  const groups = useMemo(() => {
    const byIncident = new Map<string, { id: string; title: string; street: string; sla?: OverdueItem; tasks: OverdueItem[] }>();
    for (const it of list.data?.items ?? []) {
      let g = byIncident.get(it.incidentId);
      if (!g) byIncident.set(it.incidentId, (g = { id: it.incidentId, title: it.title, street: it.streetCode, tasks: [] }));
      if (it.taskId) g.tasks.push(it);
      else g.sla = it;
    }
    const all = [...byIncident.values()];
    return { sla: all.filter((g) => g.sla), tasksOnly: all.filter((g) => !g.sla) };
  }, [list.data]);
  const item = (g: (typeof groups.sla)[number], kind: "sla" | "task") => {
    // The SLA's lateness for an overdue incident, else the department's that is latest.
    const due = tsMs(g.sla?.dueAt ?? g.tasks[0]?.dueAt);
    const cd = fmtCountdown(due, now);
    const depts = g.tasks.map((x) => x.departmentName || deptName(x.departmentCode) || t("someDepartment"));
    const mark = marks.get(g.id);
    return (
      <li
        data-testid="overdue-item"
        data-kind={kind}
        data-incident={g.id}
        data-street={g.street}
        data-endorsed={mark?.endorsed ? "1" : "0"}
        data-proactive={mark?.proactive ? "1" : "0"}
        onClick={() => onOpen(g.id)}
      >
        <div class="ov-main">
          <span class="ov-title">
            <MarkTags mark={mark} />
            {g.title}
          </span>
          <span class="ov-meta">
            {orgName(g.street)}
            {g.sla ? ` · ${levelLabel(g.sla.level)}` : ""}
            {depts.length ? ` · ${t("deptLate")}：${depts.join("、")}` : ""}
          </span>
        </div>
        <div class={`ov-late ${cd.late ? "late" : "countdown"}`} data-testid="overdue-late">
          {cd.text}
        </div>
      </li>
    );
  };
  return (
    <Panel
      title={t("pOverdue")}
      testid="panel-overdue"
      area={list.data ? list.key : ""}
      load={list}
      class="grow"
      extra={
        <span class="badge bad" data-testid="overdue-count" title={t("overdueDefinition")}>
          {overdue !== undefined ? num(overdue) : groups.sla.length}
        </span>
      }
    >
      {list.data && groups.sla.length + groups.tasksOnly.length === 0 && <div class="empty">{t("noOverdue")}</div>}
      <ul class="overdue-list">
        {groups.sla.slice(0, 40).map((g) => item(g, "sla"))}
        {groups.tasksOnly.length > 0 && (
          <li class="ov-section" data-testid="overdue-dept-section">
            {t("deptLate")} <span class="badge warn" data-testid="overdue-dept-count">{groups.tasksOnly.length}</span>
          </li>
        )}
        {groups.tasksOnly.slice(0, 40).map((g) => item(g, "task"))}
      </ul>
    </Panel>
  );
}

function RankingPanel({ kind, area, bump, onDrill }: { kind: "streets" | "departments"; area: string; bump: number; onDrill: (c: string) => void }) {
  // Departments are ranked for the city or a district; streets down to a street.
  // Below a district both boards show the district's ranking, the selected street highlighted.
  const boardArea = area.length > 6 ? area.slice(0, 6) : area;
  const mark = area.length >= 9 ? area.slice(0, 9) : "";
  const board = useLoad(
    (signal) =>
      cc.getScoreboard({ areaCode: boardArea, kind: kind === "streets" ? ScoreboardKind.STREETS : ScoreboardKind.DEPARTMENTS }, { signal }).then((b) => {
        if (kind === "departments") for (const r of b.rows) departments.set(r.code, r.name);
        return b;
      }),
    boardArea,
    30000,
  );
  const last = useRef(0);
  useEffect(() => {
    if (bump && Date.now() - last.current > 15000) {
      last.current = Date.now();
      board.reload();
    }
  }, [bump]);
  const rows = board.data?.rows ?? [];
  return (
    <Panel
      title={t(kind === "streets" ? "pStreets" : "pDepartments")}
      testid={`panel-${kind}`}
      area={board.data ? area : ""}
      load={board}
      class="grow"
      extra={
        <span class="muted board-area" data-testid={`${kind}-board-area`} data-board-area={boardArea} data-month={board.data?.month ?? ""}>
          {orgName(boardArea) || (isCity(boardArea) ? t("allCity") : "")} · {board.data?.month ?? ""}
          {boardArea !== area ? ` ${t("districtDeptNote")}` : ""}
        </span>
      }
    >
      {board.data && rows.length === 0 && <div class="empty">{t("noData")}</div>}
      {rows.length > 0 && (
        <table class="rank">
          <colgroup>
            <col class="c-rank" />
            <col />
            <col class="c-score" />
            <col class="c-rate" />
            <col class="c-rate" />
            <col class="c-rate" />
          </colgroup>
          <thead>
            <tr>
              <th>{t("rank")}</th>
              <th>{t("name")}</th>
              <th class="num">{t("score")}</th>
              <th class="num">{t("responseRate")}</th>
              <th class="num">{t("resolutionRate")}</th>
              <th class="num">{t("satisfactionRate")}</th>
            </tr>
          </thead>
          <tbody>
            {rows.slice(0, 30).map((r) => (
              <tr
                data-testid={`${kind}-row`}
                data-code={r.code}
                data-rank={r.rank}
                data-score={r.compositeScore}
                data-rates={[r.rates?.responseRate ?? 0, r.rates?.resolutionRate ?? 0, r.rates?.satisfactionRate ?? 0].join(" ")}
                data-counts={[r.rates?.acceptedInTime, r.rates?.dispatched, r.rates?.resolvedInTime, r.rates?.due, r.rates?.satisfied, r.rates?.followedUp].map(num).join(" ")}
                data-sample={num(r.sample)}
                data-small-sample={r.smallSample ? "1" : "0"}
                class={`${kind === "streets" ? "clickable" : ""} ${r.code === mark ? "marked" : ""} ${r.smallSample ? "small-sample" : ""}`}
                onClick={() => kind === "streets" && onDrill(r.code)}
                title={`${r.name}: ${t("rateResponseSub", { a: num(r.rates?.acceptedInTime), b: num(r.rates?.dispatched) })}; ${t("rateResolutionSub", { a: num(r.rates?.resolvedInTime), b: num(r.rates?.due) })}; ${t("rateSatisfactionSub", { a: num(r.rates?.satisfied), b: num(r.rates?.followedUp) })}`}
              >
                <td>
                  <span class={`rank-no r${r.rank}`}>{r.rank}</span>
                </td>
                <td class="rank-name">
                  {r.name}
                  {r.smallSample && (
                    <span class="sample-tag" data-testid="small-sample" title={t("smallSampleTitle", { n: num(r.sample), min: board.data?.minSample ?? 0 })}>
                      {t("smallSample")}
                    </span>
                  )}
                </td>
                <td class="num strong">{r.compositeScore.toFixed(1)}</td>
                <td class="num">{pct(r.rates?.responseRate ?? 0)}</td>
                <td class="num">{pct(r.rates?.resolutionRate ?? 0)}</td>
                <td class="num">{pct(r.rates?.satisfactionRate ?? 0)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Panel>
  );
}

function eventTitle(e: SequencedEvent): string {
  const ev = e.event;
  if (!ev) return "";
  switch (ev.body.case) {
    case "incidentReported": {
      const r = ev.body.value;
      return `[${categoryName(r.report?.category ?? "", r.categoryName)}] ${r.report?.title ?? ""}`;
    }
    case "incidentChanged": {
      const c = ev.body.value;
      return `「${c.title}」${c.note ? ` — ${withNames(c.note)}` : ""}`;
    }
    case "reportAttached":
      return `${ev.body.value.report?.title ?? ""} (${ev.body.value.reportCount})`;
    case "clusterAlert": {
      const a = ev.body.value;
      return `${orgName(a.communityCode)} ${categoryName(a.category, a.categoryName)} × ${a.reports}`;
    }
    case "reportRejected":
      return rejectedText(ev.body.value.reason);
    case "offerChanged": {
      const o = ev.body.value;
      return `${o.offerKind === "wish" ? t("partyWish") : ""}「${o.title}」${orgName(ev.communityCode)}${o.note ? ` — ${o.note}` : ""}`;
    }
    default:
      return "";
  }
}

function kindClass(kind: string): string {
  if (kind === "incident.reported") return "k-new";
  if (kind.includes("whistled") || kind === "cluster.alert" || kind === "device.flagged" || kind.includes("overdue") || kind.includes("supervised") || kind === "incident.endorsed" || kind === "report.rejected") return "k-alert";
  if (kind.includes("resolved") || kind.includes("closed") || kind.includes("verified") || kind === "task.accepted" || kind === "offer.confirmed") return "k-good";
  return "k-info";
}

function Ticker(p: { events: SequencedEvent[]; status: FeedStatus; area: string; onOpen: (id: string) => void }) {
  return (
    <Panel title={t("pTicker")} testid="panel-ticker" area={p.area} class="grow" extra={<LiveDot status={p.status} />}>
      {p.events.length === 0 && <div class="empty">{t("waitingEvents")}</div>}
      <ul class="ticker" data-testid="ticker">
        {p.events.map((e) => {
          const ev = e.event!;
          return (
            <li
              key={String(e.sequence)}
              class={`${kindClass(ev.kind)} ${ev.incidentId ? "clickable" : ""}`}
              data-testid="ticker-item"
              data-seq={String(e.sequence)}
              data-kind={ev.kind}
              data-incident={ev.incidentId}
              data-grid={ev.gridCode}
              onClick={() => ev.incidentId && p.onOpen(ev.incidentId)}
            >
              <span class="tk-time">{fmtTime(tsMs(ev.occurredAt))}</span>
              <span class="tk-kind">{eventKindLabel(ev.kind)}</span>
              <span class="tk-place">{placeName(ev.districtCode, ev.streetCode)}</span>
              <span class="tk-title">{eventTitle(e)}</span>
            </li>
          );
        })}
      </ul>
    </Panel>
  );
}
