// The incident drawer: details, tasks with deadlines, the whole timeline; operators supervise (督办)
// and reassign (改派) from here. Also the list of a grid's open incidents (from the map).
import { useEffect, useState } from "preact/hooks";
import { cc, dispatch, errorText, uuid } from "./api";
import { t, eventKindLabel, incidentStatusLabel, taskStatusLabel, levelLabel, urgencyLabel, returnReasonLabel, satisfactionLabel } from "./i18n";
import { IncidentStatus, TaskStatus } from "./gen/whistle/v1/common_pb.js";
import type { Session } from "./gen/whistle/v1/command_center_pb.js";
import { useLoad, useNow, tsMs, fmtDateTime, fmtSpan, categoryName } from "./util";
import { departments, placeName, deptName, loadOrg } from "./org";

export type DrawerTarget = { kind: "incident"; id: string } | { kind: "grid"; code: string; name: string };

export function Drawer(p: { target: DrawerTarget; session: Session; onClose: () => void; onOpen: (id: string) => void; onChanged: () => void }) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && p.onClose();
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, []);
  return (
    <div class="drawer-backdrop" onClick={(e) => e.target === e.currentTarget && p.onClose()}>
      <aside class="drawer" data-testid="drawer">
        <button class="drawer-close" onClick={p.onClose} data-testid="drawer-close" aria-label={t("close")}>
          ×
        </button>
        {p.target.kind === "incident" ? (
          <IncidentView id={p.target.id} session={p.session} onChanged={p.onChanged} />
        ) : (
          <GridIncidents code={p.target.code} name={p.target.name} onOpen={p.onOpen} />
        )}
      </aside>
    </div>
  );
}

function GridIncidents(p: { code: string; name: string; onOpen: (id: string) => void }) {
  const list = useLoad(
    (signal) =>
      cc.listIncidents(
        { areaCode: p.code, statuses: [IncidentStatus.HANDLING, IncidentStatus.WHISTLED, IncidentStatus.ACCEPTED, IncidentStatus.RESOLVED], pageSize: 100 },
        { signal },
      ),
    p.code,
    10000,
  );
  return (
    <div data-testid="grid-incidents">
      <h2>
        {t("gridIncidents")} · {p.name}
      </h2>
      {list.error && <div class="panel-error">{list.error}</div>}
      {list.data && list.data.incidents.length === 0 && <div class="empty">{t("noData")}</div>}
      <ul class="inc-list">
        {list.data?.incidents.map((i) => (
          <li class="clickable" data-testid="grid-incident" onClick={() => p.onOpen(i.incidentId)}>
            <span class={`status s${i.status}`}>{incidentStatusLabel(i.status)}</span>
            <span class="inc-title">{i.title}</span>
            <span class="muted">{categoryName(i.category, i.categoryName)}</span>
            {i.overdue && <span class="badge bad">{t("overdueTag")}</span>}
          </li>
        ))}
      </ul>
    </div>
  );
}

