// 消息: the signed-in person's notifications (派单, 催办, 督办 …) behind a bell in the top bar.
//
// A new unread notification plays a short tone and, when the person has allowed it, shows the
// browser's own notification, so a liaison hears a dispatch while working in another window. The
// list is polled; a dispatch also arrives by SMS or the department's robot when configured.
import { useEffect, useRef, useState } from "preact/hooks";
import { cc } from "./api";
import { t, eventKindLabel } from "./i18n";
import { type Notification as Item } from "./gen/whistle/v1/command_center_pb.js";
import { useLoad, tsMs, fmtDateTime } from "./util";

const POLL_MS = 10_000;

/** A short two-note chime, made on the spot (no audio file to load or cache). */
function chime() {
  try {
    const ctx = new AudioContext();
    const play = (freq: number, at: number) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, ctx.currentTime + at);
      gain.gain.exponentialRampToValueAtTime(0.25, ctx.currentTime + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + at + 0.35);
      osc.connect(gain).connect(ctx.destination);
      osc.start(ctx.currentTime + at);
      osc.stop(ctx.currentTime + at + 0.4);
    };
    play(880, 0);
    play(1320, 0.18);
    setTimeout(() => ctx.close(), 1000);
  } catch {
    // no audio here (autoplay policy before any click, or no device): the badge still shows it
  }
}

function desktop(item: Item) {
  if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
  try {
    new Notification(item.title, { body: item.body, tag: item.notificationId });
  } catch {
    // some browsers allow notifications only from a service worker; the badge still shows it
  }
}

export function Bell(p: { onOpenIncident?: (incidentId: string) => void }) {
  const [open, setOpen] = useState(false);
  const [permission, setPermission] = useState(typeof Notification === "undefined" ? "denied" : Notification.permission);
  const list = useLoad((signal) => cc.listNotifications({ pageSize: 30 }, { signal }), "bell", POLL_MS);
  const seen = useRef<Set<string> | null>(null);

  // Announce what is new since the last answer (nothing on the first one: that is history).
  useEffect(() => {
    const items = list.data?.notifications ?? [];
    if (!list.data) return;
    if (seen.current === null) {
      seen.current = new Set(items.map((i) => i.notificationId));
      return;
    }
    const fresh = items.filter((i) => !seen.current!.has(i.notificationId) && !i.readAt);
    items.forEach((i) => seen.current!.add(i.notificationId));
    if (fresh.length > 0) {
      chime();
      fresh.slice(0, 3).forEach(desktop);
    }
  }, [list.data]);

  const markRead = async (ids: string[]) => {
    await cc.markNotificationsRead({ notificationIds: ids });
    list.reload();
  };
  const unread = Number(list.data?.unread ?? 0n);
  const items = list.data?.notifications ?? [];

  return (
    <span class="bell-wrap">
      <button
        class={`link bell${unread > 0 ? " has-unread" : ""}`}
        onClick={() => setOpen(!open)}
        aria-expanded={open}
        aria-label={`${t("notifications")}${unread > 0 ? `, ${t("notificationsUnread", { n: unread })}` : ""}`}
        data-testid="bell"
      >
        {/* Drawn, not the 🔔 emoji: a kiosk without an emoji font showed a box in its place. */}
        <svg class="bell-icon" viewBox="0 0 24 24" width="1.1em" height="1.1em" aria-hidden="true" fill="currentColor">
          <path d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6v-5a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2z" />
        </svg>
        {unread > 0 && <span class="bell-count" data-testid="bell-count">{unread > 99 ? "99+" : unread}</span>}
      </button>
      {open && (
        <div class="bell-list" role="dialog" aria-label={t("notifications")} data-testid="bell-list">
          <div class="bell-head">
            <strong>{t("notifications")}</strong>
            {permission === "default" && (
              <button class="link" onClick={() => Notification.requestPermission().then(setPermission)} data-testid="bell-enable">
                {t("notificationsEnable")}
              </button>
            )}
            {unread > 0 && (
              <button class="link" onClick={() => markRead([])} data-testid="bell-all-read">
                {t("notificationsAllRead")}
              </button>
            )}
          </div>
          {items.length === 0 && <div class="empty">{t("notificationsNone")}</div>}
          <ul>
            {items.map((i) => (
              <li key={i.notificationId} class={i.readAt ? "read" : "unread"} data-testid="bell-item">
                <button
                  class="bell-item"
                  onClick={() => {
                    if (!i.readAt) markRead([i.notificationId]);
                    if (i.incidentId && p.onOpenIncident) p.onOpenIncident(i.incidentId);
                  }}
                >
                  <span class="bell-title">
                    {i.title}
                    {i.asDeputy && <span class="chip">{t("notificationsAsDeputy")}</span>}
                  </span>
                  <span class="bell-body">{i.body}</span>
                  <span class="bell-meta">
                    {eventKindLabel(i.kind)} · {fmtDateTime(tsMs(i.createdAt))}
                  </span>
                </button>
              </li>
            ))}
          </ul>
        </div>
      )}
    </span>
  );
}
