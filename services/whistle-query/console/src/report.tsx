// 网格上报: the grid worker's phone form, their recent reports, and the follow-up (回访).
import { useEffect, useRef, useState } from "preact/hooks";
import { cc, dispatch, reporting, uuid } from "./api";
import { describe, rejectedText, type Problem } from "./errors";
import { ProblemNote, LoadNote } from "./notes";
import { t, incidentStatusLabel, satisfactionLabel, urgencyLabel } from "./i18n";
import { IncidentStatus, Satisfaction } from "./gen/whistle/v1/common_pb.js";
import { Urgency } from "./gen/whistle/v1/report_pb.js";
import { ReportOutcome, type SubmitReportResponse } from "./gen/whistle/v1/reporting_pb.js";
import type { MyReport } from "./gen/whistle/v1/command_center_pb.js";
import { useLoad, tsMs, fmtDateTime } from "./util";
import { useCatalogue, categoryName, groupName, categoryRules } from "./catalogue";
import { useOutbox, enqueue, flush, drop, type Queued, type SendResult } from "./outbox";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { NavLinks, type Chrome } from "./main";
import { PhotoPicker, uploadAll } from "./photos";
import qrcode from "qrcode-generator";

interface Pos {
  lat: number;
  lon: number;
  source: "gps" | "grid" | "none";
}

