// The incident drawer: details, tasks with deadlines, the whole timeline; operators supervise (督办)
// and reassign (改派) from here, and answer a deadline extension request (延期申请) their level
// approves, and arbitrate a department's dispatch dispute (派单异议: uphold or reject), release an
// assisting department (解除协办), and decide or review a long-term ledger case (挂账). Also the
// list of a grid's open incidents (from the map) and of an area's ledger (from the 挂账 figure). A
// proactive case (主动治理) shows its topic, its milestones (marked done here) and its measure.
import { useEffect, useRef, useState } from "preact/hooks";
import { cc, dispatch, uuid } from "./api";
import { describe, type Problem } from "./errors";
import { t, eventKindLabel, incidentStatusLabel, taskStatusLabel, levelLabel, urgencyLabel, returnReasonLabel, ledgerReasonLabel } from "./i18n";
import { IncidentStatus, Origin, TaskRole, TaskStatus } from "./gen/whistle/v1/common_pb.js";
import type { Department, IncidentDetail, Session, TimelineEntry } from "./gen/whistle/v1/command_center_pb.js";
import { useLoad, useNow, tsMs, fmtDateTime, fmtCountdown, categoryName } from "./util";
import { departments, placeName, deptName, loadOrg, orgName, onOrgNames, withNames } from "./org";
import { LoadNote, ProblemNote } from "./notes";
import { CommandDialog, type Fresh } from "./dialog";
import { IncidentPhotos } from "./photos";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";

/** An assistant still owes its part: dispatched, reported in or returned, neither submitted nor released. */
const OWES_PART = [TaskStatus.DISPATCHED, TaskStatus.SUPERVISED, TaskStatus.ACCEPTED, TaskStatus.RETURNED];

/** The assisting parts of an incident's current round: how many there are and who still owes one. */
export function assistParts(d: IncidentDetail): { total: number; owed: string[] } {
  const round = d.reopenCount;
  const parts = d.tasks.filter((x) => x.state?.role === TaskRole.ASSIST && x.state.round === round && x.state.status !== TaskStatus.CANCELLED);
  const owed = parts.filter((x) => OWES_PART.includes(x.state!.status)).map((x) => x.departmentName || deptName(x.state!.departmentCode) || t("someDepartment"));
  return { total: parts.length, owed };
}

export type DrawerTarget = { kind: "incident"; id: string } | { kind: "grid"; code: string; name: string } | { kind: "ledger"; area: string; name: string };

