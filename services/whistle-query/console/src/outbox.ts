// The grid worker's outbox (待发送): reports filed while the network is gone, kept on the device in
// IndexedDB — one list per grid worker, so a shared phone never sends one worker's report under
// another's session — and sent when the network returns, each exactly once: the report id made
// when the worker pressed 提交 is the idempotency key SubmitReport already honours (a resend after a
// lost answer is the same report), and a report leaves the outbox only once an answer came back.
// A session that ended keeps the reports until that worker signs in again.
import { useEffect, useState } from "preact/hooks";

export interface Queued {
  reportId: string;
  /** The grid worker (person id) who filed it; only their session sends it. */
  person: string;
  grid: string;
  /** When the worker filed it (ms): the report's reported_at. */
  filedAt: number;
  category: string;
  urgency: number;
  title: string;
  description: string;
  address: string;
  lat: number;
  lon: number;
  /** Photos taken with the report (compressed JPEG). */
  photos: Blob[];
  /** Why the server refused it, in words (the report stays until the worker deletes it). */
  error?: string;
}

const DB = "whistle-outbox";
const STORE = "reports";

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => {
      const store = req.result.createObjectStore(STORE, { keyPath: "reportId" });
      store.createIndex("person", "person");
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx<T>(mode: IDBTransactionMode, work: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = work(t.objectStore(STORE));
      t.oncomplete = () => resolve(req.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  } finally {
    db.close();
  }
}

const listeners = new Set<() => void>();
const changed = () => listeners.forEach((l) => l());

/** The worker's queued reports, oldest first. */
export async function queued(person: string): Promise<Queued[]> {
  const all = await tx<Queued[]>("readonly", (s) => s.index("person").getAll(person));
  return all.sort((a, b) => a.filedAt - b.filedAt);
}
export async function enqueue(q: Queued): Promise<void> {
  await tx("readwrite", (s) => s.put(q));
  changed();
}
export async function drop(reportId: string): Promise<void> {
  await tx("readwrite", (s) => s.delete(reportId));
  changed();
}

/** What became of one send: answered (the report leaves the outbox), refused, or not now. */
export type SendResult = { done: true } | { done: false; refused?: string; stop?: boolean };

let flushing = false;
/**
 * Sends the worker's queued reports one by one, oldest first; one flush at a time (the `online`
 * event and the timer may both ask). Stops at the first report that could not be sent now (no
 * network, session ended); a refused one keeps its reason and the flush goes on.
 */
export async function flush(person: string, send: (q: Queued) => Promise<SendResult>): Promise<number> {
  if (flushing) return 0;
  flushing = true;
  let sent = 0;
  try {
    for (const q of await queued(person)) {
      if (q.error) continue;
      const r = await send(q);
      if (r.done) {
        await drop(q.reportId);
        sent++;
      } else if (r.refused) {
        await enqueue({ ...q, error: r.refused });
      } else break;
    }
  } finally {
    flushing = false;
  }
  return sent;
}

/** The worker's outbox, re-read whenever it changes. */
export function useOutbox(person: string): Queued[] {
  const [items, setItems] = useState<Queued[]>([]);
  useEffect(() => {
    let live = true;
    const load = () =>
      queued(person).then(
        (q) => live && setItems(q),
        () => {},
      );
    listeners.add(load);
    load();
    return () => {
      live = false;
      listeners.delete(load);
    };
  }, [person]);
  return items;
}
