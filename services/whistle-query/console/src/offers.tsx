// 党员接单: a registered Party member's phone page (role `member`, docs/party.md). The open offers
// of the member's community — those offered to one of the member's teams first, then the newest —
// with 认领 (claim); the offers the member holds with their claim's countdown, 放弃 (release) and
// 完成 (complete: a note, the time spent and photos, uploaded as the report form does); and the
// member's hours and points this month and this year from the service ledger (GetServiceBoard).
//
// Claims are first come, one winner (dispatch serialises them): a member who loses is told so in
// words and the list is read again. A command keeps its id across a network failure, so sending it
// again never claims or completes twice, and every button is disabled while its command is out.
import { useEffect, useRef, useState } from "preact/hooks";
import { cc, dispatch, uuid } from "./api";
import { t } from "./i18n";
import { describe, type Problem } from "./errors";
import { ServiceBoardKind, type VolunteerOffer } from "./gen/whistle/v1/command_center_pb.js";
import { useLoad, useNow, tsMs, fmtDateTime, fmtCountdown } from "./util";
import { useCatalogue, categoryName } from "./catalogue";
import { type Chrome } from "./main";
import { PageFrame, type Toast } from "./frame";
import { LoadNote, ProblemNote } from "./notes";
import { Modal, useDialogCommand } from "./dialog";
import { PhotoPicker, uploadAll } from "./photos";

const POLL_MS = 15_000;
/** The policy's `max_hours` in Ordos (dispatch refuses more): the form's upper bound. */
const MAX_MINUTES = 24 * 60;

/** The year and month (1–12) now in Ordos (UTC+8), as the service ledger counts them. */
export function ordosMonth(now: number): { year: number; month: number } {
  const d = new Date(now + 8 * 3600_000);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1 };
}

/** Open offers the member may claim: a team's (offered to one of the member's teams) first, then
 * the newest. Offers carry no coordinates: all of them are in the member's own community. */
export function claimable(offers: VolunteerOffer[]): VolunteerOffer[] {
  return offers
    .filter((o) => o.status === "open")
    .sort((a, b) => Number(!!b.teamId) - Number(!!a.teamId) || tsMs(b.offeredAt) - tsMs(a.offeredAt));
}

/** Offers the member holds or held: live ones (claimed, done) first, then by when offered. */
export function mine(offers: VolunteerOffer[], me: string): VolunteerOffer[] {
  const live = (o: VolunteerOffer) => (o.status === "claimed" ? 2 : o.status === "done" ? 1 : 0);
  return offers.filter((o) => o.memberId === me && o.status !== "open").sort((a, b) => live(b) - live(a) || tsMs(b.offeredAt) - tsMs(a.offeredAt));
}

/**
 * A volunteer command with an id kept across a network failure (a retry is the same command, never
 * applied twice) and renewed after any answer; `busy` while it is out, so nothing is sent twice.
 */
function useCommand() {
  const ids = useRef(new Map<string, string>());
  const [busy, setBusy] = useState("");
  async function send(key: string, call: (commandId: string) => Promise<unknown>): Promise<{ ok: true } | { ok: false; problem: Problem }> {
    let id = ids.current.get(key);
    if (!id) ids.current.set(key, (id = uuid()));
    setBusy(key);
    try {
      await call(id);
      ids.current.delete(key);
      return { ok: true };
    } catch (e) {
      const problem = describe(e, "command");
      if (problem.kind !== "network") ids.current.delete(key);
      return { ok: false, problem };
    } finally {
      setBusy("");
    }
  }
  return { busy, send };
}

