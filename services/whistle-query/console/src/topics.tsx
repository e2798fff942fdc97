// 每月一题 / 主动治理: an operator's month of proposed topics (ListHotspots) with their evidence, and
// the Adopt action — a dialog naming the lead department, the assisting departments, the
// milestones and the deadline — that opens a proactive case through dispatch (Dispatch.Adopt). A
// topic already adopted names its case; the case opens in the incident drawer like any incident.
import { useMemo, useState } from "preact/hooks";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { cc, dispatch } from "./api";
import { t, levelLabel } from "./i18n";
import { type Hotspot } from "./gen/whistle/v1/command_center_pb.js";
import { useLoad } from "./util";
import { type Chrome } from "./main";
import { PageFrame } from "./frame";
import { LoadNote, ProblemNote } from "./notes";
import { Modal, useDialogCommand } from "./dialog";
import { Drawer, type DrawerTarget } from "./drawer";

/** The Chinese name of a topic kind (steady 常发, growing 增长, returning 复发, seasonal 季节性). */
function kindLabel(kind: string): string {
  const known = ["steady", "growing", "returning", "seasonal"];
  return known.includes(kind) ? t(`kind_${kind}` as "kind_steady") : kind;
}

/** `YYYY-MM-DD` of a day `days` from now, in the browser's time zone (the screen is in Ordos). */
function dayFromNow(days: number): string {
  const d = new Date(Date.now() + days * 86400000);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** The end of a `YYYY-MM-DD` day in the browser's time zone, as ms; NaN when it is no date. */
export function endOfDay(date: string): number {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return NaN;
  return new Date(`${date}T23:59:59`).getTime();
}

export function Topics(p: Chrome) {
  const s = p.session;
  const [adopting, setAdopting] = useState<Hotspot | null>(null);
  const [msg, setMsg] = useState("");
  const [drawer, setDrawer] = useState<DrawerTarget | null>(null);
  // The proposal reads the complete months before this one, so it hardly moves within a month; a
  // city's costs seconds (docs/benchmarks.md). Read again every ten minutes and after each act.
  const topics = useLoad((signal) => cc.listHotspots({ areaCode: "", month: "", pageSize: 0 }, { signal }), "", 600000);
  const list = topics.data?.hotspots ?? [];

  return (
    <PageFrame
      chrome={p}
      cls="topics"
      testid="topics"
      title={
        <>
          {t("topics")} · <b>{s.areaName}</b>
        </>
      }
      toast={msg ? { text: msg, testid: "topics-ok" } : null}
      overlays={
        <>
      {adopting && (
        <AdoptDialog
          topic={adopting}
          month={topics.data?.month ?? ""}
          onClose={() => setAdopting(null)}
          onDone={(incidentId) => {
            setAdopting(null);
            setMsg(t("adoptedOk"));
            topics.reload();
            setDrawer({ kind: "incident", id: incidentId });
          }}
        />
      )}
      {drawer && <Drawer target={drawer} session={s} onClose={() => setDrawer(null)} onOpen={(id) => setDrawer({ kind: "incident", id })} onChanged={() => topics.reload()} />}
        </>
      }
    >
        <section class="panel">
          <div class="panel-head">
            <h2 class="panel-title">
              {t("topicsOfMonth", { month: topics.data?.month ?? "" })}
              {topics.data?.stored && (
                <span class="tag" data-testid="topics-stored" title={t("topicsStoredHint")}>
                  {t("topicsStored")}
                </span>
              )}
            </h2>
            <LoadNote l={topics} testid="topics" />
            <button class="link" onClick={() => topics.reload()}>
              {t("refresh")}
            </button>
          </div>
          {topics.data && (
            <p class="muted small" data-testid="topics-basis">
              {t("topicsBasis", { from: topics.data.fromMonth, to: topics.data.toMonth, reports: String(topics.data.reports) })}
            </p>
          )}
          <div class="panel-body">
            {topics.data && list.length === 0 && <div class="empty">{t("noTopics")}</div>}
            <ol class="topic-list">
              {list.map((h) => (
                <li class="topic" data-testid="topic" data-key={h.key} data-adopted={h.adoptedIncidentId}>
                  <div class="topic-head">
                    <b data-testid="topic-group">{h.groupName || h.group}</b>
                    <span class="muted">{h.hasCentre ? t("topicPlace", { grid: h.gridCode }) : t("topicGrid", { grid: h.gridCode })}</span>
                    {h.kinds.map((k) => (
                      <span class="tag">{kindLabel(k)}</span>
                    ))}
                    <span class="muted small">
                      {t("topicScore", { score: h.score.toFixed(2), level: levelLabel(h.solvableAt) })}
                    </span>
                  </div>
                  <div data-testid="topic-summary">{h.summary}</div>
                  <div class="muted small" data-testid="topic-months" aria-label={t("topicMonths")}>
                    {t("topicMonths")}：{h.months.slice(-12).map((m) => String(m.count)).join(" ")}
                  </div>
                  <div class="row">
                    {h.adoptedIncidentId ? (
                      <button class="act good" data-testid="topic-case" onClick={() => setDrawer({ kind: "incident", id: h.adoptedIncidentId })}>
                        <span class="tag proactive-tag">{t("proactiveTag")}</span> {t("topicOpenCase")}
                      </button>
                    ) : (
                      <button class="primary" data-testid="topic-adopt" onClick={() => setAdopting(h)}>
                        {t("adopt")}
                      </button>
                    )}
                  </div>
                </li>
              ))}
            </ol>
          </div>
        </section>
    </PageFrame>
  );
}

interface MilestoneRow {
  title: string;
  due: string;
}

function AdoptDialog(p: { topic: Hotspot; month: string; onClose: () => void; onDone: (incidentId: string) => void }) {
  const district = p.topic.gridCode.slice(0, 6);
  const departments = useLoad((signal) => cc.listDepartments({ areaCode: p.topic.gridCode }, { signal }), district, 0);
  const [lead, setLead] = useState("");
  const [assisting, setAssisting] = useState<string[]>([]);
  const [milestones, setMilestones] = useState<MilestoneRow[]>([{ title: "", due: dayFromNow(14) }]);
  const [deadline, setDeadline] = useState(dayFromNow(60));
  const [note, setNote] = useState("");
  const { busy, problem, send } = useDialogCommand();

  const deadlineMs = endOfDay(deadline);
  const bad = useMemo(() => {
    const now = Date.now();
    return {
      lead: !lead,
      deadline: !(deadlineMs > now),
      milestones: milestones.some((m) => !m.title.trim() || !(endOfDay(m.due) > now) || endOfDay(m.due) > deadlineMs),
    };
  }, [lead, deadline, milestones]);
  const invalid = bad.lead || bad.deadline || bad.milestones;
  const options = departments.data?.departments ?? [];

  const setMilestone = (i: number, patch: Partial<MilestoneRow>) => setMilestones((old) => old.map((m, j) => (j === i ? { ...m, ...patch } : m)));
  const submit = async () => {
    if (busy || invalid) return;
    const ok = await send((commandId) =>
      dispatch.adopt({
        commandId,
        body: {
          case: "adopt",
          value: {
            topicKey: p.topic.key,
            month: p.month,
            leadDepartmentCode: lead,
            assistingDepartmentCodes: assisting.filter((a) => a !== lead),
            milestones: milestones.map((m) => ({ title: m.title.trim(), due: timestampFromMs(endOfDay(m.due)) })),
            deadline: timestampFromMs(deadlineMs),
            note: note.trim(),
          },
        },
      }),
    );
    if (ok) p.onDone(ok.incidentId);
  };

  return (
    <Modal title={t("adoptTitle")} testid="adopt-dialog" onClose={p.onClose} onSubmit={submit}>
      <p class="muted" data-testid="adopt-topic">
        {p.topic.groupName || p.topic.group} · {p.topic.summary}
      </p>
      <label>
        {t("adoptLead")}
        <select value={lead} required data-testid="adopt-lead" onChange={(e) => setLead((e.target as HTMLSelectElement).value)}>
          <option value="">{t("chooseDepartment")}</option>
          {options.map((d) => (
            <option value={d.code}>{d.name}</option>
          ))}
        </select>
      </label>
      <fieldset class="assisting" data-testid="adopt-assisting">
        <legend>{t("adoptAssisting")}</legend>
        {options
          .filter((d) => d.code !== lead)
          .map((d) => (
            <label class="check">
              <input
                type="checkbox"
                value={d.code}
                data-testid="adopt-assist"
                checked={assisting.includes(d.code)}
                onChange={(e) => {
                  const on = (e.target as HTMLInputElement).checked;
                  setAssisting((old) => (on ? [...old, d.code] : old.filter((x) => x !== d.code)));
                }}
              />
              {d.name}
            </label>
          ))}
      </fieldset>
      <fieldset data-testid="adopt-milestones">
        <legend>{t("adoptMilestones")}</legend>
        {milestones.map((m, i) => (
          <div class="row milestone-row" data-testid="adopt-milestone">
            <input aria-label={t("milestoneTitle")} placeholder={t("milestoneTitle")} maxLength={200} value={m.title} data-testid="milestone-title" onInput={(e) => setMilestone(i, { title: (e.target as HTMLInputElement).value })} />
            <input type="date" aria-label={t("milestoneDue")} value={m.due} data-testid="milestone-due" onInput={(e) => setMilestone(i, { due: (e.target as HTMLInputElement).value })} />
            <button type="button" class="link" data-testid="milestone-remove" onClick={() => setMilestones((old) => old.filter((_, j) => j !== i))}>
              {t("remove")}
            </button>
          </div>
        ))}
        {milestones.length < 20 && (
          <button type="button" class="link" data-testid="milestone-add" onClick={() => setMilestones((old) => [...old, { title: "", due: dayFromNow(30) }])}>
            {t("milestoneAdd")}
          </button>
        )}
      </fieldset>
      <label>
        {t("adoptDeadline")}
        <input type="date" required value={deadline} data-testid="adopt-deadline" onInput={(e) => setDeadline((e.target as HTMLInputElement).value)} />
      </label>
      {bad.milestones && <div class="field-hint" data-testid="adopt-milestone-hint">{t("milestoneHint")}</div>}
      {bad.deadline && <div class="field-hint" data-testid="adopt-deadline-hint">{t("adoptDeadlineHint")}</div>}
      <label>
        {t("note")}
        <textarea rows={2} maxLength={1000} value={note} data-testid="adopt-note" onInput={(e) => setNote((e.target as HTMLTextAreaElement).value)} />
      </label>
      {problem && <ProblemNote p={problem} testid="adopt-error" />}
      <div class="row">
        <button type="submit" class="primary" disabled={busy || invalid} data-testid="adopt-submit">
          {busy ? t("sending") : t("adopt")}
        </button>
        <button type="button" onClick={p.onClose} data-testid="adopt-cancel">
          {t("cancel")}
        </button>
      </div>
    </Modal>
  );
}
