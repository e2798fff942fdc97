// How a panel shows a failed load: with data, it keeps the data and says how old it is
// ("数据更新于 10:42:05"); without, it says in words what happened. The raw code is only a tooltip.
import { t } from "./i18n";
import { fmtTime, type Loaded } from "./util";
import type { Problem } from "./errors";

export function LoadNote({ l, testid }: { l: Loaded<unknown>; testid: string }) {
  if (!l.problem) return null;
  if (l.data !== undefined)
    return (
      <div class="stale-note" data-testid={`${testid}-stale`} data-kind={l.problem.kind} title={l.problem.detail}>
        {t("updatedAt", { time: fmtTime(l.updatedAt) })}
      </div>
    );
  return <ProblemNote p={l.problem} testid={`${testid}-error`} cls="panel-error" />;
}

/** A problem in words; the raw code and message only in the tooltip. */
export function ProblemNote({ p, testid, cls = "error" }: { p: Problem; testid: string; cls?: string }) {
  return (
    <div class={cls} role="alert" data-testid={testid} data-kind={p.kind} data-code={p.code} title={p.detail}>
      {p.text}
    </div>
  );
}