/** `onEndorse`: a paired leader's view offers 领导督办 on an open incident (paired.tsx). */
export function Drawer(p: { target: DrawerTarget; session: Session; onClose: () => void; onOpen: (id: string) => void; onChanged: () => void; onEndorse?: (id: string) => void }) {
  const box = useRef<HTMLElement>(null);
  useEffect(() => {
    // Esc closes the drawer unless a dialog inside it is open (the dialog takes Esc first).
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && !document.querySelector(".modal") && p.onClose();
    addEventListener("keydown", onKey);
    const before = document.activeElement as HTMLElement | null;
    box.current?.focus();
    return () => {
      removeEventListener("keydown", onKey);
      if (before && document.contains(before)) before.focus();
    };
  }, []);
  return (
    <div class="drawer-backdrop" onClick={(e) => e.target === e.currentTarget && p.onClose()}>
      <aside class="drawer" data-testid="drawer" role="dialog" aria-modal="true" aria-label={t(p.target.kind === "incident" ? "incident" : p.target.kind === "ledger" ? "pLedger" : "gridIncidents")} tabIndex={-1} ref={box}>
        <button class="drawer-close" onClick={p.onClose} data-testid="drawer-close" aria-label={t("close")}>
          ×
        </button>
        {p.target.kind === "incident" ? (
          <IncidentView id={p.target.id} session={p.session} onChanged={p.onChanged} onEndorse={p.onEndorse} />
        ) : p.target.kind === "ledger" ? (
          <LedgerList area={p.target.area} name={p.target.name} onOpen={p.onOpen} />
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
      <LoadNote l={list} testid="grid-incidents" />
      {list.data && list.data.incidents.length === 0 && <div class="empty">{t("noData")}</div>}
      <ul class="inc-list">
        {list.data?.incidents.map((i) => (
          <li class="clickable" data-testid="grid-incident" onClick={() => p.onOpen(i.incidentId)}>
            <span class={`status s${i.status}`}>{incidentStatusLabel(i.status)}</span>
            {i.origin === Origin.PROACTIVE && <span class="tag proactive-tag" data-testid="proactive-tag">{t("proactiveTag")}</span>}
            <span class="inc-title">{i.title}</span>
            <span class="muted">{categoryName(i.category, i.categoryName)}</span>
            {i.overdue && <span class="badge bad">{t("overdueTag")}</span>}
          </li>
        ))}
      </ul>
    </div>
  );
}

/**
 * A ledger proposal waiting for the approving level, or the case in the ledger: why, who answers for
 * it, the review date, who proposed it (by name, from the timeline); an operator of the approving
 * level decides the proposal (同意挂账 / 不予挂账) or reviews the entry (继续挂账 / 出账恢复办理).
 */
function LedgerNote(p: { d: IncidentDetail; onAct: (step: LedgerStep) => void }) {
  const l = p.d.ledger!;
  const proposal = [...p.d.timeline].reverse().find((e) => e.kind === "incident.ledger_proposed");
  const vars = {
    reason: ledgerReasonLabel(l.reason),
    who: responsibleName(l.responsible),
    review: fmtDateTime(tsMs(l.reviewAt)),
    approver: levelLabel(l.approver),
    at: fmtDateTime(tsMs(l.enteredAt)),
  };
  const steps: LedgerStep[] = l.entered ? ["ledgerKeep", "ledgerReturn"] : ["ledgerApprove", "ledgerDeny"];
  return (
    <div class="pending-msg" data-testid="ledger" data-entered={l.entered ? "1" : ""} data-review-due={l.reviewDue ? "1" : ""}>
      <span data-testid="ledger-text">{t(l.entered ? "ledgerEntered" : "ledgerProposed", vars)}</span>
      {l.reviewDue && <span class="badge warn">{t("ledgerReviewDue")}</span>}
      <div class="muted small" data-testid="ledger-by">
        {t("ledgerBy", { who: proposal ? actorName(proposal) : t("actorUnknown"), at: fmtDateTime(tsMs(l.proposedAt)) })}
      </div>
      {l.note && <div class="tl-note">{withNames(l.note)}</div>}
      {p.d.mayDecideLedger && (
        <span class="row">
          {steps.map((step) => (
            <button class={step === "ledgerApprove" || step === "ledgerKeep" ? "act good" : "act"} data-testid={`ledger-${step.slice(6).toLowerCase()}`} onClick={() => p.onAct(step)}>
              {t(step)}
            </button>
          ))}
        </span>
      )}
    </div>
  );
}

/** An area's long-term ledger (挂账): proposals and entries, the soonest review first. */
function LedgerList(p: { area: string; name: string; onOpen: (id: string) => void }) {
  const list = useLoad((signal) => cc.listLedger({ areaCode: p.area, pageSize: 200 }, { signal }), p.area, 15000);
  const [, setOrgV] = useState(0);
  useEffect(() => onOrgNames(() => setOrgV((v) => v + 1)), []);
  return (
    <div data-testid="ledger-list">
      <h2>
        {t("pLedger")} · {p.name}
      </h2>
      <LoadNote l={list} testid="ledger-list" />
      {list.data && list.data.items.length === 0 && <div class="empty">{t("ledgerNone")}</div>}
      <ul class="inc-list">
        {list.data?.items.map(({ incident: i, ledger: l }) => (
          <li class="clickable" data-testid="ledger-item" data-incident={i!.incidentId} data-entered={l!.entered ? "1" : ""} onClick={() => p.onOpen(i!.incidentId)}>
            <span class={`tag ${l!.entered ? "ledger-tag" : ""}`}>{t(l!.entered ? "ledgeredTag" : "ledgerPendingTag")}</span>
            <span class="inc-title">{i!.title}</span>
            <span class="muted">
              {ledgerReasonLabel(l!.reason)} · {responsibleName(l!.responsible)} · {t("ledgerReviewOn", { date: fmtDateTime(tsMs(l!.reviewAt)) })}
            </span>
            {l!.reviewDue && <span class="badge warn">{t("ledgerReviewDue")}</span>}
          </li>
        ))}
      </ul>
    </div>
  );
}

/** Intake notes a report's id on the entries it writes ("report sim-…"): an id, not for people. */
const REPORT_NOTE = /^report \S+$/;

/** Who acted, by name: the person and their unit, 系统 for dispatch itself; the id only as a tooltip. */
function actorName(e: TimelineEntry): string {
  if (e.actorName) return e.actorName;
  if (e.actorId === "system" || !e.actorId) return t("actorSystem");
  const unit = /^hd-(\d+)$/.exec(e.actorId);
  if (unit) return `${orgName(unit[1])} ${t("actorStaff")}`.trim();
  return t("actorUnknown");
}

type Action =
  | { verb: "supervise" | "reassign"; taskId: string; department: string }
  | { verb: "superviseIncident" }
  | { verb: "extensionApprove" }
  | { verb: "extensionDeny" }
  | { verb: "disputeUphold" | "disputeReject"; taskId: string; department: string; to: string }
  | { verb: "releaseAssist"; taskId: string; department: string }
  | { verb: "ledger"; step: LedgerStep };

/** What the approving level does with a ledger case: decide the proposal, or review the entry. */
type LedgerStep = "ledgerApprove" | "ledgerDeny" | "ledgerKeep" | "ledgerReturn";

/**
 * 主动治理: the topic a proactive case was adopted from, its milestones — overdue ones marked, each
 * marked done here by those who may (an operator, the lead department's liaison) — and the
 * reports at the topic's place before and after the month of adoption.
 */
function ProactivePanel(p: { d: IncidentDetail; open: boolean; now: number; onDone: (text: string) => void }) {
  const c = p.d.proactive!;
  const [busy, setBusy] = useState(0);
  const [problem, setProblem] = useState<Problem | null>(null);
  const complete = async (number: number) => {
    setBusy(number);
    setProblem(null);
    try {
      await dispatch.completeMilestone({ commandId: uuid(), incidentId: p.d.incident!.incidentId, body: { case: "completeMilestone", value: { milestone: number, note: "" } } });
      p.onDone(t("milestoneDoneOk", { n: number }));
    } catch (e) {
      setProblem(describe(e, "command"));
    } finally {
      setBusy(0);
    }
  };
  const change = c.change;
  return (
    <div class="proactive" data-testid="proactive">
      <h3>{t("proactiveTag")}</h3>
      <div class="muted small" data-testid="proactive-topic">
        {t("proactiveFrom", { month: c.month, key: c.topicKey, at: fmtDateTime(tsMs(c.adoptedAt)) })}
      </div>
      <div data-testid="proactive-summary">{c.summary}</div>
      <ol class="milestones">
        {c.milestones.map((m) => (
          <li data-testid="milestone" data-done={m.doneAt ? "1" : ""} data-overdue={m.overdue ? "1" : ""}>
            <span>{m.title}</span> <span class="muted small">{t("milestoneDueOn", { date: fmtDateTime(tsMs(m.due)) })}</span>{" "}
            {m.doneAt ? (
              <span class="tag">{t("milestoneDone", { date: fmtDateTime(tsMs(m.doneAt)) })}</span>
            ) : m.overdue ? (
              <span class="badge bad" data-testid="milestone-overdue">{t("milestoneOverdue")}</span>
            ) : null}
            {!m.doneAt && p.open && c.mayCompleteMilestones && (
              <button class="act" data-testid="milestone-complete" disabled={busy > 0} onClick={() => complete(m.number)}>
                {busy === m.number ? t("sending") : t("milestoneComplete")}
              </button>
            )}
          </li>
        ))}
      </ol>
      {problem && <ProblemNote p={problem} testid="milestone-error" />}
      {change && (
        <div class="small" data-testid="proactive-change">
          {t("proactiveChange", {
            before: change.beforePerMonth.toFixed(1),
            after: change.afterPerMonth.toFixed(1),
          })}
          {!change.complete && <span class="muted"> {t("proactiveCounting")}</span>}
        </div>
      )}
    </div>
  );
}

/** Who answers for a ledger case: a department or an org unit, by name. */
const responsibleName = (code: string) => (/^\d{6}-/.test(code) ? withNames(code) : orgName(code) || t("someDepartment"));

function IncidentView(p: { id: string; session: Session; onChanged: () => void; onEndorse?: (id: string) => void }) {
  const detail = useLoad((signal) => cc.getIncident({ incidentId: p.id }, { signal }), p.id, 8000);
  const now = useNow(1000);
  const [msg, setMsg] = useState("");
  const [action, setAction] = useState<Action | null>(null);
  const canAct = p.session.role === "operator";
  const d = detail.data;
  const inc = d?.incident;
  const [, setOrgV] = useState(0);
  useEffect(() => onOrgNames(() => setOrgV((v) => v + 1)), []);
  // 改派 offers every department that serves the incident's area (its district's and the city's),
  // the list dispatch accepts, by name.
  const [serving, setServing] = useState<Department[]>([]);
  useEffect(() => {
    if (inc?.streetCode) loadOrg(inc.streetCode, 1).then(() => setOrgV((v) => v + 1), () => {});
    if (canAct && inc?.gridCode)
      cc.listDepartments({ areaCode: inc.gridCode }).then(
        (r) => {
          for (const x of r.departments) departments.set(x.code, x.name);
          setServing(r.departments);
        },
        () => {},
      );
  }, [inc?.streetCode, inc?.gridCode]);

  if (!d || !inc) return detail.problem ? <LoadNote l={detail} testid="drawer" /> : <div class="empty">{t("loading")}</div>;
  const open = [IncidentStatus.HANDLING, IncidentStatus.WHISTLED, IncidentStatus.ACCEPTED].includes(inc.status);
  const due = tsMs(inc.dueAt);
  const dueCd = fmtCountdown(due, now);

  async function refresh(a: Action): Promise<Fresh> {
    const fresh = await cc.getIncident({ incidentId: p.id });
    detail.reload();
    const i = fresh.incident!;
    if (a.verb === "extensionApprove" || a.verb === "extensionDeny") {
      return { version: i.version, allowed: !!fresh.pendingExtension?.mayAnswer, state: incidentStatusLabel(i.status) };
    }
    if (a.verb === "disputeUphold" || a.verb === "disputeReject") {
      const task = fresh.tasks.find((x) => String(x.state?.taskId) === a.taskId);
      return { version: i.version, allowed: !!task?.verbs.includes("decide_dispute"), state: task ? taskStatusLabel(task.state!.status) : incidentStatusLabel(i.status) };
    }
    if (a.verb === "ledger") {
      // A proposal is decided, an entry reviewed.
      const l = fresh.ledger;
      const allowed = fresh.mayDecideLedger && !!l && (a.step === "ledgerApprove" || a.step === "ledgerDeny" ? !l.entered : l.entered);
      return { version: i.version, allowed, state: l ? t(l.entered ? "ledgeredTag" : "ledgerPendingTag") : incidentStatusLabel(i.status) };
    }
    if (a.verb === "releaseAssist") {
      const task = fresh.tasks.find((x) => String(x.state?.taskId) === a.taskId);
      return { version: i.version, allowed: !!task?.verbs.includes("release_assist"), state: task ? taskStatusLabel(task.state!.status) : incidentStatusLabel(i.status) };
    }
    if (a.verb === "superviseIncident") {
      const stillOpen = [IncidentStatus.HANDLING, IncidentStatus.WHISTLED, IncidentStatus.ACCEPTED].includes(i.status);
      return { version: i.version, allowed: stillOpen, state: incidentStatusLabel(i.status) };
    }
    const task = fresh.tasks.find((x) => String(x.state?.taskId) === a.taskId);
    return { version: i.version, allowed: !!task?.verbs.includes(a.verb), state: task ? taskStatusLabel(task.state!.status) : incidentStatusLabel(i.status) };
  }

  // Departments that already hold a live task here are left out (dispatch refuses them).
  const deptOptions = serving
    .filter((x) => !d.tasks.some((tk) => tk.state?.departmentCode === x.code && ![TaskStatus.RETURNED, TaskStatus.CANCELLED, TaskStatus.RELEASED].includes(tk.state.status)))
    .map((x) => ({ value: x.code, label: x.name }));

  return (
    <div class="incident" data-testid="incident" data-incident={inc.incidentId} data-version={String(inc.version)}>
      <h2 data-testid="incident-title" title={`${inc.incidentId} · v${inc.version} · ${d.policyVersion}`}>
        {inc.title}
      </h2>
      <div class="tags">
        <span class={`status s${inc.status}`} data-testid="incident-status">{incidentStatusLabel(inc.status)}</span>
        <span class="tag">{levelLabel(inc.level)}</span>
        <span class={`tag u${inc.urgency}`}>{urgencyLabel(inc.urgency)}</span>
        {inc.origin === Origin.PROACTIVE && (
          <span class="tag proactive-tag" data-testid="incident-proactive">
            {t("proactiveTag")}
          </span>
        )}
        {inc.overdue && <span class="badge bad">{t("overdueTag")}</span>}
        {d.timeline.some((e) => e.kind === "incident.endorsed") && (
          <span class="badge bad" data-testid="incident-endorsed" title={eventKindLabel("incident.endorsed")}>
            {t("endorsedTag")}
          </span>
        )}
        {inc.ledgered && (
          <span class="tag ledger-tag" data-testid="incident-ledgered">
            {t("ledgeredTag")}
          </span>
        )}
        {p.onEndorse && open && (
          <button class="act" data-testid="endorse-open" onClick={() => p.onEndorse!(inc.incidentId)}>
            {t("endorse")}
          </button>
        )}
        {canAct && open && !inc.ledgered && (
          <button
            class="act"
            data-testid="supervise-incident"
            onClick={() => {
              setMsg("");
              setAction({ verb: "superviseIncident" });
            }}
          >
            {t("superviseIncident")}
          </button>
        )}
      </div>
      {open && d.pendingExtension && (
        <div class="pending-msg" data-testid="extension-pending">
          {t("extensionPending", {
            until: fmtDateTime(tsMs(d.pendingExtension.until)),
            approver: levelLabel(d.pendingExtension.approver),
            due: fmtDateTime(tsMs(d.pendingExtension.answerDueAt)),
          })}
          {d.pendingExtension.mayAnswer && (
            <span class="row">
              {(["extensionApprove", "extensionDeny"] as const).map((verb) => (
                <button
                  class={verb === "extensionApprove" ? "act good" : "act"}
                  data-testid={verb === "extensionApprove" ? "extension-approve" : "extension-deny"}
                  onClick={() => {
                    setMsg("");
                    setAction({ verb });
                  }}
                >
                  {t(verb)}
                </button>
              ))}
            </span>
          )}
        </div>
      )}
      {open && d.ledger && (
        <LedgerNote
          d={d}
          onAct={(step) => {
            setMsg("");
            setAction({ verb: "ledger", step });
          }}
        />
      )}
      {d.extensions > 0 && <div class="muted small" data-testid="extensions-granted">{t("extensionsGranted", { n: d.extensions })}</div>}
      {msg && (
        <div class="ok-msg" data-testid="action-ok" role="status">
          {msg}
        </div>
      )}
      <LoadNote l={detail} testid="incident" />
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
          {open && due > 0 && !inc.ledgered && (
            <span class={dueCd.late ? "late" : "countdown"} data-testid="incident-countdown">
              {dueCd.text}
            </span>
          )}
          {open && inc.ledgered && <span class="muted">{t("ledgerStopped")}</span>}
        </dd>
        <dt>{t("description")}</dt>
        <dd class="desc">{d.description || "—"}</dd>
      </dl>
      {d.proactive && <ProactivePanel d={d} open={open} now={now} onDone={(text) => {
        setMsg(text);
        detail.reload();
        p.onChanged();
      }} />}
      {d.photos.length > 0 && (
        <>
          <h3>{t("photos")}</h3>
          <IncidentPhotos incidentId={inc.incidentId} photos={d.photos} />
        </>
      )}

      <h3>
        {t("tasks")} ({d.tasks.length})
      </h3>
      {d.tasks.length === 0 ? (
        <div class="muted">—</div>
      ) : (
        <table class="tasks" data-testid="incident-tasks">
          <thead>
            <tr>
              <th>{t("department")}</th>
              <th>{t("taskRole")}</th>
              <th>{t("status")}</th>
              <th>{t("acceptDue")}</th>
              <th>{t("resolveDue")}</th>
              {canAct && <th class="act-col">{t("supervise")}</th>}
              {canAct && <th class="act-col">{t("reassign")}</th>}
              {canAct && <th class="act-col">{t("release_assist")}</th>}
            </tr>
          </thead>
          <tbody>
            {d.tasks.map((tk) => {
              const s = tk.state!;
              const waiting = s.status === TaskStatus.DISPATCHED || s.status === TaskStatus.SUPERVISED;
              const live = waiting || s.status === TaskStatus.ACCEPTED;
              const dl = tsMs(waiting ? s.acceptDueAt : s.resolveDueAt);
              const cd = fmtCountdown(dl, now);
              const tid = String(s.taskId);
              const name = tk.departmentName || deptName(s.departmentCode) || t("someDepartment");
              const assists = s.role === TaskRole.ASSIST;
              // An assistant's part: owed, submitted (its task resolved) or released.
              const part = !assists
                ? ""
                : s.status === TaskStatus.RESOLVED
                  ? "partSubmitted"
                  : s.status === TaskStatus.RELEASED
                    ? "partReleased"
                    : s.status === TaskStatus.CANCELLED
                      ? ""
                      : "partOwed";
              return (
                <tr data-testid="task-row" data-task={tid} data-status={s.status} data-role={assists ? "assist" : "lead"}>
                  <td title={s.departmentCode}>{name}</td>
                  <td>
                    <span class={`tag role-tag ${assists ? "assist" : "lead"}`} data-testid="task-role">
                      {t(assists ? "taskAssist" : "taskLead")}
                    </span>
                  </td>
                  <td>
                    <span class={`tstatus t${s.status}`}>{taskStatusLabel(s.status)}</span>
                    {part && (
                      <div class={`small part ${part}`} data-testid="task-part" data-part={part}>
                        {t(part)}
                      </div>
                    )}
                    {s.supervised && <span class="badge bad">{t("supervised")}</span>}
                    {s.returnReason ? <div class="muted small">{returnReasonLabel(s.returnReason)}</div> : null}
                    {s.disputeToDepartmentCode ? (
                      <div class="pending-msg small" data-testid="dispute-pending">
                        {t("disputePending", { to: deptName(s.disputeToDepartmentCode) || s.disputeToDepartmentCode })}
                        {tk.verbs.includes("decide_dispute") && (
                          <span class="row">
                            {(["disputeUphold", "disputeReject"] as const).map((verb) => (
                              <button
                                class={verb === "disputeUphold" ? "act good" : "act"}
                                data-testid={verb === "disputeUphold" ? "dispute-uphold" : "dispute-reject"}
                                onClick={() => {
                                  setMsg("");
                                  setAction({ verb, taskId: tid, department: name, to: deptName(s.disputeToDepartmentCode) || s.disputeToDepartmentCode });
                                }}
                              >
                                {t(verb)}
                              </button>
                            ))}
                          </span>
                        )}
                      </div>
                    ) : (
                      s.disputed && <div class="muted small">{t("disputed")}</div>
                    )}
                  </td>
                  <td>
                    {fmtDateTime(tsMs(s.acceptDueAt))}
                    {waiting && dl > 0 && <div class={cd.late ? "late" : "countdown"}>{cd.text}</div>}
                  </td>
                  <td>
                    {fmtDateTime(tsMs(s.resolveDueAt))}
                    {assists && <div class="muted small">{t("partDue")}</div>}
                    {!waiting && live && dl > 0 && !inc.ledgered && <div class={cd.late ? "late" : "countdown"}>{cd.text}</div>}
                  </td>
                  {canAct &&
                    (["supervise", "reassign"] as const).map((verb) => (
                      <td class="act-col">
                        {tk.verbs.includes(verb) && (
                          <button
                            class="act"
                            data-testid={`${verb}-task`}
                            onClick={() => {
                              setMsg("");
                              setAction({ verb, taskId: tid, department: name });
                            }}
                          >
                            {t(verb)}
                          </button>
                        )}
                      </td>
                    ))}
                  {canAct && (
                    <td class="act-col">
                      {tk.verbs.includes("release_assist") && (
                        <button
                          class="act"
                          data-testid="release-assist"
                          onClick={() => {
                            setMsg("");
                            setAction({ verb: "releaseAssist", taskId: tid, department: name });
                          }}
                        >
                          {t("release_assist")}
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

      {d.reports.length > 0 && (
        <>
          <h3>
            {t("reports")} ({d.reports.length})
          </h3>
          <ul class="reports">
            {d.reports.map((r) => (
              <li>
                <span class="muted">{fmtDateTime(tsMs(r.reportedAt))}</span> {r.title}{" "}
                <span class="muted" title={r.reporterId}>
                  · {t("role_grid_worker")} {orgName(r.gridCode)}
                </span>
                {/* The resident's number, whole for those who must call back (the server masks it
                    for everyone else and logs each whole read). */}
                {r.contactPhone && (
                  <span class="contact" data-testid="report-contact">
                    {" "}
                    · {t("residentContact")}{" "}
                    {r.contactPhone.includes("*") ? r.contactPhone : <a href={`tel:${r.contactPhone}`}>{r.contactPhone}</a>}
                  </span>
                )}
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
            <span class="tl-actor muted" title={e.actorId} data-testid="tl-actor">
              {actorName(e)}
            </span>
            {e.note && !REPORT_NOTE.test(e.note) && <div class="tl-note">{withNames(e.note)}</div>}
          </li>
        ))}
      </ol>
      {action && action.verb === "ledger" && (
        <CommandDialog
          title={`${t(action.step)} · ${inc.title}`}
          submitLabel={t(action.step)}
          testid="ledger-dialog"
          version={inc.version}
          intro={action.step === "ledgerKeep" ? t("ledgerKeepIntro") : action.step === "ledgerReturn" ? t("ledgerReturnIntro") : undefined}
          until={action.step === "ledgerKeep" ? { label: t("ledgerKeepUntil"), after: Date.now() } : undefined}
          note={{
            label: t(action.step === "ledgerApprove" ? "ledgerApproveNote" : action.step === "ledgerDeny" ? "ledgerDenyNote" : "ledgerReviewNote"),
            required: action.step === "ledgerDeny",
            max: 1000,
          }}
          send={(version, commandId, v) => {
            const base = { commandId, incidentId: inc.incidentId, expectedVersion: version };
            if (action.step === "ledgerApprove" || action.step === "ledgerDeny")
              return dispatch.decideLedger({ ...base, body: { case: "decideLedger", value: { approve: action.step === "ledgerApprove", note: v.note } } });
            // Kept: until the new review date; returned: no date.
            const extendTo = action.step === "ledgerKeep" ? timestampFromMs(new Date(v.until).getTime()) : undefined;
            return dispatch.reviewLedger({ ...base, body: { case: "reviewLedger", value: { extendTo, note: v.note } } });
          }}
          refresh={() => refresh(action)}
          onDone={() => {
            setMsg(t(`done_${action.step}`));
            setAction(null);
            detail.reload();
            p.onChanged();
          }}
          onClose={() => setAction(null)}
        />
      )}
      {action && action.verb === "releaseAssist" && (
        <CommandDialog
          title={`${t("release_assist")} · ${action.department} · ${inc.title}`}
          submitLabel={t("release_assist")}
          testid="release-assist-dialog"
          version={inc.version}
          intro={t("releaseAssistIntro")}
          note={{ label: t("releaseAssistNote"), required: true, max: 1000 }}
          send={(version, commandId, v) =>
            dispatch.releaseAssist({
              commandId,
              incidentId: inc.incidentId,
              expectedVersion: version,
              body: { case: "releaseAssist", value: { taskId: action.taskId, note: v.note } },
            })
          }
          refresh={() => refresh(action)}
          onDone={() => {
            setMsg(t("done_release_assist", { who: action.department }));
            setAction(null);
            detail.reload();
            p.onChanged();
          }}
          onClose={() => setAction(null)}
        />
      )}
      {action && (action.verb === "extensionApprove" || action.verb === "extensionDeny") && (
        <CommandDialog
          title={`${t(action.verb)} · ${inc.title}`}
          submitLabel={t(action.verb)}
          testid="decide-extension-dialog"
          version={inc.version}
          note={{ label: t(action.verb === "extensionApprove" ? "extensionApproveNote" : "extensionDenyNote"), required: action.verb === "extensionDeny", max: 1000 }}
          send={(version, commandId, v) =>
            dispatch.decideExtension({
              commandId,
              incidentId: inc.incidentId,
              expectedVersion: version,
              body: { case: "decideExtension", value: { approve: action.verb === "extensionApprove", note: v.note } },
            })
          }
          refresh={() => refresh(action)}
          onDone={() => {
            setMsg(t(action.verb === "extensionApprove" ? "done_extensionApprove" : "done_extensionDeny"));
            setAction(null);
            detail.reload();
            p.onChanged();
          }}
          onClose={() => setAction(null)}
        />
      )}
      {action && (action.verb === "disputeUphold" || action.verb === "disputeReject") && (
        <CommandDialog
          title={`${t(action.verb)} · ${action.department} · ${inc.title}`}
          submitLabel={t(action.verb)}
          testid="decide-dispute-dialog"
          version={inc.version}
          note={{ label: t(action.verb === "disputeUphold" ? "disputeUpholdNote" : "disputeRejectNote"), required: action.verb === "disputeReject", max: 1000 }}
          send={(version, commandId, v) =>
            dispatch.decideDispute({
              commandId,
              incidentId: inc.incidentId,
              expectedVersion: version,
              body: { case: "decideDispute", value: { taskId: action.taskId, uphold: action.verb === "disputeUphold", note: v.note } },
            })
          }
          refresh={() => refresh(action)}
          onDone={() => {
            setMsg(action.verb === "disputeUphold" ? t("done_disputeUphold", { to: action.to }) : t("done_disputeReject"));
            setAction(null);
            detail.reload();
            p.onChanged();
          }}
          onClose={() => setAction(null)}
        />
      )}
      {action && (action.verb === "supervise" || action.verb === "reassign" || action.verb === "superviseIncident") && (
        <CommandDialog
          title={
            action.verb === "superviseIncident"
              ? `${t("superviseIncident")} · ${inc.title}`
              : `${t(action.verb)} · ${action.department} · ${inc.title}`
          }
          submitLabel={t(action.verb === "reassign" ? "reassign" : "supervise")}
          testid={`${action.verb === "reassign" ? "reassign" : "supervise"}-dialog`}
          version={inc.version}
          intro={action.verb === "reassign" ? undefined : t("superviseIntro")}
          note={{ label: t(action.verb === "reassign" ? "reassignNote" : "superviseNote"), required: action.verb !== "reassign", max: 1000 }}
          departments={action.verb === "reassign" ? deptOptions : undefined}
          send={(version, commandId, v) => {
            const base = { commandId, incidentId: inc.incidentId, expectedVersion: version };
            if (action.verb === "reassign")
              return dispatch.reassign({ ...base, body: { case: "reassign", value: { taskId: action.taskId, toDepartmentCode: v.to, note: v.note } } });
            const taskId = action.verb === "supervise" ? action.taskId : "";
            return dispatch.supervise({ ...base, body: { case: "supervise", value: { taskId, note: v.note } } });
          }}
          refresh={() => refresh(action)}
          onDone={(v) => {
            setMsg(
              action.verb === "reassign"
                ? t("done_reassign", { from: action.department, to: departments.get(v.to) ?? "" })
                : action.verb === "supervise"
                  ? t("done_supervise", { who: action.department })
                  : t("done_superviseIncident"),
            );
            setAction(null);
            detail.reload();
            p.onChanged();
          }}
          onClose={() => setAction(null)}
        />
      )}
    </div>
  );
}
