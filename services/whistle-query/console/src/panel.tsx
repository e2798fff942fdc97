// A panel of the command screen: a titled box whose body scrolls by keyboard too.
import type { Loaded } from "./util";
import { LoadNote } from "./notes";

export function Panel(p: { title: string; testid: string; area?: string; extra?: any; class?: string; children: any; load?: Loaded<unknown>; attrs?: Record<string, any> }) {
  return (
    <div class={`panel ${p.class ?? ""}`} data-testid={p.testid} data-area={p.area} {...p.attrs}>
      <div class="panel-head">
        <span class="panel-title">{p.title}</span>
        {p.extra}
      </div>
      {/* Focusable, so a keyboard can scroll a long list (rankings, overdue, ticker). */}
      <div class="panel-body" tabIndex={0} role="region" aria-label={p.title}>
        {p.load && <LoadNote l={p.load} testid={p.testid} />}
        {p.children}
      </div>
    </div>
  );
}
