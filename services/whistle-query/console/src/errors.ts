// What a person reads when something fails: a sentence in their language saying what happened and
// what to do (src/errors.json), never a gRPC code or a server message. The raw text is kept for a
// tooltip (`Problem.detail`) so support can still read it.
import { ConnectError, Code } from "@connectrpc/connect";
import words from "./errors.json";
import { getLang } from "./i18n";

type Pair = { zh: string; en: string };
type Table = Record<string, Pair>;

/** What kind of trouble: callers react to stale versions, refusals, lost connections and sign-in. */
export type ProblemKind = "stale" | "refused" | "network" | "auth" | "other";

export interface Problem {
  kind: ProblemKind;
  /** The sentence to show. */
  text: string;
  /** The raw code and message, for a tooltip only. */
  detail: string;
  code: Code;
}

const pick = (p: Pair) => (getLang() === "zh" ? p.zh : p.en);

/** "FAILED_PRECONDITION" for Code.FailedPrecondition. */
export function codeName(code: Code): string {
  if (code === Code.Canceled) return "CANCELLED";
  const name = Code[code] ?? "UNKNOWN";
  return name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** A browser that could not reach the server at all (fetch failed, connection reset, offline). */
function isNetwork(err: ConnectError, cause: unknown): boolean {
  if (typeof navigator !== "undefined" && navigator.onLine === false) return true;
  if (cause instanceof TypeError) return true;
  return err.code === Code.Unknown && /fetch|network|load failed|connection/i.test(err.rawMessage);
}

/**
 * The sentence for an error of a read (`read`), a command (`command`: 签收, 督办, …), a change of
 * people (`people`: 入职, 调岗, 离岗) or a report. The reason trailer (`whistle-reason`) is more
 * precise than the code and wins.
 */
export function describe(e: unknown, context: "read" | "command" | "people" = "read"): Problem {
  const err = ConnectError.from(e);
  const name = codeName(err.code);
  const detail = `${name}: ${err.rawMessage || err.message}`;
  const reason = err.metadata.get("whistle-reason") ?? "";
  let kind: ProblemKind = "other";
  let text: Pair;
  if (isNetwork(err, e)) {
    kind = "network";
    text = (words.network as Table).offline;
  } else if (reason && (words.reason as Table)[reason]) {
    text = (words.reason as Table)[reason];
  } else {
    const table =
      context === "read"
        ? (words.grpc as Table)
        : { ...(words.grpc as Table), ...(words.command as Table), ...(context === "people" ? (words.people as Table) : {}) };
    text = table[name] ?? (words.grpc as Table).INTERNAL;
    if (err.code === Code.Aborted) kind = "stale";
    else if (err.code === Code.FailedPrecondition || err.code === Code.PermissionDenied || err.code === Code.InvalidArgument || err.code === Code.NotFound || err.code === Code.AlreadyExists) kind = "refused";
    else if (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded) kind = "network";
    else if (err.code === Code.Unauthenticated) kind = "auth";
  }
  return { kind, text: pick(text), detail, code: err.code };
}

/** Why a report was refused (`SubmitReport`'s or `ListMyReports`' `rejected_reason`), in words. */
export function rejectedText(reason: string): string {
  const p = (words.rejected as Table)[reason];
  return p ? pick(p) : pick((words.grpc as Table).INVALID_ARGUMENT);
}