export function ReportForm(p: Chrome) {
  const s = p.session;
  const gridCode = s.areaCode;
  const [group, setGroup] = useState("");
  const [category, setCategory] = useState("");
  const [urgency, setUrgency] = useState<Urgency>(Urgency.NORMAL);
  const [title, setTitle] = useState("");
  const [desc, setDesc] = useState("");
  const [address, setAddress] = useState("");
  const [pos, setPos] = useState<Pos>({ lat: 0, lon: 0, source: "none" });
  const [reportId, setReportId] = useState(uuid());
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<SubmitReportResponse | null>(null);
  const [err, setErr] = useState<Problem | null>(null);
  const [missing, setMissing] = useState(false);
  const [gridName, setGridName] = useState("");
  const [queuedNote, setQueuedNote] = useState(false);
  const [photos, setPhotos] = useState<Blob[]>([]);
  const outbox = useOutbox(s.personId);
  const outcomeRef = useRef<HTMLDivElement>(null);

  const mine = useLoad((signal) => cc.listMyReports({ pageSize: 30 }, { signal }), "mine", 5000);
  const catalogue = useCatalogue();
  // The title is suggested from the category until the worker writes their own.
  const [suggested, setSuggested] = useState("");
  const choose = (code: string) => {
    setCategory(code);
    const name = categoryName(code);
    if (!title.trim() || title === suggested) {
      setTitle(name);
      setSuggested(name);
    }
  };

  // The grid's own position, then the device's if the browser already allows it.
  useEffect(() => {
    cc.getGridMap({ areaCode: gridCode }).then(
      (m) => {
        const c = m.cells.find((x) => x.gridCode === gridCode) ?? m.cells[0];
        if (c) {
          setGridName(c.name);
          setPos((p0) => (p0.source === "gps" ? p0 : { lat: c.lat, lon: c.lon, source: "grid" }));
        }
      },
      () => {},
    );
    navigator.permissions?.query({ name: "geolocation" as PermissionName }).then(
      (st) => st.state === "granted" && locate(),
      () => {},
    );
  }, []);

  function locate() {
    if (!("geolocation" in navigator)) return;
    navigator.geolocation.getCurrentPosition(
      (g) => setPos({ lat: g.coords.latitude, lon: g.coords.longitude, source: "gps" }),
      () => {},
      { enableHighAccuracy: true, timeout: 8000, maximumAge: 60000 },
    );
  }

  /** The report as the worker filed it, with its id: what is sent now or queued for later. */
  function draft(): Queued {
    return {
      reportId,
      person: s.personId,
      grid: gridCode,
      filedAt: Date.now(),
      category,
      urgency,
      title: title.trim(),
      description: desc.trim(),
      address: address.trim(),
      lat: pos.source === "none" ? 0 : pos.lat,
      lon: pos.source === "none" ? 0 : pos.lon,
      photos,
    };
  }

  /** A filed report is done with: the next one gets a new id and empty text. */
  function clearForm() {
    setReportId(uuid());
    setTitle("");
    setSuggested("");
    setDesc("");
    setPhotos([]);
  }

  async function submit(e: Event) {
    e.preventDefault();
    if (!category || !title.trim() || (categoryRules(category).photoRequired && !photos.length)) {
      setMissing(true);
      return;
    }
    const q = draft();
    setErr(null);
    setResult(null);
    setQueuedNote(false);
    // No network: straight into the outbox, sent when it returns.
    if (navigator.onLine === false) {
      await enqueue(q);
      setQueuedNote(true);
      clearForm();
      return;
    }
    setBusy(true);
    try {
      const res = await reporting.submitReport(await submitRequest(q));
      setResult(res);
      // A new report gets a new id; a refused one keeps its text to be corrected.
      setReportId(uuid());
      if (res.outcome !== ReportOutcome.REJECTED) clearForm();
      mine.reload();
    } catch (e2) {
      const problem = describe(e2, "command");
      if (problem.kind === "network") {
        // The answer may have been lost after the report arrived: the outbox resends the same id,
        // which files it once either way.
        await enqueue(q);
        setQueuedNote(true);
        clearForm();
      } else setErr(problem);
    } finally {
      setBusy(false);
    }
  }

  // The outbox is sent when the network returns, and retried every 10 s while anything waits.
  useEffect(() => {
    if (!outbox.some((q) => !q.error)) return;
    const send = async (q: Queued): Promise<SendResult> => {
      try {
        await reporting.submitReport(await submitRequest(q));
        return { done: true };
      } catch (e) {
        const problem = describe(e, "command");
        return problem.kind === "network" || problem.kind === "auth" ? { done: false } : { done: false, refused: problem.text };
      }
    };
    const go = () => {
      if (navigator.onLine === false) return;
      flush(s.personId, send).then((n) => n && mine.reload(), () => {});
    };
    go();
    addEventListener("online", go);
    const id = setInterval(go, 10000);
    return () => {
      removeEventListener("online", go);
      clearInterval(id);
    };
  }, [outbox]);

  useEffect(() => {
    if (result || queuedNote) outcomeRef.current?.scrollIntoView({ block: "nearest" });
  }, [result, queuedNote]);

  const groups = catalogue?.groups ?? [];
  const groupObj = groups.find((g) => g.code === group);

  return (
    <div class="page phone" data-testid="report-page">
      <header class="topbar phone-top">
        <div class="brand">
          <span class="emblem sm">哨</span>
          <span>
            {t("report")} <span class="muted small">· {gridName}</span>
          </span>
        </div>
        <NavLinks {...p} />
      </header>

      <form class="card form" onSubmit={submit} data-testid="report-form">
        <h2>{t("newReport")}</h2>
        {!catalogue && <div class="muted" data-testid="catalogue-loading">{t("catalogueLoading")}</div>}
        <div class="chips" data-testid="groups" role="group" aria-label={t("group")} data-policy={catalogue?.policyVersion ?? ""}>
          {groups.map((g) => (
            <button
              type="button"
              class={`chip-btn ${g.code === group ? "on" : ""}`}
              aria-pressed={g.code === group}
              data-testid={`group-${g.code}`}
              onClick={() => {
                setGroup(g.code);
                setCategory("");
              }}
            >
              {groupName(g.code)}
            </button>
          ))}
        </div>
        {groupObj && (
          <div class="chips sub" data-testid="categories" role="group" aria-label={t("category")}>
            {groupObj.categories.map((c) => (
              <button type="button" class={`chip-btn ${c.code === category ? "on" : ""}`} aria-pressed={c.code === category} data-testid={`category-${c.code}`} onClick={() => choose(c.code)}>
                {categoryName(c.code)}
              </button>
            ))}
          </div>
        )}
        {!groupObj && <div class="muted small">{t("chooseGroup")}</div>}

        <div class="seg" role="radiogroup" aria-label={t("urgency")}>
          {[Urgency.NORMAL, Urgency.URGENT, Urgency.EMERGENCY].map((u) => (
            <button type="button" role="radio" aria-checked={urgency === u} class={`seg-btn u${u} ${urgency === u ? "on" : ""}`} data-testid={`urgency-${u}`} onClick={() => setUrgency(u)}>
              {urgencyLabel(u)}
            </button>
          ))}
        </div>
        <label>
          {t("title")}
          <input value={title} maxLength={200} placeholder={t("titlePh")} onInput={(e) => setTitle((e.target as HTMLInputElement).value)} data-testid="report-title" />
        </label>
        <label>
          {t("description")}
          <textarea rows={3} maxLength={4000} value={desc} placeholder={t("descPh")} onInput={(e) => setDesc((e.target as HTMLTextAreaElement).value)} data-testid="report-desc" />
        </label>
        <label>
          {t("address")}
          <input value={address} maxLength={200} placeholder={t("addressPh")} onInput={(e) => setAddress((e.target as HTMLInputElement).value)} data-testid="report-address" />
        </label>
        <div class="loc" data-testid="report-location" data-source={pos.source}>
          <span>
            <span class="pin" aria-hidden="true" /> {pos.source === "none" ? t("gpsNone") : `${pos.lat.toFixed(5)}, ${pos.lon.toFixed(5)}`}{" "}
            <span class="muted small">({t(pos.source === "gps" ? "gpsFromDevice" : pos.source === "grid" ? "gpsFromGrid" : "gpsNone")})</span>
          </span>
          <button type="button" class="link" onClick={locate}>
            {t("useGps")}
          </button>
        </div>
        <PhotoPicker photos={photos} onChange={setPhotos} label={t("photos")} required={!!category && categoryRules(category).photoRequired} testid="report-photos" />
        {missing && (!category || !title.trim()) && (
          <div class="error" role="alert" data-testid="report-error">
            {t("titleRequired")}
          </div>
        )}
        {missing && category && title.trim() && categoryRules(category).photoRequired && !photos.length && (
          <div class="error" role="alert" data-testid="report-error">
            {t("photoRequired")}
          </div>
        )}
        {err && <ProblemNote p={err} testid="report-error" />}
        <button type="submit" class="primary big-btn" disabled={busy} data-testid="report-submit">
          {busy ? t("submitting") : err ? t("retry") : t("submit")}
        </button>
        <div ref={outcomeRef}>
          {result && <Outcome r={result} />}
          {queuedNote && (
            <div class="pending-msg" role="status" data-testid="report-queued">
              <b>{t("queuedTitle")}</b>
              <div class="small">{t("queuedBody")}</div>
            </div>
          )}
        </div>
      </form>

      {outbox.length > 0 && (
        <section class="card" data-testid="outbox">
          <h2>
            {t("outbox")} <span class="badge warn">{outbox.length}</span>
          </h2>
          <ul class="my-reports">
            {outbox.map((q) => (
              <li data-testid="outbox-item" data-report={q.reportId}>
                <div class="mr-head">
                  <span class="strong">{q.title}</span>
                  <span class="status pending">{t("outboxTag")}</span>
                </div>
                <div class="muted small">
                  {categoryName(q.category)} · {fmtDateTime(q.filedAt)}
                  {q.photos.length > 0 && ` · ${t("photoCount", { n: q.photos.length })}`}
                </div>
                {q.error && (
                  <div class="small bad-text row">
                    {q.error}
                    <button type="button" class="link" onClick={() => drop(q.reportId)} data-testid="outbox-drop">
                      {t("outboxDrop")}
                    </button>
                  </div>
                )}
              </li>
            ))}
          </ul>
        </section>
      )}

      <section class="card" data-testid="my-reports">
        <h2>{t("myReports")}</h2>
        <LoadNote l={mine} testid="my-reports" />
        {mine.data && mine.data.reports.length === 0 && <div class="empty">{t("noReports")}</div>}
        <ul class="my-reports">
          {mine.data?.reports.map((r) => (
            <MyReportItem r={r} onDone={() => mine.reload()} />
          ))}
        </ul>
      </section>
    </div>
  );
}