export function Offers(p: Chrome) {
  const s = p.session;
  const me = s.personId;
  const now = useNow(1000);
  useCatalogue();
  const offers = useLoad((signal) => cc.listOffers({ pageSize: 200 }, { signal }), "offers", POLL_MS);
  const { year, month } = ordosMonth(now);
  const board = useLoad(
    async (signal) => {
      const ask = (m: number) => cc.getServiceBoard({ kind: ServiceBoardKind.MEMBERS, year, month: m, pageSize: 200 }, { signal });
      const [y, m] = await Promise.all([ask(0), ask(month)]);
      const row = (b: typeof y) => b.rows.find((r) => r.key === me);
      return { year: row(y), month: row(m) };
    },
    `${year}-${month}`,
    60_000,
  );
  const cmd = useCommand();
  const [toast, setToast] = useState<Toast | null>(null);
  const [problem, setProblem] = useState<{ offer: string; p: Problem } | null>(null);
  const [lost, setLost] = useState<VolunteerOffer | null>(null);
  const [completing, setCompleting] = useState<VolunteerOffer | null>(null);
  const [releasing, setReleasing] = useState<VolunteerOffer | null>(null);

  useEffect(() => {
    if (!toast) return;
    const id = setTimeout(() => setToast(null), 6000);
    return () => clearTimeout(id);
  }, [toast]);

  const all = offers.data?.offers ?? [];
  const open = claimable(all);
  const held = mine(all, me);

  async function claim(o: VolunteerOffer) {
    if (cmd.busy) return;
    setProblem(null);
    setLost(null);
    const r = await cmd.send(`claim-${o.offerId}`, (commandId) =>
      dispatch.claimOffer({ commandId, body: { case: "claimOffer", value: { offerId: o.offerId } } }),
    );
    if (r.ok) {
      setToast({ text: t("claimedOk", { title: o.title }), testid: "offers-ok" });
      offers.reload();
      return;
    }
    if (r.problem.kind === "network") {
      setProblem({ offer: o.offerId, p: r.problem });
      return;
    }
    // Refused: read the offers again and say what happened. Taken by another member (or lapsed
    // meanwhile) is the everyday case of a first-come offer, told in plain words.
    try {
      const fresh = await cc.listOffers({ pageSize: 200 });
      const current = fresh.offers.find((x) => x.offerId === o.offerId);
      if (!current || (current.status !== "open" && current.memberId !== me)) setLost(o);
      else setProblem({ offer: o.offerId, p: r.problem });
    } catch {
      setProblem({ offer: o.offerId, p: r.problem });
    }
    offers.reload();
  }

  const claimedYear = board.data?.year;
  const claimedMonth = board.data?.month;
  return (
    <PageFrame
      chrome={p}
      cls="phone offers"
      testid="offers-page"
      title={
        <>
          {t("offers")} <span class="muted small">· {s.areaName}</span>
        </>
      }
      toast={toast}
      overlays={
        <>
          {completing && (
            <CompleteDialog
              offer={completing}
              onClose={() => setCompleting(null)}
              onDone={() => {
                setCompleting(null);
                setToast({ text: t("completedOk"), testid: "offers-ok" });
                offers.reload();
                board.reload();
              }}
            />
          )}
          {releasing && (
            <ReleaseDialog
              offer={releasing}
              onClose={() => setReleasing(null)}
              onDone={() => {
                setReleasing(null);
                setToast({ text: t("releasedOk"), testid: "offers-ok" });
                offers.reload();
              }}
            />
          )}
        </>
      }
    >
      <section class="card" data-testid="my-service" aria-labelledby="my-service-title">
        <h2 id="my-service-title">{t("myService")}</h2>
        <LoadNote l={board} testid="my-service" />
        <div class="service-grid">
          {[
            ["month", t("thisMonth"), claimedMonth],
            ["year", t("thisYear", { year }), claimedYear],
          ].map(([key, label, row]) => {
            const r = row as typeof claimedYear;
            const hours = r?.hours ?? 0;
            return (
              <div class="service-cell" data-testid={`my-service-${key}`} data-hours={board.data ? hours.toFixed(2) : ""} data-points={board.data ? String(r?.points ?? 0) : ""}>
                <div class="muted small">{label as string}</div>
                <div>
                  <b class="big-num">{board.data ? hours.toFixed(1) : "—"}</b> {t("hoursUnit")}
                </div>
                <div class="small">
                  {board.data ? String(r?.points ?? 0) : "—"} {t("pointsUnit")} · {t("worksDone", { n: board.data ? String(r?.confirmed ?? 0) : "—" })}
                </div>
              </div>
            );
          })}
        </div>
      </section>

      <section class="card" data-testid="my-claims" aria-labelledby="my-claims-title">
        <h2 id="my-claims-title">{t("myClaims")}</h2>
        {offers.data && held.length === 0 && <div class="empty">{t("noClaims")}</div>}
        <ul class="offer-list">
          {held.map((o) => {
            const due = tsMs(o.claimDeadline);
            const cd = fmtCountdown(due, now);
            return (
              <li class="offer" data-testid="my-claim" data-offer={o.offerId} data-status={o.status}>
                <div class="mr-head">
                  <span class="strong">{o.title}</span>
                  <span class={`status ${o.status === "claimed" ? "s2" : o.status === "done" ? "pending" : o.status === "confirmed" ? "s5" : "s6"}`} data-testid="my-claim-status">
                    {offerStatusLabel(o.status)}
                  </span>
                </div>
                <OfferFacts o={o} place={s.areaName} />
                {o.status === "claimed" && due > 0 && (
                  <div class="small">
                    {t("claimDue", { time: fmtDateTime(due) })} <span class={cd.late ? "late" : "countdown"} data-testid="claim-countdown">{cd.text}</span>
                  </div>
                )}
                {o.status === "confirmed" && (
                  <div class="small" data-testid="my-claim-credit">
                    {t("credited", { hours: (o.minutes / 60).toFixed(1), points: String(o.points) })}
                  </div>
                )}
                {o.status === "claimed" && (
                  <div class="row">
                    <button type="button" class="primary" disabled={!!cmd.busy} data-testid="offer-complete" onClick={() => setCompleting(o)}>
                      {t("completeOffer")}
                    </button>
                    <button type="button" disabled={!!cmd.busy} data-testid="offer-release" onClick={() => setReleasing(o)}>
                      {t("releaseOffer")}
                    </button>
                  </div>
                )}
              </li>
            );
          })}
        </ul>
      </section>

      <section class="card" data-testid="open-offers" aria-labelledby="open-offers-title">
        <h2 id="open-offers-title">
          {t("openOffers")} <span class="muted small" data-testid="open-count">{offers.data ? t("offerCount", { n: open.length }) : ""}</span>
        </h2>
        <div class="row">
          <LoadNote l={offers} testid="offers" />
          <button
            type="button"
            class="link"
            onClick={() => {
              offers.reload();
              board.reload();
            }}
            data-testid="offers-refresh"
          >
            {t("refresh")}
          </button>
        </div>
        {lost && (
          <div class="error" role="alert" data-testid="claim-lost" data-offer={lost.offerId}>
            <b>{t("claimLostTitle")}</b>
            <div class="small">{t("claimLostBody", { title: lost.title })}</div>
          </div>
        )}
        {offers.data && open.length === 0 && <div class="empty">{t("noOffers")}</div>}
        <ul class="offer-list">
          {open.map((o) => (
            <li class="offer" data-testid="open-offer" data-offer={o.offerId} data-kind={o.kind}>
              <div class="mr-head">
                <span class="strong">{o.title}</span>
                {o.teamId && <span class="tag">{t("teamOffer")}</span>}
              </div>
              <OfferFacts o={o} place={s.areaName} />
              {o.detail && <div class="small offer-detail">{o.detail}</div>}
              {problem?.offer === o.offerId && <ProblemNote p={problem.p} testid="claim-error" cls="error small" />}
              <button
                type="button"
                class="primary big-btn"
                disabled={!!cmd.busy}
                data-testid="offer-claim"
                onClick={() => claim(o)}
              >
                {cmd.busy === `claim-${o.offerId}` ? t("sending") : problem?.offer === o.offerId ? t("retry") : t("claimOffer")}
              </button>
            </li>
          ))}
        </ul>
      </section>
    </PageFrame>
  );
}

