// The frame every page of a signed-in person shares: the top bar (the emblem, the page's name and
// its place), the nav links and user menu (NavLinks), the toast saying what just succeeded, and
// whatever floats over the page (dialogs, the incident drawer) after the page's own content.
import type { ComponentChildren } from "preact";
import { NavLinks, type Chrome } from "./main";

export interface Toast {
  text: string;
  testid: string;
}

export function PageFrame(p: {
  chrome: Chrome;
  /** The page's class beside `page` (e.g. `topics`; `phone` for a phone-sized page). */
  cls: string;
  testid: string;
  /** What the brand says after the emblem: the page's name and its place. */
  title: ComponentChildren;
  toast?: Toast | null;
  /** Dialogs and drawers, outside <main>. */
  overlays?: ComponentChildren;
  children: ComponentChildren;
}) {
  const phone = p.cls.split(" ").includes("phone");
  return (
    <div class={`page ${p.cls}`} data-testid={p.testid}>
      <header class={phone ? "topbar phone-top" : "topbar"}>
        <div class="brand">
          <span class="emblem sm">哨</span>
          <span>{p.title}</span>
        </div>
        <NavLinks {...p.chrome} />
      </header>
      <main>
        {p.toast?.text && (
          <div class="ok-msg toast" data-testid={p.toast.testid} role="status">
            {p.toast.text}
          </div>
        )}
        {p.children}
      </main>
      {p.overlays}
    </div>
  );
}
