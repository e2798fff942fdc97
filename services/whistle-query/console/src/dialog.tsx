// Dialogs: a modal that screen readers know as one (role, label, focus kept inside, Esc closes,
// focus returns to where it was), and the command dialog every action goes through — the error
// shows inside it, a stale version reloads the incident and offers the action again.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { ComponentChildren } from "preact";
import { t } from "./i18n";
import { uuid } from "./api";
import { describe, type Problem } from "./errors";
import { ProblemNote } from "./notes";
import { PhotoPicker, uploadAll } from "./photos";

let modalSeq = 0;
/** Open modals, the topmost last: Esc and Tab belong to it alone. */
const openModals: HTMLElement[] = [];

export function Modal(p: { title: string; onClose: () => void; testid: string; role?: "dialog" | "alertdialog"; children: ComponentChildren; onSubmit?: () => void }) {
  const box = useRef<HTMLFormElement>(null);
  const [titleId] = useState(() => `modal-title-${++modalSeq}`);
  const onClose = useRef(p.onClose);
  onClose.current = p.onClose;
  // As the dialog is put in the page, not after the next paint: a focus set later would take the
  // keyboard from a field the person (or a test) has already clicked into and typed in — text typed
  // into 延期理由 went to the date field above it.
  useLayoutEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    const el = box.current!;
    const first = el.querySelector<HTMLElement>("textarea, select, input, button.primary, button");
    if (!el.contains(document.activeElement)) (first ?? el).focus();
    openModals.push(el);
    // On the document, not the dialog: a key pressed after the focused button went away (the
    // action withdrawn) still reaches the dialog, and focus is brought back into it.
    const onKey = (e: KeyboardEvent) => {
      if (openModals[openModals.length - 1] !== el) return;
      if (!el.contains(document.activeElement)) el.focus();
      if (e.key === "Escape") {
        e.stopPropagation();
        onClose.current();
      } else if (e.key === "Tab") {
        // Focus stays inside the dialog.
        const items = [...el.querySelectorAll<HTMLElement>("button, select, textarea, input, [href], [tabindex]:not([tabindex='-1'])")].filter((x) => !(x as HTMLButtonElement).disabled);
        if (!items.length) return;
        const i = items.indexOf(document.activeElement as HTMLElement);
        if (e.shiftKey && i <= 0) {
          e.preventDefault();
          items[items.length - 1].focus();
        } else if (!e.shiftKey && i === items.length - 1) {
          e.preventDefault();
          items[0].focus();
        }
      }
    };
    document.addEventListener("keydown", onKey, true);
    return () => {
      document.removeEventListener("keydown", onKey, true);
      openModals.splice(openModals.indexOf(el), 1);
      if (before && document.contains(before)) before.focus();
    };
  }, []);
  return (
    <div class="modal-backdrop">
      <form
        ref={box}
        class="modal"
        role={p.role ?? "dialog"}
        aria-modal="true"
        aria-labelledby={titleId}
        tabIndex={-1}
        data-testid={p.testid}
        onSubmit={(e) => {
          e.preventDefault();
          p.onSubmit?.();
        }}
      >
        <h3 id={titleId}>{p.title}</h3>
        {p.children}
      </form>
    </div>
  );
}

export interface Values {
  note: string;
  reason: number;
  to: string;
  /** A new deadline (`datetime-local`, the browser's time zone), for 延期申请. */
  until: string;
  /** The photos' ids, uploaded just before the command is sent. */
  photoIds: string[];
}

/** After a refusal: the incident's version now and whether the action still applies (with why not). */
export interface Fresh {
  version: bigint;
  allowed: boolean;
  /** Shown when the action no longer applies, e.g. "该任务现为：已签收". */
  state: string;
}

/**
 * A command sent from a dialog: its id kept across a network failure (a retry is the same command,
 * never applied twice) and renewed after any other answer; `busy` while it is out, so nothing is
 * sent twice; `problem` the last failure, in words. `send` resolves to the call's answer, or
 * undefined after a failure.
 */
export function useDialogCommand() {
  const [commandId, setCommandId] = useState(uuid());
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  async function send<T>(call: (commandId: string) => Promise<T>): Promise<T | undefined> {
    setBusy(true);
    setProblem(null);
    try {
      const answer = await call(commandId);
      setCommandId(uuid());
      return answer;
    } catch (e) {
      const pr = describe(e, "command");
      setProblem(pr);
      if (pr.kind !== "network") setCommandId(uuid());
      return undefined;
    } finally {
      setBusy(false);
    }
  }
  return { busy, problem, send };
}

