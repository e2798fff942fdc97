// 领导结对联系: a paired leader's view (role `leader`, docs/leaders.md). The streets and communities
// paired with the leader with their open and overdue counts, and their open incidents, the most
// pressing first (ListPairedIncidents: overdue, then the highest level, then the nearest
// deadline). Each opens in the incident drawer, where the leader endorses a 督办 (领导督办) with an
// instruction (Dispatch.Endorse) that the timeline shows as such. The bell (NavLinks) lists what
// the leader was told: escalations to the district, overdue incidents and supervisions.
import { useEffect, useState } from "preact/hooks";
import { cc, dispatch } from "./api";
import { t, levelLabel, incidentStatusLabel } from "./i18n";
import { type IncidentSummary } from "./gen/whistle/v1/command_center_pb.js";
import { useLoad, useNow, tsMs, fmtCountdown } from "./util";
import { useCatalogue, categoryName } from "./catalogue";
import { type Chrome } from "./main";
import { PageFrame, type Toast } from "./frame";
import { LoadNote, ProblemNote } from "./notes";
import { Modal, useDialogCommand } from "./dialog";
import { Drawer, type DrawerTarget } from "./drawer";

const POLL_MS = 15_000;

export function Paired(p: Chrome) {
  const s = p.session;
  const now = useNow(1000);
  useCatalogue();
  const view = useLoad((signal) => cc.listPairedIncidents({ pageSize: 200 }, { signal }), "paired", POLL_MS);
  const [drawer, setDrawer] = useState<DrawerTarget | null>(null);
  const [endorsing, setEndorsing] = useState<string | null>(null);
  const [toast, setToast] = useState<Toast | null>(null);
  // Remounts the drawer after an endorsement so it reads the incident (and its timeline) again.
  const [drawerKey, setDrawerKey] = useState(0);
  useEffect(() => {
    if (!toast) return;
    const id = setTimeout(() => setToast(null), 6000);
    return () => clearTimeout(id);
  }, [toast]);

  const areas = view.data?.areas ?? [];
  const incidents = view.data?.incidents ?? [];
  return (
    <PageFrame
      chrome={p}
      cls="paired"
      testid="paired"
      title={
        <>
          {t("paired")} · <b>{s.personName || s.areaName}</b>
        </>
      }
      toast={toast}
      overlays={
        <>
          {drawer && (
            <Drawer
              key={drawerKey}
              target={drawer}
              session={s}
              onClose={() => setDrawer(null)}
              onOpen={(id) => setDrawer({ kind: "incident", id })}
              onChanged={() => view.reload()}
              onEndorse={(id) => setEndorsing(id)}
            />
          )}
          {endorsing && (
            <EndorseDialog
              incidentId={endorsing}
              onClose={() => setEndorsing(null)}
              onDone={() => {
                setEndorsing(null);
                setToast({ text: t("endorsedOk"), testid: "paired-ok" });
                setDrawerKey((k) => k + 1);
                view.reload();
              }}
            />
          )}
        </>
      }
    >
      <section class="panel" data-testid="paired-areas" aria-labelledby="paired-areas-title">
        <div class="panel-head">
          <h2 class="panel-title" id="paired-areas-title">
            {t("pairedAreas")}
          </h2>
          <LoadNote l={view} testid="paired" />
          <button type="button" class="link" onClick={() => view.reload()}>
            {t("refresh")}
          </button>
        </div>
        <div class="panel-body">
          {view.data && areas.length === 0 && <div class="empty">{t("noPairedAreas")}</div>}
          <ul class="paired-areas">
            {areas.map((a) => (
              <li data-testid="paired-area" data-area={a.areaCode} data-open={a.openCount} data-overdue={a.overdueCount}>
                <b>{a.name}</b> <span class="tag">{levelLabel(a.level)}</span>{" "}
                <span class="small">{t("pairedOpen", { n: a.openCount })}</span>
                {a.overdueCount > 0 && <span class="badge bad">{t("pairedOverdue", { n: a.overdueCount })}</span>}
              </li>
            ))}
          </ul>
        </div>
      </section>
      <section class="panel" data-testid="paired-incidents" aria-labelledby="paired-incidents-title">
        <div class="panel-head">
          <h2 class="panel-title" id="paired-incidents-title">
            {t("pairedIncidents")} <span class="muted small" data-testid="paired-open-count">{view.data ? t("pairedOpen", { n: view.data.openCount }) : ""}</span>
          </h2>
        </div>
        <div class="panel-body">
          {view.data && incidents.length === 0 && <div class="empty">{t("noPairedIncidents")}</div>}
          {incidents.length > 0 && (
            <table class="tasks wide" data-testid="paired-table">
              <thead>
                <tr>
                  <th>{t("title")}</th>
                  <th>{t("category")}</th>
                  <th>{t("level")}</th>
                  <th>{t("status")}</th>
                  <th>{t("dueAt")}</th>
                </tr>
              </thead>
              <tbody>
                {incidents.map((i) => (
                  <PairedRow i={i} now={now} onOpen={() => setDrawer({ kind: "incident", id: i.incidentId })} />
                ))}
              </tbody>
            </table>
          )}
        </div>
      </section>
    </PageFrame>
  );
}