/** 微心愿 or the incident's category, the place and when it was offered. */
function OfferFacts({ o, place }: { o: VolunteerOffer; place: string }) {
  return (
    <div class="muted small" data-testid="offer-facts">
      <span class="tag">{o.kind === "wish" ? t("wishTag") : categoryName(o.category)}</span> {place} · {t("offeredAt", { time: fmtDateTime(tsMs(o.offeredAt)) })}
      {o.returns > 0 && ` · ${t("offerReturns", { n: o.returns })}`}
    </div>
  );
}

export function offerStatusLabel(status: string): string {
  switch (status) {
    case "open":
      return t("offer_open");
    case "claimed":
      return t("offer_claimed");
    case "done":
      return t("offer_done");
    case "confirmed":
      return t("offer_confirmed");
    case "withdrawn":
      return t("offer_withdrawn");
    default:
      return status;
  }
}

/** 完成: what was done, the time spent and photos of the work. */
function CompleteDialog(p: { offer: VolunteerOffer; onClose: () => void; onDone: () => void }) {
  const [note, setNote] = useState("");
  const [hours, setHours] = useState("1");
  const [photos, setPhotos] = useState<Blob[]>([]);
  const { busy, problem, send } = useDialogCommand();
  const minutes = Math.round(Number(hours) * 60);
  const badTime = !Number.isFinite(minutes) || minutes < 1 || minutes > MAX_MINUTES;
  const invalid = !note.trim() || badTime;
  async function submit() {
    if (busy || invalid) return;
    const done = await send(async (commandId) => {
      // Uploaded again on a retry: a photo's id is its hash, so nothing is stored twice.
      const photoIds = await uploadAll(photos);
      return dispatch.completeOffer({ commandId, body: { case: "completeOffer", value: { offerId: p.offer.offerId, note: note.trim(), minutes, photoIds } } });
    });
    if (done) p.onDone();
  }
  return (
    <Modal title={t("completeTitle")} testid="complete-dialog" onClose={p.onClose} onSubmit={submit}>
      <p class="muted">{p.offer.title}</p>
      <label>
        {t("completeNote")}
        <textarea rows={3} maxLength={2000} required value={note} data-testid="complete-note" onInput={(e) => setNote((e.target as HTMLTextAreaElement).value)} />
      </label>
      <label>
        {t("completeHours")}
        <input type="number" inputMode="decimal" min="0.1" max={String(MAX_MINUTES / 60)} step="any" value={hours} data-testid="complete-hours" onInput={(e) => setHours((e.target as HTMLInputElement).value)} />
      </label>
      {badTime && <div class="field-hint" data-testid="complete-hours-hint">{t("completeHoursHint")}</div>}
      <PhotoPicker photos={photos} onChange={setPhotos} label={t("photos")} testid="complete-photos" />
      {problem && <ProblemNote p={problem} testid="complete-error" />}
      <div class="row">
        <button type="submit" class="primary" disabled={busy || invalid} data-testid="complete-submit">
          {busy ? t("sending") : problem ? t("retry") : t("completeOffer")}
        </button>
        <button type="button" onClick={p.onClose} data-testid="complete-cancel">
          {t("cancel")}
        </button>
      </div>
    </Modal>
  );
}

