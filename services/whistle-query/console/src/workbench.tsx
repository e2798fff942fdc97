// 部门工作台: a liaison's department tasks with countdowns; accept (签收), return (退单), resolve (办结),
// and ask for a later deadline (申请延期) while a task is being handled and before its deadline;
// before reporting in, dispute a task (异议) that is not the department's, proposing who should have it.
// An assisting department (协办) submits its part (提交协办意见) instead of resolving; the lead's 办结
// waits, and says so, until every part is in. A department handling a case no deadline can meet
// proposes it for the long-term ledger (申请挂账).
//
// The list holds still: rows keep their places while the pointer or the keyboard is in the list or a
// dialog is open; new tasks are announced and changes of order applied when the liaison pauses (or
// asks). Each action has its own column, offered only when the server says the task takes it
// (`TaskItem.verbs`, the rule dispatch applies).
import { useEffect, useRef, useState } from "preact/hooks";
import { cc, dispatch } from "./api";
import { t, taskStatusLabel, urgencyLabel, incidentStatusLabel, RETURN_REASON, returnReasonLabel, LEDGER_REASON, ledgerReasonLabel } from "./i18n";
import { ScoreboardKind, type TaskItem } from "./gen/whistle/v1/command_center_pb.js";
import { TaskRole, TaskStatus } from "./gen/whistle/v1/common_pb.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { useLoad, useNow, tsMs, fmtDateTime, fmtCountdown, pct, num, categoryName, throttle } from "./util";
import { useCatalogue, categoryRules } from "./catalogue";
import { EventFeed, type FeedStatus } from "./events";
import { loadOrg, placeName, onOrgNames, deptName } from "./org";
import { NavLinks, type Chrome } from "./main";
import { LiveDot } from "./screen";
import { LoadNote } from "./notes";
import { CommandDialog, type Fresh } from "./dialog";
import { Drawer, assistParts } from "./drawer";

type Verb = "accept" | "return" | "resolve" | "submit_assist" | "request_extension" | "dispute" | "propose_ledger";
const VERBS: Verb[] = ["accept", "return", "resolve", "submit_assist"];
/** A dispute's dialog carries the departments it may propose (those serving the incident's grid). */
type Dialog = { verb: Verb; item: TaskItem; departments?: { value: string; label: string }[] };
type Filter = { text: string; status: "" | "waiting" | "accepted"; category: string; due: "" | "soon" | "late" };
/** "Due soon": the deadline within this. */
const SOON_MS = 3600 * 1000;

const keyOf = (it: TaskItem) => `${it.incident!.incidentId}/${it.task!.taskId}`;
/** After this long without the pointer or focus in the list, new tasks and a new order are applied. */
const SETTLE_MS = 3000;

