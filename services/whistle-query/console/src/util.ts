import { useEffect, useRef, useState, useCallback } from "preact/hooks";
import type { Timestamp, Duration } from "@bufbuild/protobuf/wkt";
import { isAbort } from "./api";
import { describe, type Problem } from "./errors";
import { getLang } from "./i18n";
export { categoryName, groupName } from "./catalogue";

export function tsMs(ts: Timestamp | undefined): number {
  if (!ts) return 0;
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
}
export function durMs(d: Duration | undefined): number {
  if (!d) return 0;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

const pad = (n: number) => String(n).padStart(2, "0");
export function fmtTime(ms: number): string {
  if (!ms) return "—";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
export function fmtDateTime(ms: number): string {
  if (!ms) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
/**
 * A span a person reads at a glance, never a bare "00:00": 19分38秒 under an hour, 1小时09分
 * under a day, 2天03小时 beyond (19 min 38 s, 1 h 09 min, 2 d 03 h in English).
 */
export function fmtSpan(ms: number): string {
  let s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const zh = getLang() === "zh";
  if (d) return zh ? `${d}天${pad(h)}小时` : `${d} d ${pad(h)} h`;
  if (h) return zh ? `${h}小时${pad(m)}分` : `${h} h ${pad(m)} min`;
  return zh ? `${m}分${pad(s)}秒` : `${m} min ${pad(s)} s`;
}

/** "剩余 19分38秒" before `due`, "已超 1小时08分" from the deadline on (a deadline reached is late). */
export function fmtCountdown(due: number, now: number): { late: boolean; text: string } {
  const late = now >= due;
  const zh = getLang() === "zh";
  const span = fmtSpan(due - now);
  if (late) return { late, text: zh ? `已超 ${span}` : `${span} overdue` };
  return { late, text: zh ? `剩余 ${span}` : `${span} left` };
}
export function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
export const num = (x: bigint | number | undefined) => Number(x ?? 0);

/** Ticks every `ms` milliseconds; returns Date.now(). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now;
}

export interface Loaded<T> {
  data: T | undefined;
  /** The last failure, in words (the raw code is in `problem.detail`); cleared by a success. */
  error: string | undefined;
  problem: Problem | undefined;
  /** When the data was fetched (ms), for "数据更新于 …" while calls fail. */
  updatedAt: number;
  loading: boolean;
  /** The key (e.g. area) the current data belongs to. */
  key: string | undefined;
  reload: () => void;
}

/**
 * Calls `fn` now, whenever `key` changes, every `interval` ms and on `reload()`; keeps the last
 * good data, shows the error of the last failure; drops answers for a stale key.
 */
export function useLoad<T>(fn: (signal: AbortSignal) => Promise<T>, key: string, interval: number): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: string; problem?: Problem; updatedAt: number; loading: boolean; key?: string }>({ loading: true, updatedAt: 0 });
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const keyRef = useRef(key);
  keyRef.current = key;
  const inflight = useRef<AbortController | null>(null);
  const pending = useRef(false);

  const run = useCallback(() => {
    if (inflight.current) {
      pending.current = true;
      return;
    }
    const ac = new AbortController();
    inflight.current = ac;
    const k = keyRef.current;
    fnRef
      .current(ac.signal)
      .then(
        (data) => {
          if (k === keyRef.current) setState({ data, error: undefined, problem: undefined, updatedAt: Date.now(), loading: false, key: k });
        },
        (e) => {
          if (isAbort(e) || k !== keyRef.current) return;
          const problem = describe(e);
          setState((s) => ({ ...s, error: problem.text, problem, loading: false }));
        },
      )
      .finally(() => {
        if (inflight.current === ac) inflight.current = null;
        if (pending.current) {
          pending.current = false;
          run();
        }
      });
  }, []);

  useEffect(() => {
    inflight.current?.abort();
    inflight.current = null;
    pending.current = false;
    setState((s) => ({ ...s, loading: true }));
    run();
    if (!interval) return;
    const id = setInterval(run, interval);
    return () => clearInterval(id);
  }, [key, interval]);

  useEffect(() => () => inflight.current?.abort(), []);

  return { ...state, loading: state.loading, reload: run } as Loaded<T>;
}

/** Debounces `fn` to at most once per `ms` (trailing). */
export function throttle(fn: () => void, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}
