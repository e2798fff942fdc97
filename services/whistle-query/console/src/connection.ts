// How the page's calls are faring, for an honest indicator: every unary call reports here (the
// interceptor in api.ts), the live feed reports its own state. The header turns amber as soon as
// either fails and red when nothing has got through for a while.
import { useEffect, useState } from "preact/hooks";

/** After this long without a successful call (or without the live feed), the indicator is red. */
export const DOWN_AFTER_MS = 15000;

let failingSince = 0;
let lastOk = 0;
const listeners = new Set<() => void>();
const notify = () => listeners.forEach((l) => l());

export function callSucceeded() {
  lastOk = Date.now();
  if (failingSince) {
    failingSince = 0;
    notify();
  }
}

export function callFailed() {
  if (!failingSince) {
    failingSince = Date.now();
    notify();
  }
}

export type Health = "live" | "connecting" | "reconnecting" | "degraded" | "offline";

/**
 * The combined state: `live` only while the feed is live and calls succeed; `degraded` (amber) when
 * calls fail but the feed still runs or only just dropped; `offline` (red) when the feed or the calls
 * have been failing for DOWN_AFTER_MS. `since` is when the page last had fresh data.
 */
export function useHealth(feed: "connecting" | "live" | "reconnecting"): { health: Health; since: number } {
  const [, setV] = useState(0);
  const [feedDownAt, setFeedDownAt] = useState(0);
  useEffect(() => {
    const l = () => setV((v) => v + 1);
    listeners.add(l);
    const id = setInterval(l, 1000);
    return () => {
      listeners.delete(l);
      clearInterval(id);
    };
  }, []);
  // Down since the feed last left "live": its retries (reconnecting → connecting → reconnecting)
  // do not restart the clock, or the indicator would turn amber again in the middle of an outage.
  useEffect(() => {
    if (feed === "live") setFeedDownAt(0);
    else setFeedDownAt((at) => at || Date.now());
  }, [feed]);
  const now = Date.now();
  const down = (since: number) => since > 0 && now - since >= DOWN_AFTER_MS;
  let health: Health;
  if (down(failingSince) || (feed !== "live" && down(feedDownAt))) health = "offline";
  else if (failingSince) health = "degraded";
  else health = feed;
  return { health, since: lastOk };
}