function IncidentView(p: { id: string; session: Session; onChanged: () => void }) {
  const detail = useLoad((signal) => cc.getIncident({ incidentId: p.id }, { signal }), p.id, 8000);
  const now = useNow(1000);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [reassign, setReassign] = useState<{ taskId: string; to: string; note: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const canAct = p.session.role === "operator";
  const d = detail.data;
  const inc = d?.incident;
  const [, setOrgV] = useState(0);
  useEffect(() => {
    if (inc?.streetCode) loadOrg(inc.streetCode, 1).then(() => setOrgV((v) => v + 1), () => {});
  }, [inc?.streetCode]);

  async function run(label: string, body: any) {
    if (!inc) return;
    setBusy(true);
    setMsg(null);
    try {
      const ok = await dispatch[label as "supervise"]({ commandId: uuid(), incidentId: inc.incidentId, expectedVersion: inc.version, body });
      setMsg({ ok: true, text: `${t("done")} · ${incidentStatusLabel(ok.status)} · ${t("version")} ${ok.version}${ok.taskId ? ` · #${ok.taskId} ${taskStatusLabel(ok.taskStatus)}` : ""}` });
      setReassign(null);
      detail.reload();
      p.onChanged();
    } catch (e) {
      setMsg({ ok: false, text: errorText(e) });
      detail.reload();
    } finally {
      setBusy(false);
    }
  }

  if (detail.error && !d) return <div class="panel-error" data-testid="drawer-error">{detail.error}</div>;
  if (!d || !inc) return <div class="empty">{t("loading")}</div>;
  const open = [IncidentStatus.HANDLING, IncidentStatus.WHISTLED, IncidentStatus.ACCEPTED].includes(inc.status);
  const due = tsMs(inc.dueAt);
  const deptOptions = [...departments.entries()].filter(([c]) => c.startsWith(inc.districtCode) || !/^\d{6}-/.test(c));

  return (
    <div class="incident" data-testid="incident" data-incident={inc.incidentId} data-version={String(inc.version)}>
      <h2 data-testid="incident-title">{inc.title}</h2>
      <div class="tags">
        <span class={`status s${inc.status}`} data-testid="incident-status">{incidentStatusLabel(inc.status)}</span>
        <span class="tag">{levelLabel(inc.level)}</span>
        <span class={`tag u${inc.urgency}`}>{urgencyLabel(inc.urgency)}</span>
        {inc.overdue && <span class="badge bad">{t("overdueTag")}</span>}
        {canAct && open && (
          <button class="act" disabled={busy} data-testid="supervise-incident" onClick={() => run("supervise", { case: "supervise", value: { taskId: "", note: t("superviseDefault") } })}>
            {t("superviseIncident")}
          </button>
        )}
      </div>
      {msg && (
        <div class={msg.ok ? "ok-msg" : "error"} data-testid={msg.ok ? "action-ok" : "action-error"}>
          {msg.text}
        </div>
      )}
      <dl class="facts">
        <dt>{t("category")}</dt>
        <dd>{categoryName(inc.category, inc.categoryName)}</dd>
        <dt>{t("place")}</dt>
        <dd>
          {placeName(inc.districtCode, inc.streetCode, inc.communityCode)}
          {inc.location?.address ? ` · ${inc.location.address}` : ""}
        </dd>
        <dt>{t("reportedAt")}</dt>
        <dd>{fmtDateTime(tsMs(inc.reportedAt))}</dd>
        <dt>{t("dueAt")}</dt>
        <dd>
          {fmtDateTime(due)}{" "}
          {open && due > 0 && (
            <span class={due < now ? "late" : "countdown"}>
              {due < now ? `${t("lateBy")} ${fmtSpan(now - due)}` : `${t("dueIn")} ${fmtSpan(due - now)}`}
            </span>
          )}
        </dd>
        <dt>{t("description")}</dt>
        <dd class="desc">{d.description || "—"}</dd>
      </dl>

      <h3>
        {t("tasks")} ({d.tasks.length})
      </h3>
      {d.tasks.length === 0 ? (
        <div class="muted">—</div>
      ) : (
        <table class="tasks" data-testid="incident-tasks">
          <thead>
            <tr>
              <th>#</th>
              <th>{t("department")}</th>
              <th>{t("status")}</th>
              <th>{t("acceptDue")}</th>
              <th>{t("resolveDue")}</th>
              {canAct && <th />}
            </tr>
          </thead>
          <tbody>
            {d.tasks.map((tk) => {
              const s = tk.state!;
              const waiting = s.status === TaskStatus.DISPATCHED || s.status === TaskStatus.SUPERVISED;
              const live = waiting || s.status === TaskStatus.ACCEPTED;
              const dl = tsMs(waiting ? s.acceptDueAt : s.resolveDueAt);
              const tid = String(s.taskId);
              return (
                <tr data-testid="task-row" data-task={tid} data-status={s.status}>
                  <td>{tid}</td>
                  <td>{tk.departmentName || deptName(s.departmentCode)}</td>
                  <td>
                    <span class={`tstatus t${s.status}`}>{taskStatusLabel(s.status)}</span>
                    {s.supervised && <span class="badge bad">{t("supervised")}</span>}
                    {s.returnReason ? <div class="muted small">{returnReasonLabel(s.returnReason)}</div> : null}
                  </td>
                  <td>
                    {fmtDateTime(tsMs(s.acceptDueAt))}
                    {waiting && dl > 0 && <div class={dl < now ? "late" : "countdown"}>{dl < now ? `+${fmtSpan(now - dl)}` : fmtSpan(dl - now)}</div>}
                  </td>
                  <td>
                    {fmtDateTime(tsMs(s.resolveDueAt))}
                    {!waiting && live && dl > 0 && <div class={dl < now ? "late" : "countdown"}>{dl < now ? `+${fmtSpan(now - dl)}` : fmtSpan(dl - now)}</div>}
                  </td>
                  {canAct && (
                    <td class="actions">
                      {live && (
                        <button class="act" disabled={busy} data-testid="supervise-task" onClick={() => run("supervise", { case: "supervise", value: { taskId: tid, note: t("superviseDefault") } })}>
                          {t("supervise")}
                        </button>
                      )}
                      {(live || s.status === TaskStatus.RETURNED) && (
                        <button class="act" disabled={busy} data-testid="reassign-task" onClick={() => setReassign({ taskId: tid, to: "", note: "" })}>
                          {t("reassign")}
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {reassign && (
        <form
          class="reassign"
          data-testid="reassign-form"
          onSubmit={(e) => {
            e.preventDefault();
            run("reassign", { case: "reassign", value: { taskId: reassign.taskId, toDepartmentCode: reassign.to.trim(), note: reassign.note } });
          }}
        >
          <label>
            {t("reassignTo")} (#{reassign.taskId})
            <input list="dept-list" value={reassign.to} required onInput={(e) => setReassign({ ...reassign, to: (e.target as HTMLInputElement).value })} data-testid="reassign-to" placeholder="150602-urban_management" />
            <datalist id="dept-list">
              {deptOptions.map(([c, n]) => (
                <option value={c}>{n}</option>
              ))}
            </datalist>
          </label>
          <label>
            {t("note")}
            <input value={reassign.note} onInput={(e) => setReassign({ ...reassign, note: (e.target as HTMLInputElement).value })} />
          </label>
          <div class="row">
            <button type="submit" class="primary" disabled={busy} data-testid="reassign-submit">
              {t("confirm")}
            </button>
            <button type="button" onClick={() => setReassign(null)}>
              {t("cancel")}
            </button>
          </div>
        </form>
      )}

      {d.reports.length > 0 && (
        <>
          <h3>
            {t("reports")} ({d.reports.length})
          </h3>
          <ul class="reports">
            {d.reports.map((r) => (
              <li>
                <span class="muted">{fmtDateTime(tsMs(r.reportedAt))}</span> {r.title} <span class="muted">· {r.reporterId}</span>
              </li>
            ))}
          </ul>
        </>
      )}

      <h3>{t("timeline")}</h3>
      <ol class="timeline" data-testid="timeline">
        {d.timeline.map((e) => (
          <li data-kind={e.kind}>
            <span class="tl-time">{fmtDateTime(tsMs(e.at))}</span>
            <span class="tl-kind">{eventKindLabel(e.kind)}</span>
            <span class="tl-actor muted">{e.actorId}</span>
            {e.note && <div class="tl-note">{e.note}</div>}
          </li>
        ))}
      </ol>
      {detail.error && <div class="panel-error">{detail.error}</div>}
      <div class="muted small">
        {inc.incidentId} · {t("version")} {String(inc.version)} · {d.policyVersion}
        {inc.status === IncidentStatus.CLOSED ? "" : ""} {satisfactionLabel(0) && ""}
      </div>
    </div>
  );
}