/**
 * SubmitReport for a filed report (now, or later from the outbox: the same id either way), its
 * photos uploaded first — again on a retry, which stores nothing twice (a photo's id is its hash).
 */
async function submitRequest(q: Queued) {
  const located = q.lat !== 0 || q.lon !== 0;
  const photoIds = await uploadAll(q.photos ?? []);
  return {
    report: {
      reportId: q.reportId,
      category: q.category,
      urgency: q.urgency,
      title: q.title,
      description: q.description,
      location: located ? { lat: q.lat, lon: q.lon, address: q.address } : undefined,
      reportedAt: timestampFromMs(q.filedAt),
      photoIds,
    },
  };
}

function Outcome({ r }: { r: SubmitReportResponse }) {
  const o = r.outcome;
  const cls = o === ReportOutcome.REJECTED ? "error" : o === ReportOutcome.PENDING ? "pending-msg" : "ok-msg";
  const key = o === ReportOutcome.INCIDENT ? "outcome_incident" : o === ReportOutcome.ATTACHED ? "outcome_attached" : o === ReportOutcome.REJECTED ? "outcome_rejected" : "outcome_pending";
  return (
    <div class={cls} data-testid="report-outcome" data-outcome={ReportOutcome[o]} data-incident={r.incident?.incidentId ?? ""} data-report={r.reportId}>
      <b>{t(key)}</b>
      {r.incident && (
        <div class="small" title={r.incident.incidentId}>
          {r.incident.title} · {incidentStatusLabel(r.incident.status)}
        </div>
      )}
      {o === ReportOutcome.REJECTED && (
        <div class="small" title={`${r.rejectedReason}: ${r.rejectedMessage}`}>
          {rejectedText(r.rejectedReason)}
        </div>
      )}
      <TrackingCode code={r.trackingCode} />
    </div>
  );
}