/** 放弃: gives the offer back to the community, with an optional reason. */
function ReleaseDialog(p: { offer: VolunteerOffer; onClose: () => void; onDone: () => void }) {
  const [note, setNote] = useState("");
  const { busy, problem, send } = useDialogCommand();
  async function submit() {
    if (busy) return;
    const done = await send((commandId) =>
      dispatch.releaseOffer({ commandId, body: { case: "releaseOffer", value: { offerId: p.offer.offerId, note: note.trim() } } }),
    );
    if (done) p.onDone();
  }
  return (
    <Modal title={t("releaseTitle")} testid="release-dialog" onClose={p.onClose} onSubmit={submit}>
      <p class="muted">{t("releaseBody", { title: p.offer.title })}</p>
      <label>
        {t("releaseNote")}
        <textarea rows={2} maxLength={2000} value={note} data-testid="release-note" onInput={(e) => setNote((e.target as HTMLTextAreaElement).value)} />
      </label>
      {problem && <ProblemNote p={problem} testid="release-error" />}
      <div class="row">
        <button type="submit" class="primary" disabled={busy} data-testid="release-submit">
          {busy ? t("sending") : problem ? t("retry") : t("releaseOffer")}
        </button>
        <button type="button" onClick={p.onClose} data-testid="release-cancel">
          {t("cancel")}
        </button>
      </div>
    </Modal>
  );
}
