// 部门工作台: a liaison's department tasks with countdowns; accept (签收), return (退单), resolve (办结).
import { useEffect, useState } from "preact/hooks";
import { cc, dispatch, errorText, uuid } from "./api";
import { t, taskStatusLabel, urgencyLabel, incidentStatusLabel, RETURN_REASON, returnReasonLabel } from "./i18n";
import { ScoreboardKind, type TaskItem } from "./gen/whistle/v1/command_center_pb.js";
import { TaskStatus } from "./gen/whistle/v1/common_pb.js";
import { useLoad, useNow, tsMs, fmtDateTime, fmtSpan, pct, num, categoryName, throttle } from "./util";
import { EventFeed, type FeedStatus } from "./events";
import { loadOrg, placeName } from "./org";
import { NavLinks, type Chrome } from "./main";

type Dialog = { kind: "return" | "resolve"; item: TaskItem; reason: number; note: string };

export function Workbench(p: Chrome) {
  const s = p.session;
  const [status, setStatus] = useState<FeedStatus>("connecting");
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [dialog, setDialog] = useState<Dialog | null>(null);
  const [busy, setBusy] = useState("");
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
    const refresh = throttle(() => tasks.reload(), 500);
    const feed = new EventFeed(s.areaCode, {
      onEvent: (e) => {
        const ts = e.event?.body.case === "incidentChanged" ? e.event.body.value.tasks : [];
        if (e.event?.kind.startsWith("task.") || ts.some((x) => x.departmentCode === s.departmentCode)) refresh();
      },
      onGap: () => tasks.reload(),
      onStatus: setStatus,
    }).start();
    return () => feed.stop();
  }, []);

  async function command(item: TaskItem, body: any, label: string) {
    const inc = item.incident!;
    const key = `${inc.incidentId}/${item.task!.taskId}`;
    setBusy(key);
    setMsg(null);
    try {
      const ok = await dispatch[label as "accept"]({ commandId: uuid(), incidentId: inc.incidentId, expectedVersion: inc.version, body });
      setMsg({ ok: true, text: `${t("done")}: ${inc.title} → ${taskStatusLabel(ok.taskStatus)}` });
      setDialog(null);
    } catch (e) {
      setMsg({ ok: false, text: `${inc.title}: ${errorText(e)}` });
    } finally {
      setBusy("");
      tasks.reload();
      board.reload();
    }
  }

  const items = tasks.data?.tasks ?? [];
  const mine = board.data?.rows.find((r) => r.code === s.departmentCode);
  const toAccept = items.filter((i) => i.task?.status === TaskStatus.DISPATCHED || i.task?.status === TaskStatus.SUPERVISED).length;
  const inHand = items.filter((i) => i.task?.status === TaskStatus.ACCEPTED).length;

  return (
    <div class="page workbench" data-testid="workbench">
      <header class="topbar">
        <div class="brand">
          <span class="emblem sm">哨</span>
          <span>
            {t("workbench")} · <b data-testid="dept-name">{tasks.data?.departmentName || s.departmentName || s.departmentCode}</b>
          </span>
        </div>
        <span class={`live live-${status}`} data-testid="live-status" data-status={status}>
          <i />
          {t(status === "live" ? "live" : status)}
        </span>
        <NavLinks {...p} />
      </header>
      <section class="wb-stats">
        <div class="stat">
          <div class="kpi-label">{t("countDispatched")}</div>
          <div class="kpi-value warn" data-testid="wb-to-accept">{toAccept}</div>
        </div>
        <div class="stat">
          <div class="kpi-label">{t("countAccepted")}</div>
          <div class="kpi-value" data-testid="wb-in-hand">{inHand}</div>
        </div>
        <div class="stat wide" data-testid="dept-rates">
          <div class="kpi-label">
            {t("deptRates")} {board.data?.month ? `· ${board.data.month}` : ""} {mine ? `· ${t("rank")} ${mine.rank}/${board.data?.rows.length}` : ""}
          </div>
          {board.error && <div class="panel-error">{board.error}</div>}
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
        <div class={msg.ok ? "ok-msg" : "error"} data-testid={msg.ok ? "action-ok" : "action-error"}>
          {msg.text}
        </div>
      )}
      <section class="panel wb-list">
        <div class="panel-head">
          <span class="panel-title">{t("myTasks")}</span>
          <button class="link" onClick={() => tasks.reload()}>
            {t("refresh")}
          </button>
        </div>
        <div class="panel-body">
          {tasks.error && <div class="panel-error" data-testid="tasks-error">{tasks.error}</div>}
          {tasks.data && items.length === 0 && <div class="empty">{t("noTasks")}</div>}
          <table class="tasks wide" data-testid="task-table">
            {items.length > 0 && (
              <thead>
                <tr>
                  <th>{t("title")}</th>
                  <th>{t("category")}</th>
                  <th>{t("place")}</th>
                  <th>{t("status")}</th>
                  <th>{t("dueAt")}</th>
                  <th />
                </tr>
              </thead>
            )}
            <tbody>
              {items.map((it) => {
                const tk = it.task!;
                const inc = it.incident!;
                const waiting = tk.status === TaskStatus.DISPATCHED || tk.status === TaskStatus.SUPERVISED;
                const accepted = tk.status === TaskStatus.ACCEPTED;
                const dl = tsMs(waiting ? tk.acceptDueAt : tk.resolveDueAt);
                const late = dl > 0 && dl < now;
                const key = `${inc.incidentId}/${tk.taskId}`;
                return (
                  <tr data-testid="wb-task" data-incident={inc.incidentId} data-task={String(tk.taskId)} data-status={tk.status} class={late ? "row-late" : ""}>
                    <td>
                      <div class="strong">{inc.title}</div>
                      <div class="muted small clamp">{it.description}</div>
                    </td>
                    <td>
                      {categoryName(inc.category, inc.categoryName)}
                      <div class={`small u${inc.urgency}`}>{urgencyLabel(inc.urgency)}</div>
                    </td>
                    <td class="small">{placeName(inc.districtCode, inc.streetCode, inc.communityCode)}</td>
                    <td>
                      <span class={`tstatus t${tk.status}`}>{taskStatusLabel(tk.status)}</span>
                      <div class="muted small">{incidentStatusLabel(inc.status)}</div>
                    </td>
                    <td>
                      {(waiting || accepted) && dl > 0 ? (
                        <div class={late ? "late" : "countdown"} data-testid="wb-countdown">
                          <small>{late ? t(waiting ? "reportInLate" : "resolveLate") : t(waiting ? "reportInIn" : "resolveIn")}</small> {fmtSpan(Math.abs(dl - now))}
                        </div>
                      ) : (
                        <span class="muted">—</span>
                      )}
                      <div class="muted small">{fmtDateTime(dl)}</div>
                    </td>
                    <td class="actions">
                      {waiting && (
                        <button class="primary" disabled={busy === key} data-testid="wb-accept" onClick={() => command(it, { case: "accept", value: { taskId: String(tk.taskId), note: "" } }, "accept")}>
                          {t("accept")}
                        </button>
                      )}
                      {(waiting || accepted) && (
                        <button disabled={busy === key} data-testid="wb-return" onClick={() => setDialog({ kind: "return", item: it, reason: 1, note: "" })}>
                          {t("return")}
                        </button>
                      )}
                      {accepted && (
                        <button class="good" disabled={busy === key} data-testid="wb-resolve" onClick={() => setDialog({ kind: "resolve", item: it, reason: 0, note: "" })}>
                          {t("resolve")}
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
      {dialog && (
        <div class="modal-backdrop">
          <form
            class="modal"
            data-testid={`${dialog.kind}-dialog`}
            onSubmit={(e) => {
              e.preventDefault();
              if (!dialog.note.trim()) return;
              const taskId = String(dialog.item.task!.taskId);
              if (dialog.kind === "return") command(dialog.item, { case: "return", value: { taskId, reason: dialog.reason, note: dialog.note.trim() } }, "return");
              else command(dialog.item, { case: "resolve", value: { taskId, note: dialog.note.trim() } }, "resolve");
            }}
          >
            <h3>
              {t(dialog.kind)} · {dialog.item.incident!.title}
            </h3>
            {dialog.kind === "return" && (
              <label>
                {t("returnReason")}
                <select value={dialog.reason} data-testid="return-reason" onChange={(e) => setDialog({ ...dialog, reason: Number((e.target as HTMLSelectElement).value) })}>
                  {Object.keys(RETURN_REASON).map((k) => (
                    <option value={k}>{returnReasonLabel(Number(k))}</option>
                  ))}
                </select>
              </label>
            )}
            <label>
              {t(dialog.kind === "return" ? "returnNote" : "resolveNote")}
              <textarea required rows={4} maxLength={dialog.kind === "return" ? 1000 : 2000} value={dialog.note} data-testid="dialog-note" onInput={(e) => setDialog({ ...dialog, note: (e.target as HTMLTextAreaElement).value })} />
            </label>
            <div class="row">
              <button type="submit" class="primary" disabled={!!busy || !dialog.note.trim()} data-testid="dialog-submit">
                {t("confirm")}
              </button>
              <button type="button" onClick={() => setDialog(null)}>
                {t("cancel")}
              </button>
            </div>
          </form>
        </div>
      )}
    </div>
  );
}
