// The typed clients (generated from proto/) over gRPC-web on the page's own origin, the token
// store, and readable errors.
import { createClient, ConnectError, Code, type Interceptor, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { CommandCenter } from "./gen/whistle/v1/command_center_pb.js";
import { Dispatch } from "./gen/whistle/v1/dispatch_pb.js";
import { Reporting } from "./gen/whistle/v1/reporting_pb.js";
import { callFailed, callSucceeded } from "./connection";

const TOKEN_KEY = "whistle.token";

// The token lives in sessionStorage: it ends with the tab, is not shared with other tabs, and is
// not left on the disk of a shared screen. Earlier versions kept it in localStorage; drop that copy.
try {
  localStorage.removeItem(TOKEN_KEY);
} catch {
  // storage disabled: nothing to clean up
}

export function getToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}
export function setToken(token: string) {
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}
export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// Any UNAUTHENTICATED answer sends the user back to the sign-in page (see main.tsx).
type Listener = (message: string) => void;
const unauthListeners = new Set<Listener>();
export function onUnauthenticated(l: Listener): () => void {
  unauthListeners.add(l);
  return () => unauthListeners.delete(l);
}

// A failure to reach the server at all, as opposed to an answer refusing the request.
const unreachable = (err: ConnectError) => [Code.Unavailable, Code.Unknown, Code.DeadlineExceeded, Code.Internal].includes(err.code);

const auth: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  try {
    const res = await next(req);
    if (!req.stream) callSucceeded();
    return res;
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code === Code.Unauthenticated) unauthListeners.forEach((l) => l(err.rawMessage));
    if (!req.stream && err.code !== Code.Canceled) {
      if (unreachable(err)) callFailed();
      else callSucceeded();
    }
    throw e;
  }
};

const transport = createGrpcWebTransport({ baseUrl: location.origin, interceptors: [auth] });

export const cc: Client<typeof CommandCenter> = createClient(CommandCenter, transport);
export const dispatch: Client<typeof Dispatch> = createClient(Dispatch, transport);
export const reporting: Client<typeof Reporting> = createClient(Reporting, transport);

export { Code, ConnectError };

/**
 * Downloads a file the query service makes (`path`, with the token), under the name it gives
 * (`filename*` first, for a Chinese name), else `fallback`. Throws the server's message.
 */
export async function downloadFile(path: string, fallback: string): Promise<void> {
  const res = await fetch(path, { headers: { authorization: `Bearer ${getToken()}` } });
  if (!res.ok) throw new Error((await res.text()).trim() || `HTTP ${res.status}`);
  const blob = await res.blob();
  const disposition = res.headers.get("content-disposition") ?? "";
  const utf8 = /filename\*=UTF-8''([^;]+)/i.exec(disposition)?.[1];
  const name = (utf8 && decodeURIComponent(utf8)) || /filename="([^"]+)"/.exec(disposition)?.[1] || fallback;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}


export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError" || (e instanceof ConnectError && e.code === Code.Canceled);
}

/** A fresh UUID (v4), also outside secure contexts where crypto.randomUUID is missing. */
export function uuid(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