function PairedRow({ i, now, onOpen }: { i: IncidentSummary; now: number; onOpen: () => void }) {
  const due = tsMs(i.dueAt);
  const cd = fmtCountdown(due, now);
  const overdue = i.overdue || (due > 0 && cd.late);
  return (
    <tr data-testid="paired-incident" data-incident={i.incidentId} data-overdue={overdue ? "1" : ""} class={overdue ? "row-late" : ""}>
      <td>
        <button type="button" class="link title-link" data-testid="paired-open" onClick={onOpen}>
          {i.title}
        </button>
      </td>
      <td>{categoryName(i.category, i.categoryName)}</td>
      <td>{levelLabel(i.level)}</td>
      <td>
        <span class={`status s${i.status}`}>{incidentStatusLabel(i.status)}</span>
        {i.overdue && <span class="badge bad">{t("overdueTag")}</span>}
      </td>
      <td>{due > 0 ? <span class={cd.late ? "late" : "countdown"}>{cd.text}</span> : "—"}</td>
    </tr>
  );
}

/** 领导督办: the leader's instruction (批示), required, at most 1,000 characters. */
function EndorseDialog(p: { incidentId: string; onClose: () => void; onDone: () => void }) {
  const [note, setNote] = useState("");
  const { busy, problem, send } = useDialogCommand();
  async function submit() {
    if (busy || !note.trim()) return;
    const done = await send(async (commandId) => {
      const detail = await cc.getIncident({ incidentId: p.incidentId });
      return dispatch.endorse({
        commandId,
        incidentId: p.incidentId,
        expectedVersion: detail.incident?.version ?? 0n,
        body: { case: "endorse", value: { note: note.trim() } },
      });
    });
    if (done) p.onDone();
  }
  return (
    <Modal title={t("endorseTitle")} testid="endorse-dialog" onClose={p.onClose} onSubmit={submit}>
      <p class="muted">{t("endorseHint")}</p>
      <label>
        {t("endorseNote")}
        <textarea rows={3} maxLength={1000} required value={note} data-testid="endorse-note" onInput={(e) => setNote((e.target as HTMLTextAreaElement).value)} />
      </label>
      {problem && <ProblemNote p={problem} testid="endorse-error" />}
      <div class="row">
        <button type="submit" class="primary" disabled={busy || !note.trim()} data-testid="endorse-submit">
          {busy ? t("sending") : problem ? t("retry") : t("endorse")}
        </button>
        <button type="button" onClick={p.onClose} data-testid="endorse-cancel">
          {t("cancel")}
        </button>
      </div>
    </Modal>
  );
}