export function Workbench(p: Chrome) {
  const s = p.session;
  useCatalogue(); // category names in the list and the filter
  const [status, setStatus] = useState<FeedStatus>("connecting");
  const [msg, setMsg] = useState<string>("");
  const [dialog, setDialog] = useState<Dialog | null>(null);
  const [filter, setFilter] = useState<Filter>({ text: "", status: "", category: "", due: "" });
  const [detail, setDetail] = useState<string | null>(null);
  const [, setOrgV] = useState(0);
  const now = useNow(1000);

  const tasks = useLoad((signal) => cc.listTasks({ departmentCode: s.departmentCode, pageSize: 200 }, { signal }), s.departmentCode, 5000);
  const board = useLoad(
    (signal) => cc.getScoreboard({ areaCode: s.areaCode, kind: ScoreboardKind.DEPARTMENTS }, { signal }),
    s.areaCode,
    30000,
  );

  useEffect(() => {
    loadOrg(s.areaCode.length === 6 ? s.areaCode : s.areaCode.slice(0, 6), 2).then(() => setOrgV((v) => v + 1), () => {});
    const offNames = onOrgNames(() => setOrgV((v) => v + 1));
    const refresh = throttle(() => tasks.reload(), 500);
    const feed = new EventFeed(s.areaCode, {
      onEvent: (e) => {
        const ts = e.event?.body.case === "incidentChanged" ? e.event.body.value.tasks : [];
        if (e.event?.kind.startsWith("task.") || ts.some((x) => x.departmentCode === s.departmentCode)) refresh();
      },
      onGap: () => tasks.reload(),
      onStatus: setStatus,
    }).start();
    return () => {
      feed.stop();
      offNames();
    };
  }, []);

  // The rows as shown: their order, and the latest data of each (a row the server no longer lists
  // stays, greyed, until the list is settled).
  const [order, setOrder] = useState<string[]>([]);
  const shown = useRef(new Map<string, TaskItem>());
  const serverKeys = (tasks.data?.tasks ?? []).map(keyOf);
  const latest = new Map((tasks.data?.tasks ?? []).map((it) => [keyOf(it), it]));
  for (const [k, it] of latest) shown.current.set(k, it);
  const fresh = serverKeys.filter((k) => !order.includes(k));
  const gone = order.filter((k) => !latest.has(k));
  const reordered = order.filter((k) => latest.has(k)).join() !== serverKeys.filter((k) => order.includes(k)).join();
  const unsettled = fresh.length > 0 || gone.length > 0 || reordered;

  const hover = useRef(false);
  const focusIn = useRef(false);
  const lastTouch = useRef(0);
  const settle = () => {
    shown.current = new Map(latest);
    setOrder(serverKeys);
  };
  // The first answer is shown as it comes; later ones wait for a pause.
  useEffect(() => {
    if (tasks.data && order.length === 0 && fresh.length > 0) settle();
  }, [tasks.data]);
  useEffect(() => {
    if (!unsettled || dialog || hover.current || focusIn.current) return;
    if (Date.now() - lastTouch.current >= SETTLE_MS) settle();
  }, [now, tasks.data]);

  const items = tasks.data?.tasks ?? [];
  const mine = board.data?.rows.find((r) => r.code === s.departmentCode);
  const toAccept = items.filter((i) => i.task?.status === TaskStatus.DISPATCHED || i.task?.status === TaskStatus.SUPERVISED).length;
  const inHand = items.filter((i) => i.task?.status === TaskStatus.ACCEPTED).length;

  const touch = () => (lastTouch.current = Date.now());

  // What the liaison filters on: words in the title, description or place; the status; the
  // category; a deadline within the hour or passed.
  const deadline = (it: TaskItem) => {
    const tk = it.task!;
    const waiting = tk.status === TaskStatus.DISPATCHED || tk.status === TaskStatus.SUPERVISED;
    return tsMs(waiting ? tk.acceptDueAt : tk.resolveDueAt);
  };
  const matches = (it: TaskItem) => {
    const inc = it.incident!;
    const tk = it.task!;
    const q = filter.text.trim().toLowerCase();
    if (q && ![inc.title, it.description, placeName(inc.districtCode, inc.streetCode, inc.communityCode)].some((x) => x.toLowerCase().includes(q))) return false;
    if (filter.status === "waiting" && !(tk.status === TaskStatus.DISPATCHED || tk.status === TaskStatus.SUPERVISED)) return false;
    if (filter.status === "accepted" && tk.status !== TaskStatus.ACCEPTED) return false;
    if (filter.category && inc.category !== filter.category) return false;
    const dl = deadline(it);
    if (filter.due === "late" && !(dl > 0 && dl <= now)) return false;
    if (filter.due === "soon" && !(dl > now && dl - now <= SOON_MS)) return false;
    return true;
  };
  const categories = [...new Map(items.map((it) => [it.incident!.category, categoryName(it.incident!.category, it.incident!.categoryName)])).entries()];
  const setF = (f: Partial<Filter>) => {
    setFilter({ ...filter, ...f });
    // A filter is the liaison's own doing: the list may change at once.
    settle();
  };

  async function refreshFor(item: TaskItem, verb: Verb): Promise<Fresh> {
    const d = await cc.getIncident({ incidentId: item.incident!.incidentId });
    tasks.reload();
    const task = d.tasks.find((x) => x.state?.taskId === item.task!.taskId);
    const handling = task?.state?.status === TaskStatus.ACCEPTED;
    // 延期申请 is offered on a lead's task handled before its deadline with no request waiting; 申请挂账
    // on a task handled while the incident has no ledger proposal or entry; 办结 once no part is owed.
    const extendable = handling && task?.state?.role !== TaskRole.ASSIST && !d.pendingExtension && tsMs(d.incident!.dueAt) > Date.now();
    const allowed =
      verb === "request_extension"
        ? extendable
        : verb === "propose_ledger"
          ? handling && !d.ledger && !d.incident!.ledgered
          : !!task?.verbs.includes(verb) && (verb !== "resolve" || assistParts(d).owed.length === 0);
    return {
      version: d.incident!.version,
      allowed: !!allowed,
      state: task ? taskStatusLabel(task.state!.status) : incidentStatusLabel(d.incident!.status),
    };
  }

  return (
    <div class="page workbench" data-testid="workbench">
      <header class="topbar">
        <div class="brand">
          <span class="emblem sm">哨</span>
          <span>
            {t("workbench")} · <b data-testid="dept-name">{tasks.data?.departmentName || s.departmentName}</b>
          </span>
        </div>
        <LiveDot status={status} />
        <NavLinks {...p} />
      </header>
      <main>
        <section class="wb-stats">
          <div class="stat">
            <div class="kpi-label">{t("countDispatched")}</div>
            <div class="kpi-value warn" data-testid="wb-to-accept">{toAccept}</div>
          </div>
          <div class="stat">
            <div class="kpi-label">{t("countAccepted")}</div>
            <div class="kpi-value" data-testid="wb-in-hand">{inHand}</div>
          </div>
          <div
            class="stat wide"
            data-testid="dept-rates"
            data-month={board.data?.month ?? ""}
            data-rank={mine?.rank ?? ""}
            data-small-sample={mine?.smallSample ? "1" : "0"}
            data-counts={mine ? [mine.rates?.acceptedInTime, mine.rates?.dispatched, mine.rates?.resolvedInTime, mine.rates?.due, mine.rates?.satisfied, mine.rates?.followedUp].map(num).join(" ") : ""}
          >
            <div class="kpi-label">
              {t("deptRates")} {board.data?.month ? `· ${board.data.month}` : ""} {mine ? `· ${t("rank")} ${mine.rank}/${board.data?.rows.length}` : ""}
              {mine?.smallSample && (
                <span class="sample-tag" data-testid="small-sample" title={t("smallSampleTitle", { n: num(mine.sample), min: board.data?.minSample ?? 0 })}>
                  {t("smallSample")}
                </span>
              )}
            </div>
            <LoadNote l={board} testid="dept-rates" />
            <div class="rates3">
              {[
                { k: "responseRate", v: mine?.rates?.responseRate, sub: t("rateResponseSub", { a: num(mine?.rates?.acceptedInTime), b: num(mine?.rates?.dispatched) }), id: "dept-response" },
                { k: "resolutionRate", v: mine?.rates?.resolutionRate, sub: t("rateResolutionSub", { a: num(mine?.rates?.resolvedInTime), b: num(mine?.rates?.due) }), id: "dept-resolution" },
                { k: "satisfactionRate", v: mine?.rates?.satisfactionRate, sub: t("rateSatisfactionSub", { a: num(mine?.rates?.satisfied), b: num(mine?.rates?.followedUp) }), id: "dept-satisfaction" },
                { k: "composite", v: mine?.compositeScore, sub: "30% / 35% / 35%", id: "dept-composite" },
              ].map((r) => (
                <div class="rate3" data-testid={r.id} data-value={r.v ?? ""}>
                  <div class="muted small">{t(r.k as "composite")}</div>
                  <div class="big">{r.v === undefined ? "—" : r.k === "composite" ? r.v.toFixed(1) : pct(r.v)}</div>
                  <div class="muted small">{mine ? r.sub : t("noData")}</div>
                </div>
              ))}
            </div>
          </div>
        </section>
        {msg && (
          // A toast, not a line above the list: nothing pushes the rows down after an action.
          <div class="ok-msg toast" data-testid="action-ok" role="status">
            {msg}
          </div>
        )}
        <section class="panel wb-list">
          <div class="panel-head">
            <h2 class="panel-title">{t("myTasks")}</h2>
            <span aria-live="polite" data-testid="wb-announce">
              {unsettled && (
                <button class="link" data-testid="wb-apply" onClick={settle}>
                  {fresh.length > 0 ? t("newTasks", { n: fresh.length }) : t("listChanged")} · {t("showNow")}
                </button>
              )}
            </span>
            <LoadNote l={tasks} testid="tasks" />
            <button class="link" onClick={() => tasks.reload()}>
              {t("refresh")}
            </button>
          </div>
          <div class="wb-filters" role="search" data-testid="wb-filters">
            <input type="search" aria-label={t("search")} placeholder={t("searchPh")} value={filter.text} data-testid="wb-search" onInput={(e) => setF({ text: (e.target as HTMLInputElement).value })} />
            <select aria-label={t("status")} value={filter.status} data-testid="wb-filter-status" onChange={(e) => setF({ status: (e.target as HTMLSelectElement).value as Filter["status"] })}>
              <option value="">{t("allStatuses")}</option>
              <option value="waiting">{t("countDispatched")}</option>
              <option value="accepted">{t("countAccepted")}</option>
            </select>
            <select aria-label={t("category")} value={filter.category} data-testid="wb-filter-category" onChange={(e) => setF({ category: (e.target as HTMLSelectElement).value })}>
              <option value="">{t("allCategories")}</option>
              {categories.map(([code, name]) => (
                <option value={code}>{name}</option>
              ))}
            </select>
            <select aria-label={t("deadline")} value={filter.due} data-testid="wb-filter-due" onChange={(e) => setF({ due: (e.target as HTMLSelectElement).value as Filter["due"] })}>
              <option value="">{t("anyDeadline")}</option>
              <option value="soon">{t("dueSoon")}</option>
              <option value="late">{t("overdueTag")}</option>
            </select>
          </div>
          <div class="panel-body">
            {tasks.data && order.length === 0 && items.length === 0 && <div class="empty">{t("noTasks")}</div>}
            <table
              class="tasks wide"
              data-testid="task-table"
              onPointerEnter={() => ((hover.current = true), touch())}
              onPointerLeave={() => ((hover.current = false), touch())}
              onPointerMove={touch}
              onFocusIn={() => ((focusIn.current = true), touch())}
              onFocusOut={() => ((focusIn.current = false), touch())}
            >
              {order.length > 0 && (
                <thead>
                  <tr>
                    <th>{t("title")}</th>
                    <th>{t("category")}</th>
                    <th>{t("place")}</th>
                    <th>{t("status")}</th>
                    <th>{t("deadline")}</th>
                    {VERBS.map((v) => (
                      <th class="act-col">{t(v)}</th>
                    ))}
                    <th class="act-col">{t("request_extension")}</th>
                    <th class="act-col">{t("dispute")}</th>
                    <th class="act-col">{t("propose_ledger")}</th>
                  </tr>
                </thead>
              )}
              <tbody>
                {order.map((k) => {
                  const it = latest.get(k) ?? shown.current.get(k);
                  if (!it || !matches(it)) return null;
                  const out = !latest.has(k);
                  const tk = it.task!;
                  const inc = it.incident!;
                  const waiting = tk.status === TaskStatus.DISPATCHED || tk.status === TaskStatus.SUPERVISED;
                  const accepted = tk.status === TaskStatus.ACCEPTED;
                  const assists = tk.role === TaskRole.ASSIST;
                  // A ledger case's deadlines stop: no countdown, nothing late.
                  const ledgered = inc.ledgered;
                  const dl = tsMs(waiting ? tk.acceptDueAt : tk.resolveDueAt);
                  const cd = dl > 0 && !ledgered ? fmtCountdown(dl, now) : null;
                  // The lead's 办结 waits while assisting parts are owed (dispatch refuses it then).
                  const owed = !assists && accepted && it.partsOwed.length > 0 ? { owed: it.partsOwed, total: it.assisting } : null;
                  return (
                    <tr key={k} data-testid="wb-task" data-incident={inc.incidentId} data-task={String(tk.taskId)} data-status={tk.status} data-out={out ? "1" : ""} class={`${cd?.late && !out ? "row-late" : ""} ${out ? "row-out" : ""}`}>
                      <td>
                        <button class="link title-link" data-testid="wb-open" onClick={() => setDetail(inc.incidentId)}>
                          {inc.title}
                        </button>
                        <div class="muted small clamp">{it.description}</div>
                      </td>
                      <td>
                        {categoryName(inc.category, inc.categoryName)}
                        <div class={`small u${inc.urgency}`}>{urgencyLabel(inc.urgency)}</div>
                      </td>
                      <td class="small">{placeName(inc.districtCode, inc.streetCode, inc.communityCode)}</td>
                      <td>
                        <span class={`tag role-tag ${assists ? "assist" : "lead"}`} data-testid="wb-role" data-role={assists ? "assist" : "lead"}>
                          {t(assists ? "taskAssist" : "taskLead")}
                        </span>{" "}
                        <span class={`tstatus t${tk.status}`}>{out ? t("taskOut") : taskStatusLabel(tk.status)}</span>
                        <div class="muted small">{incidentStatusLabel(inc.status)}</div>
                        {ledgered ? (
                          <div class="pending-msg small" data-testid="wb-ledgered">
                            {t("ledgeredTag")}
                          </div>
                        ) : (
                          it.ledger && (
                            <div class="pending-msg small" data-testid="wb-ledger-pending">
                              {t("ledgerPendingTag")}
                            </div>
                          )
                        )}
                      </td>
                      <td>
                        {!out && ledgered ? (
                          <>
                            <div class="muted" data-testid="wb-countdown" data-late="">
                              {t("ledgerStopped")}
                            </div>
                            {it.ledger?.reviewAt && <div class="muted small">{t("ledgerReviewOn", { date: fmtDateTime(tsMs(it.ledger.reviewAt)) })}</div>}
                          </>
                        ) : !out && (waiting || accepted) && cd ? (
                          <div class={cd.late ? "late" : "countdown"} data-testid="wb-countdown" data-late={cd.late ? "1" : ""}>
                            <small>{t(waiting ? "reportIn" : assists ? "partBy" : "resolveBy")}</small> {cd.text}
                          </div>
                        ) : (
                          <span class="muted">—</span>
                        )}
                        {!ledgered && <div class="muted small">{fmtDateTime(dl)}</div>}
                        {assists && !waiting && !ledgered && <div class="muted small" data-testid="wb-part-due">{t("partDue")}</div>}
                      </td>
                      {VERBS.map((v) => (
                        <td class="act-col">
                          {!out && it.verbs.includes(v) && (
                            <button
                              class={v === "accept" ? "primary" : v === "resolve" || v === "submit_assist" ? "good" : ""}
                              data-testid={`wb-${v}`}
                              disabled={v === "resolve" && !!owed}
                              title={v === "resolve" && owed ? t("waitingAssistTitle", { names: owed.owed.join("、") }) : undefined}
                              onClick={() => {
                                setMsg("");
                                setDialog({ verb: v, item: it });
                              }}
                            >
                              {t(v)}
                            </button>
                          )}
                          {!out && v === "resolve" && owed && (
                            <div class="small waiting-assist" data-testid="wb-waiting-assist" data-owed={owed.owed.length} data-total={owed.total}>
                              {t("waitingAssist", { done: owed.total - owed.owed.length, total: owed.total })}
                            </div>
                          )}
                        </td>
                      ))}
                      <td class="act-col">
                        {!out && accepted && !assists && !ledgered && !cd?.late && (
                          <button
                            data-testid="wb-request_extension"
                            onClick={() => {
                              setMsg("");
                              setDialog({ verb: "request_extension", item: it });
                            }}
                          >
                            {t("request_extension")}
                          </button>
                        )}
                      </td>
                      <td class="act-col">
                        {!out && it.verbs.includes("dispute") && (
                          <button
                            data-testid="wb-dispute"
                            onClick={() => {
                              setMsg("");
                              cc.listDepartments({ areaCode: inc.gridCode }).then(
                                (r) =>
                                  setDialog({
                                    verb: "dispute",
                                    item: it,
                                    departments: r.departments.filter((x) => x.code !== tk.departmentCode).map((x) => ({ value: x.code, label: x.name })),
                                  }),
                                (e) => setMsg(String(e?.message ?? e)),
                              );
                            }}
                          >
                            {t("dispute")}
                          </button>
                        )}
                      </td>
                      <td class="act-col">
                        {!out && accepted && !ledgered && !it.ledger && (
                          <button
                            data-testid="wb-propose_ledger"
                            onClick={() => {
                              setMsg("");
                              setDialog({ verb: "propose_ledger", item: it });
                            }}
                          >
                            {t("propose_ledger")}
                          </button>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </section>
      </main>
      {detail && <Drawer target={{ kind: "incident", id: detail }} session={s} onClose={() => setDetail(null)} onOpen={setDetail} onChanged={() => tasks.reload()} />}
      {dialog && (
        <CommandDialog
          title={`${t(dialog.verb)} · ${dialog.item.incident!.title}`}
          submitLabel={t(dialog.verb)}
          testid={`${dialog.verb}-dialog`}
          version={dialog.item.incident!.version}
          note={
            dialog.verb === "accept"
              ? { label: t("acceptNote"), required: false, max: 1000 }
              : dialog.verb === "request_extension" || dialog.verb === "dispute" || dialog.verb === "propose_ledger"
                ? { label: t(dialog.verb === "dispute" ? "disputeReason" : dialog.verb === "propose_ledger" ? "ledgerNote" : "extensionReason"), required: true, max: 1000 }
                : dialog.verb === "submit_assist"
                  ? { label: t("submitAssistNote"), required: true, max: 2000 }
                  : { label: t(dialog.verb === "return" ? "returnNote" : "resolveNote"), required: true, max: dialog.verb === "return" ? 1000 : 2000 }
          }
          intro={
            dialog.verb === "request_extension"
              ? t("extensionIntro", { due: fmtDateTime(tsMs(dialog.item.task!.resolveDueAt)) })
              : dialog.verb === "dispute"
                ? t("disputeIntro")
                : dialog.verb === "submit_assist"
                  ? t("submitAssistIntro", { due: fmtDateTime(tsMs(dialog.item.task!.resolveDueAt)) })
                  : dialog.verb === "propose_ledger"
                    ? t("ledgerIntro", { who: dialog.item.departmentName || deptName(dialog.item.task!.departmentCode) || t("someDepartment") })
                    : undefined
          }
          departments={dialog.verb === "dispute" ? dialog.departments : undefined}
          departmentsLabel={dialog.verb === "dispute" ? t("disputeTo") : undefined}
          until={
            dialog.verb === "request_extension"
              ? { label: t("extensionUntil"), after: tsMs(dialog.item.task!.resolveDueAt) }
              : dialog.verb === "propose_ledger"
                ? { label: t("ledgerReviewAt"), after: Date.now() }
                : undefined
          }
          photos={dialog.verb === "resolve" ? { label: t("afterPhotos"), required: categoryRules(dialog.item.incident!.category).afterPhotoRequired } : undefined}
          reasons={
            dialog.verb === "return"
              ? Object.keys(RETURN_REASON).map((k) => ({ value: Number(k), label: returnReasonLabel(Number(k)) }))
              : dialog.verb === "propose_ledger"
                ? Object.keys(LEDGER_REASON).map((k) => ({ value: Number(k), label: ledgerReasonLabel(Number(k)) }))
                : undefined
          }
          reasonsLabel={dialog.verb === "propose_ledger" ? t("ledgerReason") : undefined}
          send={(version, commandId, v) => {
            const item = dialog.item;
            const taskId = String(item.task!.taskId);
            const base = { commandId, incidentId: item.incident!.incidentId, expectedVersion: version };
            if (dialog.verb === "accept") return dispatch.accept({ ...base, body: { case: "accept", value: { taskId, note: v.note } } });
            if (dialog.verb === "request_extension")
              return dispatch.requestExtension({ ...base, body: { case: "requestExtension", value: { taskId, until: timestampFromMs(new Date(v.until).getTime()), reason: v.note } } });
            if (dialog.verb === "dispute")
              return dispatch.dispute({ ...base, body: { case: "dispute", value: { taskId, toDepartmentCode: v.to, reason: v.note } } });
            if (dialog.verb === "submit_assist") return dispatch.submitAssist({ ...base, body: { case: "submitAssist", value: { taskId, note: v.note } } });
            if (dialog.verb === "propose_ledger")
              // The department proposing stays answerable for the case while it waits.
              return dispatch.proposeLedger({
                ...base,
                body: { case: "proposeLedger", value: { reason: v.reason, note: v.note, responsible: item.task!.departmentCode, reviewAt: timestampFromMs(new Date(v.until).getTime()) } },
              });
            if (dialog.verb === "return") return dispatch.return({ ...base, body: { case: "return", value: { taskId, reason: v.reason, note: v.note } } });
            return dispatch.resolve({ ...base, body: { case: "resolve", value: { taskId, note: v.note, photoIds: v.photoIds } } });
          }}
          refresh={() => refreshFor(dialog.item, dialog.verb)}
          onDone={() => {
            setMsg(t(`done_${dialog.verb}`, { title: dialog.item.incident!.title }));
            setDialog(null);
            tasks.reload();
            board.reload();
          }}
          onClose={() => setDialog(null)}
        />
      )}
    </div>
  );
}