export function CommandDialog(p: {
  title: string;
  submitLabel: string;
  testid: string;
  version: bigint;
  /** Text the person must write (退单 and 办结 and 督办 ask for one), or none. */
  note?: { label: string; required: boolean; initial?: string; max: number };
  reasons?: { value: number; label: string }[];
  /** The reason select's label: 退单原因 unless given (挂账原因 for a ledger proposal). */
  reasonsLabel?: string;
  departments?: { value: string; label: string }[];
  /** The department select's label: 改派至部门 unless given. */
  departmentsLabel?: string;
  /** A sentence before the fields, e.g. what 督办 does. */
  intro?: string;
  /** Ask for a date and time later than `after` (ms), e.g. 延期申请's new deadline, 挂账's review date. */
  until?: { label: string; after: number };
  /** Photos to take with the command (办结's "after" photos). */
  photos?: { label: string; required: boolean };
  send: (version: bigint, commandId: string, v: Values) => Promise<unknown>;
  refresh: () => Promise<Fresh>;
  onDone: (v: Values) => void;
  onClose: () => void;
}) {
  const [v, setV] = useState<Values>({ note: p.note?.initial ?? "", reason: p.reasons?.[0]?.value ?? 0, to: "", until: "", photoIds: [] });
  const [photos, setPhotos] = useState<Blob[]>([]);
  const [version, setVersion] = useState(p.version);
  const [commandId, setCommandId] = useState(uuid());
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [gone, setGone] = useState("");
  const [again, setAgain] = useState(false);

  const untilMs = v.until ? new Date(v.until).getTime() : NaN;
  const untilOk = !!p.until && untilMs > p.until.after;

  async function submit() {
    if (busy || gone) return;
    if (p.note?.required && !v.note.trim()) return;
    if (p.departments && !v.to) return;
    if (p.until && !untilOk) return;
    if (p.photos?.required && !photos.length) return;
    setBusy(true);
    setProblem(null);
    try {
      // Uploaded again on a retry: the same bytes are the same photo, stored once.
      const photoIds = await uploadAll(photos);
      await p.send(version, commandId, { ...v, note: v.note.trim(), photoIds });
      p.onDone(v);
    } catch (e) {
      const pr = describe(e, "command");
      setProblem(pr);
      if (pr.kind === "network") return; // the same command id: a retry is never applied twice
      setCommandId(uuid());
      if (pr.kind === "stale" || pr.kind === "refused") {
        try {
          const fresh = await p.refresh();
          setVersion(fresh.version);
          if (fresh.allowed) setAgain(true);
          else setGone(fresh.state);
        } catch {
          // the reload failed too: the problem above says what to do
        }
      }
    } finally {
      setBusy(false);
    }
  }

  const missing = (p.note?.required && !v.note.trim()) || (p.departments && !v.to) || (p.until && !untilOk) || (p.photos?.required && !photos.length);
  const closeBtn = useRef<HTMLButtonElement>(null);
  // The submit button is gone with the action: the focus goes to 关闭.
  useEffect(() => {
    if (gone) closeBtn.current?.focus();
  }, [gone]);
  return (
    <Modal title={p.title} testid={p.testid} onClose={p.onClose} onSubmit={submit}>
      {p.intro && <p class="muted">{p.intro}</p>}
      {p.reasons && (
        <label>
          {p.reasonsLabel ?? t("returnReason")}
          <select value={v.reason} data-testid="return-reason" onChange={(e) => {
              const reason = Number((e.target as HTMLSelectElement).value);
              setV((old) => ({ ...old, reason }));
            }}>
            {p.reasons.map((r) => (
              <option value={r.value}>{r.label}</option>
            ))}
          </select>
        </label>
      )}
      {p.departments && (
        <label>
          {p.departmentsLabel ?? t("reassignTo")}
          <select value={v.to} required data-testid="reassign-to" onChange={(e) => {
              const to = (e.target as HTMLSelectElement).value;
              setV((old) => ({ ...old, to }));
            }}>
            <option value="">{t("chooseDepartment")}</option>
            {p.departments.map((d) => (
              <option value={d.value}>{d.label}</option>
            ))}
          </select>
        </label>
      )}
      {p.until && (
        <label>
          {p.until.label}
          <input type="datetime-local" required value={v.until} data-testid="dialog-until" onInput={(e) => {
              const until = (e.target as HTMLInputElement).value;
              setV((old) => ({ ...old, until }));
            }} />
        </label>
      )}
      {p.note && (
        <label>
          {p.note.label}
          <textarea required={p.note.required} rows={3} maxLength={p.note.max} value={v.note} data-testid="dialog-note" onInput={(e) => {
              const note = (e.target as HTMLTextAreaElement).value;
              setV((old) => ({ ...old, note }));
            }} />
        </label>
      )}
      {p.photos && <PhotoPicker photos={photos} onChange={setPhotos} label={p.photos.label} required={p.photos.required} testid="dialog-photos" />}
      {problem && <ProblemNote p={problem} testid="dialog-error" />}
      {gone && (
        <div class="pending-msg" data-testid="dialog-gone">
          {t("actionGone", { state: gone })}
        </div>
      )}
      <div class="row">
        {!gone && (
          <button type="submit" class="primary" disabled={busy || !!missing} data-testid="dialog-submit">
            {busy ? t("sending") : again ? t("submitAgain", { action: p.submitLabel }) : p.submitLabel}
          </button>
        )}
        <button type="button" ref={closeBtn} onClick={p.onClose} data-testid="dialog-cancel">
          {gone ? t("close") : t("cancel")}
        </button>
      </div>
    </Modal>
  );
}