/** The resident's tracking code (查询码) of a report, to read out or send, and the page it opens
 * (`/track#CODE`, served by the query service; the fragment keeps the code out of server logs).
 * The QR code of that page's address is drawn here on the worker's phone for the resident to
 * scan: the code never travels to a server to be drawn. */
function TrackingCode({ code }: { code: string }) {
  const [showQr, setShowQr] = useState(false);
  if (!code) return null;
  const page = `${location.origin}/track#${code}`;
  return (
    <div class="small tracking" data-testid="tracking-code" data-code={code} title={t("trackingHint")}>
      {t("trackingCode")}: <a href={`/track#${code}`} target="_blank" rel="noopener noreferrer"><b>{code}</b></a>{" "}
      <button type="button" class="link" data-testid="tracking-qr-toggle" aria-expanded={showQr} onClick={() => setShowQr(!showQr)}>
        {t(showQr ? "trackingQrHide" : "trackingQr")}
      </button>
      {showQr && (
        <div class="tracking-qr">
          <img data-testid="tracking-qr" src={qrDataUrl(page)} alt={`${t("trackingQrAlt")} ${code}`} />
        </div>
      )}
    </div>
  );
}

/** `text` as a QR code (error correction M, the version it needs), a GIF data URL. */
function qrDataUrl(text: string): string {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  return qr.createDataURL(5, 4);
}

function MyReportItem({ r, onDone }: { r: MyReport; onDone: () => void }) {
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<Problem | null>(null);
  const inc = r.incident;
  const canVerify = inc && !r.attached && inc.status === IncidentStatus.RESOLVED && !r.satisfaction;
  async function verify(sat: Satisfaction) {
    if (!inc) return;
    setBusy(true);
    setErr(null);
    try {
      await dispatch.verify({ commandId: uuid(), incidentId: inc.incidentId, expectedVersion: inc.version, body: { case: "verify", value: { satisfaction: sat, note: "" } } });
      onDone();
    } catch (e) {
      setErr(describe(e, "command"));
      onDone();
    } finally {
      setBusy(false);
    }
  }
  let state: string;
  let cls = "";
  if (r.rejectedReason) {
    state = t("rejectedTag");
    cls = "bad";
  } else if (!inc) {
    state = t("pendingTag");
    cls = "dim";
  } else {
    state = incidentStatusLabel(inc.status) + (r.attached ? ` · ${t("attachedTag")}` : "");
    cls = `s${inc.status}`;
  }
  return (
    <li data-testid="my-report" data-report={r.reportId} data-incident={inc?.incidentId ?? ""} data-status={inc?.status ?? ""}>
      <div class="mr-head">
        <span class="strong">{r.title}</span>
        <span class={`status ${cls}`}>{state}</span>
      </div>
      <div class="muted small">
        {categoryName(r.category, r.categoryName)} · {fmtDateTime(tsMs(r.reportedAt))}
        {r.satisfaction ? ` · ${t("followUp")}: ${satisfactionLabel(r.satisfaction)}` : ""}
      </div>
      {r.rejectedReason && (
        <div class="small bad-text" title={`${r.rejectedReason}: ${r.rejectedMessage}`}>
          {rejectedText(r.rejectedReason)}
        </div>
      )}
      <TrackingCode code={r.trackingCode} />
      {canVerify && (
        <div class="verify" data-testid="verify">
          <span class="small">{t("followUpAsk")}</span>
          <div class="row">
            {[Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED, Satisfaction.UNSATISFIED].map((v) => (
              <button type="button" class={v === Satisfaction.UNSATISFIED ? "warn" : "good"} disabled={busy} data-testid={`verify-${v}`} onClick={() => verify(v)}>
                {satisfactionLabel(v)}
              </button>
            ))}
          </div>
        </div>
      )}
      {err && <ProblemNote p={err} testid="verify-error" cls="error small" />}
    </li>
  );
}
